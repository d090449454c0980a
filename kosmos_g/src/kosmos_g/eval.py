"""`python -m kosmos_g.eval --checkpoint PATH [--samples N] [--steps S] [--guidance W] [--out FILE]`.

Evaluates a mini stage-3 checkpoint (``python -m kosmos_g.train --config mini_instruct``): for N
interleaved prompts "<image of an entity> on a {bg} background" it generates with the checkpoint's
frozen U-Net through :class:`kosmos_g.pipeline.KosmosGPipeline` (DDIM) and reports the judge's
subject / colour / background accuracy, the DreamBench-style image similarity (cosine of judge
features to the input entity image, the DINO / CLIP-I protocol with the judge as extractor) and
FID against real renders (torchmetrics with the judge's features). The judge is trained here on
fresh renders (a few hundred steps). The paper's DreamBench / COCO numbers need the pretrained
DINO, CLIP and Inception networks and the datasets, which this repository does not ship.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch

from vlcore.cli import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kosmos_g.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--judge-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the metrics as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from diffusers import DDIMScheduler

    from kosmos_g import mini
    from kosmos_g.metrics import FeatureExtractor, fid
    from kosmos_g.pipeline import KosmosGPipeline
    from kosmos_g.testing import mini_processor
    from kosmos_g.train import build_from_checkpoint, load_checkpoint

    _, unet, enc = build_from_checkpoint(load_checkpoint(args.checkpoint))
    enc.eval()
    judge, judge_acc = mini.train_judge(mini.MiniConfig(judge_steps=args.judge_steps, shared_seed=args.seed + 1000),
                                        log=lambda s: None)
    sched = DDIMScheduler(**dict(mini.sample_scheduler().config))
    pipe = KosmosGPipeline(enc, mini_processor, unet, sched)
    pipe.set_progress_bar_config(disable=True)
    sc = mini.sample_scenes(args.samples, torch.Generator().manual_seed(args.seed + 5))
    prompts = [[sc.crop[i], f"on a {mini.BG_NAMES[int(sc.bg[i])]} background"] for i in range(args.samples)]
    images = pipe(prompts, num_inference_steps=args.steps, guidance_scale=args.guidance,
                  generator=torch.Generator().manual_seed(args.seed)).images
    m = mini.judge_metrics(judge, images, sc)
    m["fid_judge_features"] = fid(FeatureExtractor(judge.body, num_features=128), sc.image, images)
    m["judge_clean_accuracy"] = judge_acc
    print(json.dumps(m, indent=2), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(m, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
