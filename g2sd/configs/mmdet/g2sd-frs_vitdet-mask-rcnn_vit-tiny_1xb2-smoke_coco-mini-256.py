# Smoke configuration of G2SD detection distillation: a 64-wide two-block ViTDet student (32-channel pyramid) and the 96-wide
# teacher of vitdet_mask-rcnn_vit-tiny_1xb2-smoke_coco-mini-256.py, random weights, coco_mini at 256 px.
# Used by g2sd/tests/test_g2sd_mmdet.py (one training step with the FRS losses, then COCO evaluation).
#
#   Runner.from_cfg(Config.fromfile('g2sd/configs/mmdet/g2sd-frs_vitdet-mask-rcnn_vit-tiny_1xb2-smoke_coco-mini-256.py')).train()
#
# Expected: losses include loss_distill_feat and loss_distill_obj (0 at iteration 0 of the 500-step warm-up
# unless warmup_iters=0, as here), bbox / segm AP near 0.
_base_ = ['./vitdet_mask-rcnn_vit-tiny_1xb2-smoke_coco-mini-256.py']
model = dict(
    type='G2SDDistillMaskRCNN',
    backbone=dict(embed_dim=64, num_heads=2),
    neck=dict(in_channels=64),
    teacher=dict(cfg={{_base_.model}}, checkpoint=None, train_mode=False),
    distill=dict(feat_weight=0.001, obj_weight=0.1, warmup_iters=0, num_levels=5, channels=32))
