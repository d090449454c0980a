# G2SD specific distillation for COCO, ViT-S student (GD from an MAE-L teacher) and ViT-L ViTDet teacher.
#   Runner.from_cfg(Config.fromfile('g2sd/configs/mmdet/g2sd-frs_vitdet-mask-rcnn_vit-s-l2s_8xb8-lsj-100e_coco-1024.py')).train()
_base_ = ['./vitdet_mask-rcnn_vit-l_8xb8-lsj-100e_coco-1024.py']
teacher_checkpoint = 'checkpoints/vitdet_mask-rcnn_vit-l_coco.pth'
model = dict(
    type='G2SDDistillMaskRCNN',
    backbone=dict(embed_dim=384, depth=12, num_heads=6, drop_path_rate=0.1, global_blocks=(2, 5, 8, 11),
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ViT_S_GD_L.pth')),
    neck=dict(in_channels=384),
    teacher=dict(cfg={{_base_.model}}, checkpoint=teacher_checkpoint, train_mode=False),
    distill=dict(feat_weight=0.001, obj_weight=0.1, warmup_iters=500, num_levels=5, channels=256))
optim_wrapper = dict(optimizer=dict(weight_decay=0.05), paramwise_cfg=dict(num_layers=12, decay_rate=0.7))
