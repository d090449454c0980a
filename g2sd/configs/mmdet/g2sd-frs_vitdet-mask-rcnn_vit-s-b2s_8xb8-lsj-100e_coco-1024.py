# G2SD specific distillation for COCO detection / instance segmentation: ViT-S student (initialised from the
# generic-distillation checkpoint) distilled from a COCO-fine-tuned ViT-B ViTDet teacher with the FRS feature
# (weight 0.001) and objectness (weight 0.1) losses, warmed up over 500 iterations. Paper: 98.1 % of the
# teacher's box AP.
#
#   Runner.from_cfg(Config.fromfile('g2sd/configs/mmdet/g2sd-frs_vitdet-mask-rcnn_vit-s-b2s_8xb8-lsj-100e_coco-1024.py')).train()
#
# Needs checkpoints/ViT_S_GD.pth (official GD checkpoint or `python -m g2sd.train --config gd_vit-s_b2s_in1k`)
# and the teacher (trained with the ViT-B config, or converted: python -m g2sd.convert det ...).
_base_ = ['./vitdet_mask-rcnn_vit-b_8xb8-lsj-100e_coco-1024.py']
teacher_checkpoint = 'checkpoints/vitdet_mask-rcnn_vit-b_coco.pth'
model = dict(
    type='G2SDDistillMaskRCNN',
    backbone=dict(embed_dim=384, num_heads=6,
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ViT_S_GD.pth')),
    neck=dict(in_channels=384),
    teacher=dict(cfg={{_base_.model}}, checkpoint=teacher_checkpoint, train_mode=False),
    distill=dict(feat_weight=0.001, obj_weight=0.1, warmup_iters=500, num_levels=5, channels=256))
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
