# Faster R-CNN with a Conformer-S/32 backbone and FPN on COCO 2017, 1x schedule, 8 GPUs x 2 images
# (the official pengzhiliang/Conformer mmdetection/configs/faster_rcnn/faster_rcnn_conformer_small_patch32_fpn_1x_coco.py,
# ported to MMDetection 3.x).
#
#   python -m conformer.convert --src Conformer_small_patch32.pth --dst checkpoints/conformer_small_patch32_in1k.pth \
#       --to mmdet-backbone
#   bash <mmdet>/tools/dist_train.sh conformer/configs/mmdet/conformer_faster-rcnn_conformer-s-p32_fpn_8xb2-1x_coco.py 8
#   (or mmengine: Runner.from_cfg(Config.fromfile(...)).train(); data under data/coco/)
#
# Expected (official release, COCO val2017): box AP 43.1 (first table) / 43.7 (updated table); 55.4 M parameters.
# Not trained here; conformer/tests/test_conformer_mmdet.py builds it and runs a training step and a COCO evaluation at
# smoke size on ../shared/data/coco_mini.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['conformer.mmdet'], allow_failed_imports=False)

# ImageNet Conformer-S/32 (official main.py checkpoint, mmpretrain file or `conformer.convert` output).
pretrained = 'checkpoints/conformer_small_patch32_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConformerDet',
        patch_size=32,
        channel_ratio=4,
        embed_dim=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        qkv_bias=True,
        out_indices=(0, 1, 2, 3),
        norm_eval=True,
        frozen_stages=1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # CNN-branch maps of Conformer-S: 256 @ 1/4, 512 @ 1/8, 1024 @ 1/16, 1024 @ 1/32.
    neck=dict(in_channels=[256, 512, 1024, 1024], out_channels=256, num_outs=5))

# Single scale 1344 x 800 (a multiple of 32, which the P = 32 token grid needs), flip 0.5, pad to 32.
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1344, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1344, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW lr 1e-4, weight decay 1e-4, no clipping; 500-iteration linear warm-up from 0.001, steps at epochs 8 and 11.
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4), clip_grad=None)
train_cfg = dict(max_epochs=12)
find_unused_parameters = True
auto_scale_lr = dict(enable=False, base_batch_size=16)
