# G2SD segmentation distillation, ViT-Ti student and MAE ViT-B UperNet teacher (UperNet channels 192).
#   python tools/train.py g2sd/configs/mmseg/g2sd-cwd_upernet_vit-t-b2t_8xb2-160k_ade20k-512x512.py
_base_ = ['./g2sd-cwd_upernet_vit-s-b2s_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(embed_dims=192, num_heads=3,
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vit-t_g2sd-gd_mmseg.pth')),
    neck=dict(embed_dim=192),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=192),
    auxiliary_head=dict(in_channels=192))
