# G2SD specific distillation for COCO, ViT-Ti student (from its GD checkpoint) and ViT-B ViTDet teacher.
#   Runner.from_cfg(Config.fromfile('g2sd/configs/mmdet/g2sd-frs_vitdet-mask-rcnn_vit-t-b2t_8xb8-lsj-100e_coco-1024.py')).train()
_base_ = ['./g2sd-frs_vitdet-mask-rcnn_vit-s-b2s_8xb8-lsj-100e_coco-1024.py']
model = dict(
    backbone=dict(embed_dim=192, num_heads=3,
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ViT_Ti_GD.pth')),
    neck=dict(in_channels=192))
