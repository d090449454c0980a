# Smoke configuration: the tiny imTED of imted_faster-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py plus the FCN
# mask head (64 channels) on coco_mini at 320 px. Used by imted/tests/test_imted_mmdet.py.
#
#   python -m imted.train --config imted/configs/mmdet/imted_mask-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py
#
# Expected: one training step, then box and mask AP by pycocotools on 4 val2017 images (near 0).
_base_ = ['./imted_faster-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py']
ch = 64
model = dict(
    data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=ch, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type='FCNMaskHead', num_convs=2, in_channels=ch, conv_out_channels=ch, num_classes=80,
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn=dict(mask_size=28)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(320, 320), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 320), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'instances')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
