"""Train the beit2 UperNet plug-in, scaled down, through mmengine's Runner; write the final weights.

Run as one process or under ``torchrun`` (gloo): ``seg_dist.py OUT --batch B --accum A --iters N``.
Nothing in the run draws random numbers after initialisation (GroupNorm, no drop path, a fixed resize,
no shuffling), so 2 processes x 2 accumulation steps must equal 1 process x 4 steps: the same global
batch per update.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner
from safetensors.torch import save_file

from vlcore.data import shared_data_root

import beit2

CONFIG = Path(beit2.__file__).resolve().parents[2] / "configs" / "mmseg" / "upernet_beitv2-base_8xb2-160k_ade20k-512x512.py"


def build(out: Path, batch: int, accum: int, iters: int) -> Config:
    cfg = Config.fromfile(str(CONFIG))
    gn = dict(type="GN", num_groups=4, requires_grad=True)
    m = cfg.model
    m.data_preprocessor.size = (64, 64)
    m.backbone.update(img_size=64, embed_dim=32, depth=2, num_heads=2, out_indices=(0, 1, 1, 1), drop_path_rate=0.0)
    m.neck.update(embed_dim=32, norm_cfg=gn)
    m.decode_head.update(in_channels=[32] * 4, channels=16, norm_cfg=gn, dropout_ratio=0.0)
    m.auxiliary_head.update(in_channels=32, channels=8, norm_cfg=gn, dropout_ratio=0.0)
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", reduce_zero_label=True),
                dict(type="Resize", scale=(64, 64), keep_ratio=False), dict(type="PackSegInputs")]
    # Two images, so that each of 2 ranks holds one and no sampler pads an epoch with repeats.
    ade = dict(type="ADE20KDataset", data_root=str(shared_data_root() / "ade20k_sceneparsing_sample"),
               data_prefix=dict(img_path="images", seg_map_path="annotations"), indices=2, pipeline=pipeline)
    cfg.train_dataloader = ConfigDict(batch_size=batch, num_workers=0, persistent_workers=False,
                                      sampler=dict(type="DefaultSampler", shuffle=False), dataset=ade)
    cfg.val_dataloader = cfg.test_dataloader = None
    cfg.val_cfg = cfg.test_cfg = cfg.val_evaluator = cfg.test_evaluator = None
    cfg.train_cfg = ConfigDict(type="IterBasedTrainLoop", max_iters=iters, val_interval=10**6)
    cfg.optim_wrapper.type = "OptimWrapper"
    cfg.optim_wrapper.accumulative_counts = accum
    # SGD: AdamW's first steps divide tiny gradients by their own size, so float rounding in
    # where the batch is summed could flip an update's sign; SGD keeps the comparison about DDP.
    cfg.optim_wrapper.optimizer = dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=0.05)
    cfg.optim_wrapper.paramwise_cfg.num_layers = 2
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=10**6)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=10**6)
    cfg.default_hooks.visualization = dict(type="SegVisualizationHook", draw=False)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(out / "work")
    cfg.log_level = "WARNING"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # mmengine's own 'pytorch' launcher assumes one GPU per rank; on CPU the gloo group is
        # created here first, and the Runner then finds it and wraps the model for CPU DDP.
        torch.distributed.init_process_group("gloo")
        cfg.launcher = "pytorch"
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=True)
    else:
        cfg.launcher = "none"
    cfg.env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                       dist_cfg=dict(backend="gloo"))
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--accum", type=int, required=True)
    ap.add_argument("--iters", type=int, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    runner = Runner.from_cfg(build(out, args.batch, args.accum, args.iters))
    main_rank = int(os.environ.get("RANK", "0")) == 0
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    if main_rank:
        save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(out / "init.safetensors"))
    runner.train()
    if main_rank:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "final.safetensors"))


if __name__ == "__main__":
    main()
