"""A shipped UperNet config scaled down to a CPU step on the ADE20K sample (used by the tests of
every paper that fine-tunes through this plug-in)."""

from __future__ import annotations

import copy
from pathlib import Path


def small_upernet_config(cfg, work_dir: str | Path, data_root: str | Path):
    """``cfg`` (an mmengine Config of this plug-in) at 64 px with a 2-block, 32-wide backbone,
    BatchNorm, one training iteration and the ADE20K sample at ``data_root`` for train and val."""
    from mmengine.config import ConfigDict

    cfg = copy.deepcopy(cfg)
    bn = dict(type="BN", requires_grad=True)
    m = cfg.model
    m.data_preprocessor.size = (64, 64)
    m.backbone.update(img_size=64, embed_dim=32, depth=2, num_heads=2, out_indices=(0, 1, 1, 1), drop_path_rate=0.1)
    m.neck.update(embed_dim=32, norm_cfg=bn)
    m.decode_head.update(in_channels=[32] * 4, channels=16, norm_cfg=bn)
    m.auxiliary_head.update(in_channels=32, channels=8, norm_cfg=bn)
    m.test_cfg = dict(mode="slide", crop_size=(64, 64), stride=(48, 48))
    train_pipeline = [
        dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", reduce_zero_label=True),
        dict(type="RandomResize", scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type="RandomCrop", crop_size=(64, 64), cat_max_ratio=0.75), dict(type="RandomFlip", prob=0.5),
        dict(type="PhotoMetricDistortion"), dict(type="PackSegInputs"),
    ]
    test_pipeline = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(128, 64), keep_ratio=True),
                     dict(type="LoadAnnotations", reduce_zero_label=True), dict(type="PackSegInputs")]
    ade = dict(type="ADE20KDataset", data_root=str(data_root),
               data_prefix=dict(img_path="images", seg_map_path="annotations"))
    cfg.train_dataloader = ConfigDict(batch_size=2, num_workers=0, persistent_workers=False,
                                      sampler=dict(type="InfiniteSampler", shuffle=True),
                                      dataset=dict(ade, pipeline=train_pipeline))
    cfg.val_dataloader = ConfigDict(batch_size=1, num_workers=0, persistent_workers=False,
                                    sampler=dict(type="DefaultSampler", shuffle=False),
                                    dataset=dict(ade, pipeline=test_pipeline))
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = ConfigDict(type="IterBasedTrainLoop", max_iters=1, val_interval=1)
    cfg.optim_wrapper.type = "OptimWrapper"
    cfg.optim_wrapper.paramwise_cfg.num_layers = 2
    cfg.param_scheduler = [dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=1)]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1000)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1)
    cfg.default_hooks.visualization = dict(type="SegVisualizationHook", draw=False)
    cfg.work_dir = str(work_dir)
    cfg.env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                       dist_cfg=dict(backend="gloo"))
    return cfg
