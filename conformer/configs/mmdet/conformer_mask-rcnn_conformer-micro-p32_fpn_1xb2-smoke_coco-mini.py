# Smoke configuration: the paper's Mask R-CNN recipe (conformer_mask-rcnn_conformer-s-p32_fpn_8xb2-1x_coco.py)
# with a small Conformer (P = 32, r = 0.25, E = 32, depth 6) and a 32-channel neck, on 2 training and
# 4 validation images of ../shared/data/coco_mini at 320 px. Used by conformer/tests/test_conformer_mmdet.py.
#
#   python -c "from mmengine.config import Config; from mmengine.runner import Runner; \
#              Runner.from_cfg(Config.fromfile('conformer/configs/mmdet/conformer_mask-rcnn_conformer-micro-p32_fpn_1xb2-smoke_coco-mini.py')).train()"
#
# Expected: one training iteration with finite losses, then COCO ['bbox', 'segm'] AP from pycocotools (near 0:
# the weights are random). Nothing is downloaded (init_cfg=None).
_base_ = './conformer_mask-rcnn_conformer-s-p32_fpn_8xb2-1x_coco.py'

# <repo>/../shared/data/coco_mini, found from this file's folder (conformer/configs/mmdet).
data_root = '{{fileDirname}}/../../../../shared/data/coco_mini/'
image_scale = (320, 320)
ch = 32

model = dict(
    backbone=dict(channel_ratio=0.25, embed_dim=32, num_heads=2, depth=6, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 64], out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=ch),
        bbox_head=dict(in_channels=ch, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=ch),
        mask_head=dict(in_channels=ch, conv_out_channels=ch)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
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
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='images/train2017/'), indices=2, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='images/val2017/'), indices=4, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=None)
