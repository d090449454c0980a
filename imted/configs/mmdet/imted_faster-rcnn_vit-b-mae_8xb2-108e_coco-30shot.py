# imTED few-shot stage 2: 30-shot fine-tuning on all 80 classes from the base-training checkpoint, backbone
# frozen, decoder layer decay 0.8, 108 epochs; evaluated on the 20 novel classes of val2017.
#
#   python -m imted.train --config imted/configs/mmdet/imted_faster-rcnn_vit-b-mae_8xb2-108e_coco-30shot.py \
#       --set load_from=work_dirs/base60/epoch_24.pth
#
# Expected: 30.4 novel AP (official release; paper 30.2). The 30-shot json (seed 0) is the FsDet one.
_base_ = './imted_faster-rcnn_vit-b-mae_8xb2-24e_coco-base60.py'
model = dict(mae_checkpoint=None, roi_head=dict(bbox_head=dict(num_classes=80)))
train_dataloader = dict(dataset=dict(metainfo=dict(classes=_base_.all_classes),
                                     ann_file='annotations/few_shot/full_box_30shot_trainval.json'))
val_dataloader = dict(dataset=dict(metainfo=dict(classes=_base_.novel_classes)))
test_dataloader = val_dataloader
optim_wrapper = dict(paramwise_cfg=dict(freeze_backbone=True, decoder_decay=True, decoder_depth=8,
                                        layer_decay_rate=0.8))
max_epochs = 108
train_cfg = dict(max_epochs=max_epochs, val_interval=6)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[81, 99], gamma=0.1),
]
