# imTED Faster R-CNN, ViT-S MAE encoder + the 4-block 256-d MAE decoder (800-epoch MAE ViT-S), COCO 3x.
#
#   python -m imted.train --config imted/configs/mmdet/imted_faster-rcnn_vit-s-mae_8xb2-3x_coco.py \
#       --set model.mae_checkpoint=/path/mae_vit_small_800e.pth
#
# Expected: 48.2 box AP (official release); 30.25 M parameters.
_base_ = './imted_faster-rcnn_vit-b-mae_8xb2-3x_coco.py'
embed_dim = 384
model = dict(
    backbone=dict(embed_dim=embed_dim, depth=12, num_heads=6, drop_path_rate=0.1),
    neck=dict(in_channels=embed_dim),
    roi_head=dict(
        vit_channels=embed_dim,
        bbox_roi_extractor=dict(out_channels=embed_dim),
        mfm_roi_extractor=dict(out_channels=embed_dim),
        bbox_head=dict(in_channels=embed_dim, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8)))
