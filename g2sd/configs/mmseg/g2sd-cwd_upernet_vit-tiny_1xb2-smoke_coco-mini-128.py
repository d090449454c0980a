# Smoke configuration of G2SD segmentation distillation: a 64-wide student and the 96-wide teacher of
# upernet_mae-tiny_1xb2-smoke_coco-mini-128.py, random weights, coco_mini semantic maps at 128 px.
# Used by g2sd/tests/test_g2sd_mmseg.py (one training step with loss_cwd, then mIoU on 2 images).
#   Runner.from_cfg(Config.fromfile('g2sd/configs/mmseg/g2sd-cwd_upernet_vit-tiny_1xb2-smoke_coco-mini-128.py')).train()
_base_ = ['./upernet_mae-tiny_1xb2-smoke_coco-mini-128.py']
model = dict(
    type='G2SDDistillEncoderDecoder',
    backbone=dict(embed_dims=64, num_heads=2),
    neck=dict(embed_dim=64),
    decode_head=dict(in_channels=[64, 64, 64, 64]),
    auxiliary_head=dict(in_channels=64),
    teacher=dict(cfg={{_base_.model}}, checkpoint=None),
    distill=dict(tau=1.0, loss_weight=3.0))
