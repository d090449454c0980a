# Smoke configuration: a two-block ViT imTED Faster R-CNN (96-d encoder, one 64-d decoder block as the box
# head, 64-channel pyramid) on the real coco_mini images at 320 px. Used by imted/tests/test_imted_mmdet.py.
#
#   python -m imted.train --config imted/configs/mmdet/imted_faster-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py
#
# Expected: one training step, then box AP by pycocotools on 4 val2017 images (near 0: random weights).
_base_ = ['./imted_faster-rcnn_vit-b-mae_8xb2-3x_coco.py']

# <repo>/../shared/data/coco_mini, found from this file's folder (imted/configs/mmdet).
data_root = '{{fileDirname}}/../../../../shared/data/coco_mini/'
image_size = (320, 320)
embed_dim = 96
ch = 64
model = dict(
    backbone=dict(img_size=224, embed_dim=embed_dim, depth=2, num_heads=3, drop_path_rate=0.0, use_checkpoint=False),
    neck=dict(in_channels=embed_dim, out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch),
    roi_head=dict(
        vit_channels=embed_dim, mfm_in_channels=ch,
        bbox_roi_extractor=dict(out_channels=embed_dim),
        mfm_roi_extractor=dict(out_channels=embed_dim),
        bbox_head=dict(in_channels=embed_dim, decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=2)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=300, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50), rcnn=dict(score_thr=0.0, max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    # 'instances' travels with each sample so the metric evaluates against these images only.
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'instances')),
]
train_dataloader = dict(
    _delete_=True, batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True), batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type='CocoDataset', data_root=data_root, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='images/train2017/'), filter_cfg=dict(filter_empty_gt=True, min_size=32),
                 pipeline=train_pipeline))
val_dataloader = dict(
    _delete_=True, batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='images/val2017/'), test_mode=True, indices=4, pipeline=test_pipeline))
test_dataloader = val_dataloader
# Without ann_file the metric builds its ground truth from the evaluated images only.
val_evaluator = dict(_delete_=True, type='CocoMetric', metric=['bbox'], format_only=False)
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1, val_interval=1000)
optim_wrapper = dict(type='OptimWrapper', paramwise_cfg=dict(num_layers=2))
param_scheduler = []
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1000), logger=dict(type='LoggerHook', interval=1))
log_level = 'WARNING'
