# ViTDet Mask R-CNN, ViT-L/16 from MAE (the L -> S detection teacher); same schedule as the ViT-B teacher,
# ViTDet-L settings: drop path 0.4, global attention in blocks 5, 11, 17, 23, layer decay 0.8 over 24 layers.
#   Runner.from_cfg(Config.fromfile('g2sd/configs/mmdet/vitdet_mask-rcnn_vit-l_8xb8-lsj-100e_coco-1024.py')).train()
_base_ = ['./vitdet_mask-rcnn_vit-b_8xb8-lsj-100e_coco-1024.py']
model = dict(
    backbone=dict(embed_dim=1024, depth=24, num_heads=16, drop_path_rate=0.4, global_blocks=(5, 11, 17, 23),
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mae_pretrain_vit_large.pth')),
    neck=dict(in_channels=1024))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=24, decay_rate=0.8))
