# imTED Faster R-CNN, ViT-L MAE encoder + 8-block 512-d MAE decoder, COCO 3x.
#
#   python -m imted.train --config imted/configs/mmdet/imted_faster-rcnn_vit-l-mae_8xb2-3x_coco.py \
#       --set model.mae_checkpoint=/path/mae_pretrain_vit_large_full.pth
#
# Expected: 55.4 box AP (official release); 346.11 M parameters.
_base_ = './imted_faster-rcnn_vit-b-mae_8xb2-3x_coco.py'
embed_dim = 1024
depth = 24
model = dict(
    backbone=dict(embed_dim=embed_dim, depth=depth, num_heads=16, drop_path_rate=0.3),
    neck=dict(in_channels=embed_dim),
    roi_head=dict(
        vit_channels=embed_dim,
        bbox_roi_extractor=dict(out_channels=embed_dim),
        mfm_roi_extractor=dict(out_channels=embed_dim),
        bbox_head=dict(in_channels=embed_dim)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=depth))
