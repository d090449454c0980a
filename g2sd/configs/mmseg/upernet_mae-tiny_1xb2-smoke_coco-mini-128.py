# Smoke configuration: UperNet on a four-block 96-wide mmseg MAE backbone, random weights, coco_mini's
# semantic maps (133 COCO panoptic classes) at 128 px; the teacher architecture of the distillation smoke test.
#   Runner.from_cfg(Config.fromfile('g2sd/configs/mmseg/upernet_mae-tiny_1xb2-smoke_coco-mini-128.py')).train()
# Expected: one training step, then mIoU on 2 val2017 images (near 0: random weights).
_base_ = ['mmseg::_base_/models/upernet_mae.py', 'mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['g2sd.mmseg'], allow_failed_imports=False)

data_root = '{{fileDirname}}/../../../../shared/data/coco_mini/'
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs a process group
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size, embed_dims=96, num_layers=4, num_heads=3, out_indices=(0, 1, 2, 3),
                  init_values=1.0, drop_path_rate=0.0),
    neck=dict(embed_dim=96, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[96, 96, 96, 96], channels=32, num_classes=133, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=96, channels=16, num_classes=133, norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))  # the paper's sliding window, scaled

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='G2SDCocoMiniSemantic', data_root=data_root,
                 data_prefix=dict(img_path='images/train2017', seg_map_path='semantic_masks/train2017'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='G2SDCocoMiniSemantic', data_root=data_root, indices=2,
                 data_prefix=dict(img_path='images/val2017', seg_map_path='semantic_masks/val2017'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', constructor='LayerDecayOptimizerConstructor',
                     paramwise_cfg=dict(num_layers=4, layer_decay_rate=0.65),
                     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = []
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000),
                     logger=dict(type='LoggerHook', interval=1))
log_level = 'WARNING'
