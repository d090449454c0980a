"""`python -m kosmos_g.train --config PRESET_OR_YAML [--set key=value ...]`: stage 2 or stage 3.

Stage ``align`` (card §3, stage 2): AlignerNet M + N on captions with the MLLM frozen,
L = MSE(M(s), text_encoder(caption)) + L_rec. Stage ``instruct`` (stage 3): MLLM + M trained with the
diffusion loss through the frozen U-Net (10% null condition); the U-Net / text-encoder hashes are
checked before and after. With ``data: mini`` everything runs on the generated world of the mini
reproduction (a stage-2 run without ``init`` first trains the decoder stand-in and the MLLM);
the paper presets need weights and corpora this repository does not ship and stop with a message.
The run folder receives config.yaml, metrics.json and checkpoint.pt, and ckpt/step_N every
``ckpt_interval`` steps (and where each loop ends); ``resume=auto`` continues a killed run exactly.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from vlcore.checkpoint import load_state_dict_strict, load_training_state, save_training_state
from vlcore.cli import run_cli
from vlcore.config import load_config, save_config
from vlcore.errors import UserError

from kosmos_g.config import TrainConfig, resolve_config_path
from kosmos_g.resume import LoopCheckpoints


def _mini_cfg(cfg: TrainConfig):
    from kosmos_g.mini import MiniConfig

    lr = cfg.optim.lr
    return MiniConfig(s0_steps=cfg.s0_steps, s0_batch=32, s1_steps=cfg.mllm_steps, s2_steps=cfg.steps,
                      s2_batch=cfg.batch_size, s2_lr=lr, s3_steps=cfg.steps, s3_batch=cfg.batch_size, s3_lr=lr,
                      cfg_drop=cfg.cfg_drop, shared_seed=cfg.seed + 1000, log_every=cfg.log_every)


_CHECKPOINT_KEYS = ("stage", "text", "unet", "mllm", "aligner", "unet_hash")


def load_checkpoint(path: str | Path) -> dict:
    """A mini checkpoint: {'text', 'unet', 'mllm', 'aligner' state dicts, 'stage', 'unet_hash', ...}."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (run the previous stage first)")
    ck = load_training_state(path)
    missing = [k for k in _CHECKPOINT_KEYS if k not in ck]
    if missing or ck["stage"] not in ("align", "instruct"):
        raise UserError(f"{path}: not a kosmos_g mini checkpoint (missing {', '.join(missing) or 'a valid stage'})")
    ck["source"] = str(path)
    return ck


def build_from_checkpoint(ck: dict):
    """(text encoder, U-Net (both frozen), KosmosGEncoder) from a mini checkpoint."""
    from kosmos_g.losses import freeze_
    from kosmos_g.mini import BOS, TinyTextEncoder, mini_mllm, tiny_aligner, tiny_unet
    from kosmos_g.models.kosmos_g import KosmosGEncoder

    text, unet = TinyTextEncoder(), tiny_unet()
    mllm, aligner = mini_mllm(), tiny_aligner()
    if ck["stage"] == "instruct":
        aligner.drop_reconstruction_()
    src = ck.get("source", "checkpoint")
    for name, module in (("text", text), ("unet", unet), ("mllm", mllm), ("aligner", aligner)):
        load_state_dict_strict(module, ck[name], source=f"{src} ({name})")
    return freeze_(text), freeze_(unet), KosmosGEncoder(mllm, aligner, bos_id=BOS)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kosmos_g.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="preset name in kosmos_g/configs or a YAML file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = ap.parse_args(argv)
    cfg = load_config(TrainConfig, resolve_config_path(args.config), args.set)
    if cfg.data != "mini":
        raise UserError(
            f"data '{cfg.data}' needs the paper's corpora and the SD v1.5 / stage-1 MLLM weights, which this "
            "repository does not ship; the code path of this stage runs on the generated world with --set data=mini")
    if cfg.stage == "instruct" and not cfg.init:
        raise UserError("stage 'instruct' needs init: the stage-2 checkpoint")
    init = load_checkpoint(cfg.init) if cfg.init else None  # before the run folder: a bad file leaves nothing
    from kosmos_g import mini
    from kosmos_g.losses import module_hash

    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    mc = _mini_cfg(cfg)
    t0 = time.time()
    log = lambda s: print(f"[kosmos_g.train]{s}", flush=True)  # noqa: E731
    metrics: dict = {"stage": cfg.stage}
    ckpt = LoopCheckpoints(out / "ckpt", cfg.ckpt_interval, cfg.keep_last, resume=cfg.resume == "auto", log=log)
    if cfg.stage == "align":
        if init is not None:
            text, unet, enc = build_from_checkpoint(init)
            mllm = enc.mllm
        else:
            s0 = mini.train_s0(mc, log, ckpt)
            text, unet = s0["text"], s0["unet"]
            mllm, c1 = mini.train_s1(mc, cfg.seed, log, ckpt)
            metrics["s0_loss"] = s0["curve"][-1][1]
            metrics["mllm_loss"] = c1[-1][1]
        h = module_hash(unet)
        aligner, c2 = mini.train_s2(mc, cfg.seed, mllm, text, log, ckpt)
        metrics["align_mse"] = c2[-1][1]
        state = {"stage": "align", "text": text.state_dict(), "unet": unet.state_dict(), "mllm": mllm.state_dict(),
                 "aligner": aligner.state_dict(), "unet_hash": h}
    else:
        text, unet, enc = build_from_checkpoint(init)
        h0, ht = module_hash(unet), module_hash(text)
        if h0 != init["unet_hash"]:
            raise UserError("the U-Net in the checkpoint differs from the one stage 2 recorded")
        seen = mini.IDENTITIES  # the mini repro holds identities out; training here uses all of them
        c3 = mini.train_s3(mc, cfg.seed, enc, unet, seen, log, ckpt)
        unchanged = module_hash(unet) == h0 and module_hash(text) == ht
        metrics.update(diffusion_loss=c3[-1][1], unet_unchanged=unchanged)
        if not unchanged:
            raise RuntimeError("the frozen U-Net or text encoder changed during instruction tuning")
        state = {"stage": "instruct", "text": text.state_dict(), "unet": unet.state_dict(),
                 "mllm": enc.mllm.state_dict(), "aligner": enc.aligner.state_dict(), "unet_hash": h0}
    save_training_state(state, out / "checkpoint.pt")
    metrics["wall_time_s"] = round(time.time() - t0, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f" {cfg.stage}: {metrics} -> {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
