# Mini-reproduction detector: a 4-block ViT (96-d, patch 8) as the MAE encoder and a 2-block 64-d MAE
# decoder as the box head, on 64 x 64 paste scenes (10 classes; procedural shapes or CIFAR-10 photos).
# Used by `python -m imted.repro`, which pre-trains the MAE, loads it through `load_mae_into_detector`,
# freezes the backbone (as the official few-shot configs do) and trains only `roi_head` on fixed
# proposals; the RPN / neck are built (the config is a complete ImTED) but not used there.
#
#   python -m imted.repro            # 3 seeds, 4-7 min on 2 shared CPU cores; writes results/imted.json
#
# `fc_bbox_head` is the standard 2-fc head of the baseline arm (same RoI features, random init).
_base_ = ['./imted_faster-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py']

embed_dim = 96
num_classes = 10
roi_size = 3
model = dict(
    backbone=dict(img_size=64, patch_size=8, embed_dim=embed_dim, depth=4, num_heads=3),
    roi_head=dict(
        mfm_roi_extractor=None,
        bbox_roi_extractor=dict(roi_layer=dict(type='RoIAlign', output_size=roi_size, sampling_ratio=2),
                                out_channels=embed_dim, featmap_strides=[8]),
        bbox_head=dict(in_channels=embed_dim, decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2,
                       pretrain_grid=8, roi_feat_size=roi_size, num_classes=num_classes)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=16, pos_fraction=0.25))),
    test_cfg=dict(rcnn=dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20)))

fc_bbox_head = dict(
    _delete_=True, type='Shared2FCBBoxHead', in_channels=embed_dim, fc_out_channels=256, roi_feat_size=roi_size,
    num_classes=num_classes,
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=[0.1, 0.1, 0.2, 0.2]),
    reg_class_agnostic=False, reg_decoded_bbox=True,
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
