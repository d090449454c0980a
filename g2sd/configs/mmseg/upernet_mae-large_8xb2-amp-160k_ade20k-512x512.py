# UperNet on MAE ViT-L/16 for ADE20K (the L -> S segmentation teacher): blocks [7, 11, 15, 23] feed the
# pyramid, layer decay 0.65 over 24 layers.
#   python tools/train.py g2sd/configs/mmseg/upernet_mae-large_8xb2-amp-160k_ade20k-512x512.py
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']
model = dict(
    pretrained='./pretrain/mae_pretrain_vit_large_mmcls.pth',
    backbone=dict(embed_dims=1024, num_layers=24, num_heads=16, out_indices=[7, 11, 15, 23]),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.65))
