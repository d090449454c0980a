# G2SD segmentation distillation, ViT-S student (GD from MAE-L) and MAE ViT-L UperNet teacher.
#   python tools/train.py g2sd/configs/mmseg/g2sd-cwd_upernet_vit-s-l2s_8xb2-160k_ade20k-512x512.py
_base_ = ['./upernet_mae-large_8xb2-amp-160k_ade20k-512x512.py']
custom_imports = dict(imports=['g2sd.mmseg'], allow_failed_imports=False)
teacher_checkpoint = 'checkpoints/upernet_mae-large_ade20k-512x512.pth'
model = dict(
    type='G2SDDistillEncoderDecoder',
    pretrained=None,
    backbone=dict(embed_dims=384, num_layers=12, num_heads=6, out_indices=[3, 5, 7, 11],
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vit-s_g2sd-gd-l_mmseg.pth')),
    neck=dict(embed_dim=384),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=384),
    auxiliary_head=dict(in_channels=384),
    teacher=dict(cfg={{_base_.model}}, checkpoint=teacher_checkpoint),
    distill=dict(tau=1.0, loss_weight=3.0))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65))
