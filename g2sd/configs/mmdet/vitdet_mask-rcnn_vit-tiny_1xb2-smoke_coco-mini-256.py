# Smoke configuration: a two-block ViTDet Mask R-CNN (32-channel pyramid and heads) on the real coco_mini
# images at 256 px; the teacher architecture of the distillation smoke test. Used by g2sd/tests/test_g2sd_mmdet.py.
#
#   Runner.from_cfg(Config.fromfile('g2sd/configs/mmdet/vitdet_mask-rcnn_vit-tiny_1xb2-smoke_coco-mini-256.py')).train()
#
# Expected: one training step, then bbox / segm AP on 2 val2017 images (near 0: random weights).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['g2sd.mmdet'], allow_failed_imports=False)

# <repo>/../shared/data/coco_mini, found from this file's folder (g2sd/configs/mmdet).
data_root = '{{fileDirname}}/../../../../shared/data/coco_mini/'
image_size = (256, 256)
ch = 32
norm_cfg = dict(type='G2SDLN2d')

model = dict(
    data_preprocessor=dict(pad_size_divisor=32,
                           batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(_delete_=True, type='G2SDViTDet', img_size=256, embed_dim=96, depth=2, num_heads=3,
                  drop_path_rate=0.0, window_size=14, global_blocks=(1,), init_cfg=None),
    neck=dict(_delete_=True, type='G2SDSimpleFPN', in_channels=96, out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch, num_convs=2),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=ch),
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', in_channels=ch, conv_out_channels=ch, fc_out_channels=64,
                       norm_cfg=norm_cfg),
        mask_roi_extractor=dict(out_channels=ch),
        mask_head=dict(in_channels=ch, conv_out_channels=ch, norm_cfg=norm_cfg)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=300, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50), rcnn=dict(score_thr=0.0, max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # 'instances' travels with each sample so the metric evaluates against these images only.
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'instances')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root=data_root, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='images/train2017/'), filter_cfg=dict(filter_empty_gt=True, min_size=32),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='images/val2017/'), test_mode=True, indices=2, pipeline=test_pipeline))
test_dataloader = val_dataloader
# Without ann_file the metric builds its ground truth from the evaluated images only.
val_evaluator = dict(type='CocoMetric', metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', constructor='G2SDViTLayerDecayConstructor',
                     paramwise_cfg=dict(num_layers=2, decay_rate=0.7),
                     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = []
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1000), logger=dict(type='LoggerHook', interval=1))
log_level = 'WARNING'
