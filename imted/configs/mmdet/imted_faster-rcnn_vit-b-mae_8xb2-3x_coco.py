# imTED Faster R-CNN, ViT-B MAE encoder + 8-block MAE decoder as the box head, COCO 3x (36 epochs).
#
#   python -m imted.train --config imted/configs/mmdet/imted_faster-rcnn_vit-b-mae_8xb2-3x_coco.py \
#       --set model.mae_checkpoint=/path/mae_pretrain_vit_base_full.pth     (8 GPUs x 2 images: torchrun)
#
# Expected: 52.9 box AP on COCO val2017 (official release); 122.64 M parameters.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['imted.mmdet'], allow_failed_imports=False)

embed_dim = 768
depth = 12
model = dict(
    type='ImTED',
    mae_checkpoint=None,  # mae_pretrain_vit_base_full.pth (encoder + decoder)
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(_delete_=True, type='ImTEDViT', img_size=224, patch_size=16, embed_dim=embed_dim, depth=depth,
                  num_heads=12, drop_path_rate=0.2, use_checkpoint=True),
    neck=dict(_delete_=True, type='ImTEDSimpleFPN', in_channels=embed_dim, out_channels=256),
    rpn_head=dict(loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='ImTEDRoIHead',
        vit_channels=embed_dim,
        bbox_roi_extractor=dict(
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=embed_dim, featmap_strides=[16]),
        mfm_roi_extractor=dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=embed_dim, featmap_strides=[4, 8, 16, 32], finest_scale=56),
        bbox_head=dict(
            _delete_=True, type='MAEBBoxHead', in_channels=embed_dim, decoder_embed_dim=512, decoder_depth=8,
            decoder_num_heads=16, pretrain_grid=14, roi_feat_size=7, num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False, reg_decoded_bbox=True,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000)))

# DETR-style augmentation (the official recipe) in mmdet 3.x syntax.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=[(s, 1333) for s in range(480, 801, 32)], keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=[(s, 1333) for s in range(480, 801, 32)], keep_ratio=True)],
    ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True, type='AmpOptimWrapper', constructor='ImTEDLayerDecayConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(num_layers=depth, layer_decay_rate=0.75))
max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
