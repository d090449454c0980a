# LDA in the box classifier of Mask R-CNN R-50-FPN on LVIS v1 (1203 classes), 8 GPUs x 2 images, 2x.
#
#   python tools/train.py lda/configs/mmdet/lda_mask-rcnn_r50_fpn_8xb2-ms-2x_lvis-v1.py   # mmdet's train script
#   (or mmengine's Runner.from_cfg(Config.fromfile(...)).train())
#
# Expected: AP_r / AP_c / AP_f and box / mask AP from mmdet's LVISMetric (needs the `lvis` package).
# The paper's detection numbers and its exact LVIS version and schedule could not be retrieved, and no
# detection code was released: this recipe is our design (see lda/README.md). Not trained here.
_base_ = 'mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py'

custom_imports = dict(imports=['lda.mmdet'], allow_failed_imports=False)

data_root = 'data/lvis_v1/'
train_ann = 'annotations/lvis_v1_train.json'

model = dict(
    roi_head=dict(
        type='LDARoIHead',
        bbox_head=dict(
            type='LDABBoxHead',
            num_classes=1203,
            # n_c: LVIS training instance counts (read from the categories' instance_count fields)
            count_ann_file=data_root + train_ann,
            count_by='instance',
            neck_dim=128,
            u_weight=1.0, b_weight=2.0, dist_weight=1.0, margin=1.0,
            alpha_window=100, gamma=2.0)))

# LDA re-weights the loss, so plain uniform image sampling replaces repeat-factor sampling.
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='LVISV1Dataset',
        data_root=data_root,
        ann_file=train_ann,
        data_prefix=dict(img=''),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline={{_base_.train_pipeline}}))

# 24 epochs, lr steps at 16 and 22 (mmdet's 2x schedule).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=24)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1)
]
