# Smoke configuration: LDA Mask R-CNN (ResNet-18 FPN, 64-channel neck) on the real coco_mini images at 320 px,
# with LVIS-style frequency-bucket AP. Used by lda/tests/test_lda_mmdet.py (one training step + evaluation).
#
#   python -c "from mmengine.config import Config; from mmengine.runner import Runner; \
#              Runner.from_cfg(Config.fromfile('lda/configs/mmdet/lda_mask-rcnn_r18_fpn_1xb2-smoke_coco-mini.py')).train()"
#
# Expected after the single step: bbox/segm AP_r, AP_c, AP_f reported (values near 0: the weights are random).
# coco_mini's 208 training images are too few for LVIS's 10 / 100-image thresholds (no class reaches 100),
# so rare <= 3, common 4-20, frequent > 20 training images: 17 / 58 / 5 of the 80 categories.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['lda.mmdet'], allow_failed_imports=False)

# <repo>/../shared/data/coco_mini, found from this file's folder (lda/configs/mmdet).
data_root = '{{fileDirname}}/../../../../shared/data/coco_mini/'
train_ann = 'annotations/instances_train2017.json'
val_ann = 'annotations/instances_val2017.json'
image_scale = (320, 320)
ch = 64

model = dict(
    backbone=dict(depth=18, init_cfg=None),  # nothing is downloaded
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch),
    roi_head=dict(
        type='LDARoIHead',
        bbox_roi_extractor=dict(out_channels=ch),
        bbox_head=dict(
            type='LDABBoxHead', in_channels=ch, fc_out_channels=256, num_classes=80,
            count_ann_file=data_root + train_ann, count_by='instance', neck_dim=32),
        mask_roi_extractor=dict(out_channels=ch),
        mask_head=dict(in_channels=ch, conv_out_channels=ch, num_classes=80)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(score_thr=0.0, max_per_img=50)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'instances')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='CocoDataset', data_root=data_root, ann_file=train_ann, data_prefix=dict(img='images/train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=train_pipeline, backend_args=backend_args))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoDataset', data_root=data_root, ann_file=val_ann, data_prefix=dict(img='images/val2017/'),
        test_mode=True, pipeline=test_pipeline, backend_args=backend_args))
test_dataloader = val_dataloader
# Without ann_file the metric builds its ground truth from the evaluated images only (tests use a few);
# the test pipeline therefore keeps 'instances' in the packed meta.
val_evaluator = dict(
    type='LongTailCocoMetric', metric=['bbox', 'segm'], format_only=False,
    train_ann_file=data_root + train_ann, rare_max=3, common_max=20, backend_args=backend_args)
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
                     clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = []
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1000), logger=dict(type='LoggerHook', interval=1))
log_level = 'WARNING'
