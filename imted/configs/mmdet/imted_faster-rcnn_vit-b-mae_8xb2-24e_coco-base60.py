# imTED few-shot stage 1: base training on the 60 COCO base classes (FsDet split), 24 epochs.
#
#   python -m imted.train --config imted/configs/mmdet/imted_faster-rcnn_vit-b-mae_8xb2-24e_coco-base60.py \
#       --set model.mae_checkpoint=/path/mae_pretrain_vit_base_full.pth
#
# Expected: 50.6 box AP on the 60 base classes (official release).
_base_ = './imted_faster-rcnn_vit-b-mae_8xb2-3x_coco.py'

# The 20 novel classes are the PASCAL VOC ones (FsDet split); the other 60 are base classes.
novel_classes = ('airplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
                 'dining table', 'dog', 'horse', 'motorcycle', 'person', 'potted plant', 'sheep', 'couch',
                 'train', 'tv')
all_classes = ('person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
               'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
               'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
               'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
               'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
               'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
               'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
               'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
               'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
               'teddy bear', 'hair drier', 'toothbrush')
base_classes = tuple(c for c in all_classes if c not in novel_classes)

model = dict(roi_head=dict(bbox_head=dict(num_classes=60)))
train_dataloader = dict(dataset=dict(metainfo=dict(classes=base_classes)))
val_dataloader = dict(dataset=dict(metainfo=dict(classes=base_classes)))
test_dataloader = val_dataloader
max_epochs = 24
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[18, 22], gamma=0.1),
]
