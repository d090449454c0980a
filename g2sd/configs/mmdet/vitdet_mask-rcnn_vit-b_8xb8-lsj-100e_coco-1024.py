# ViTDet Mask R-CNN, ViT-B/16 from MAE, 100-epoch LSJ schedule on COCO at 1024 px: the detection teacher
# of G2SD (fine-tuned on COCO before distillation; detectron2 model zoo reports 51.6 box AP).
#
#   python tools/train.py g2sd/configs/mmdet/vitdet_mask-rcnn_vit-b_8xb8-lsj-100e_coco-1024.py   # mmdet's train.py
#   (or: from mmengine.runner import Runner; Runner.from_cfg(Config.fromfile(THIS)).train())
#
# Needs COCO in data/coco/ and MAE ViT-B weights in checkpoints/mae_pretrain_vit_base.pth.
# 184,375 iterations at batch 64 (8 GPUs x 8), AdamW 1e-4, layer decay 0.7, steps at 163,889 / 177,546.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['g2sd.mmdet'], allow_failed_imports=False)

image_size = (1024, 1024)
norm_cfg = dict(type='G2SDLN2d')
batch_augments = [dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]

model = dict(
    data_preprocessor=dict(pad_size_divisor=32, batch_augments=batch_augments),
    backbone=dict(
        _delete_=True, type='G2SDViTDet', img_size=1024, patch_size=16, embed_dim=768, depth=12, num_heads=12,
        mlp_ratio=4.0, drop_path_rate=0.1, window_size=14, global_blocks=(2, 5, 8, 11), use_rel_pos=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mae_pretrain_vit_base.pth')),
    neck=dict(_delete_=True, type='G2SDSimpleFPN', in_channels=768, out_channels=256),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

train_dataloader = dict(
    batch_size=8, num_workers=8, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, type='CocoDataset', data_root='data/coco/',
                 ann_file='annotations/instances_train2017.json', data_prefix=dict(img='train2017/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline={{_base_.train_pipeline}}))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True, type='AmpOptimWrapper', constructor='G2SDViTLayerDecayConstructor',
    paramwise_cfg=dict(num_layers=12, decay_rate=0.7),
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.1))

max_iters = 184375
interval = 5000
dynamic_intervals = [(max_iters // interval * interval + 1, max_iters)]
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[163889, 177546], gamma=0.1),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=interval,
                 dynamic_intervals=dynamic_intervals)
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(by_epoch=False, save_last=True, interval=interval, max_keep_ckpts=5))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=64)
