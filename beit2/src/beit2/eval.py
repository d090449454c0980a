"""`python -m beit2.eval --config <preset> --checkpoint CKPT [--set key=value ...]`.

* ``finetune`` / ``linprobe`` presets: top-1 / top-5 of the classifier on the validation
  split (ImageNet ``root/val`` or the CIFAR-10 test split), fixed order, ``data.limit`` images.
* ``vqkd`` presets: codebook usage (used / unused codes, perplexity) of the tokenizer on
  the evaluation images, the number the BEiT v2 model zoo reports (97% / 100%).

``CKPT`` is a run folder / step folder of ``beit2.train``, a ``.safetensors`` file, or an
official unilm / timm checkpoint (converted on the fly).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader
from torchvision import transforms as T

from vlcore.checkpoint import MODEL_FILE, load_state_dict_strict, resolve_checkpoint
from vlcore.cli import run_cli
from vlcore.config import add_config_args, load_config
from vlcore.errors import UserError
from vlcore.tokenizers.vqkd import build_vqkd, vqkd_state_dict_from_official

from beit2.config import Config, resolve_config_path
from beit2.convert import read_checkpoint
from beit2.train import LinearProbe, _base_dataset, _classifier, _resize_to, init_classifier

__all__ = ["evaluate_classifier", "main"]


def _weights_path(ckpt: str) -> Path:
    p = Path(ckpt)
    if p.is_dir():
        if (p / "ckpt").is_dir():  # a beit2.train run folder
            p = p / "ckpt"
        return resolve_checkpoint(p) / MODEL_FILE
    return p


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, dataset, *, batch_size: int = 64, device: str = "cpu") -> dict:
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    n = top1 = top5 = 0
    for x, y in loader:
        logits = model(x.to(device))
        k = min(5, logits.shape[-1])
        pred = logits.topk(k, dim=-1).indices.cpu()
        top1 += (pred[:, 0] == y).sum().item()
        top5 += (pred == y[:, None]).any(-1).sum().item()
        n += len(y)
    return {"top1": 100.0 * top1 / max(n, 1), "top5": 100.0 * top5 / max(n, 1), "images": n}


def _check_grid(sd: dict, grid: tuple[int, int], source: str) -> None:
    """Refuse a classifier whose position tables were trained for another patch grid."""
    from vlcore.models.beit import _window_of

    for k, v in sd.items():
        if k.endswith("relative_position_bias_table"):
            found = _window_of(v.shape[0])
        elif k == "pos_embed":
            side = int(round((v.shape[-2] - 1) ** 0.5))
            found = (side, side)
        else:
            continue
        if found != grid:
            raise UserError(f"{source}: {k} is for a {found[0]}x{found[1]} patch grid, the config's image size gives "
                            f"{grid[0]}x{grid[1]}; pass --resize-pos-embed to resample it")
        return


def main(argv: Sequence[str] | None = None) -> int:
    p = add_config_args(argparse.ArgumentParser(prog="python -m beit2.eval", description=__doc__.split("\n\n")[0]))
    p.add_argument("--checkpoint", required=True, help="run / step folder, .safetensors, or an official checkpoint")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--resize-pos-embed", action="store_true",
                   help="resample position tables of a classifier trained at another image size (refused otherwise)")
    args = p.parse_args(argv)
    cfg = load_config(Config, resolve_config_path(args.config), args.set)
    device = "cuda" if torch.cuda.is_available() and cfg.train.device == "auto" else "cpu"
    weights = _weights_path(args.checkpoint)
    d = cfg.data
    if cfg.task == "vqkd":
        sd = vqkd_state_dict_from_official(read_checkpoint(weights))
        v = cfg.vqkd
        kw = {k: val for k, val in (("embed_dim", v.embed_dim), ("depth", v.depth), ("num_heads", v.num_heads)) if val}
        tok = build_vqkd(cfg.model.tokenizer, img_size=d.input_size, patch_size=cfg.model.patch_size,
                         num_codes=v.num_codes, code_dim=v.code_dim, decoder_depth=v.decoder_depth,
                         target_dim=sd["decode_task_layer.2.weight"].shape[0], **kw)
        load_state_dict_strict(tok, sd, source=str(weights))
        tf = _resize_to(cfg, T.Compose([T.Resize(int(d.input_size / d.crop_pct), interpolation=T.InterpolationMode.BICUBIC),
                                        T.CenterCrop(d.input_size), T.ToTensor()]))
        ds = _base_dataset(cfg, split="val", transform=tf)
        tok.eval().to(device)
        tok.quantize.reset_usage()
        with torch.no_grad():
            for x, _ in DataLoader(ds, batch_size=args.batch_size):
                tok.get_codebook_indices(x.to(device))
        result = {"task": "vqkd", **tok.quantize.usage(), "images": len(ds)}
    elif cfg.task in ("finetune", "linprobe"):
        if cfg.task == "finetune":
            model = _classifier(cfg)
            if not args.resize_pos_embed:
                _check_grid(read_checkpoint(weights), tuple(model.grid_size), str(weights))
            fresh = init_classifier(model, str(weights))
            if fresh:
                raise UserError(f"{weights}: not a fine-tuned classifier for this config ({', '.join(fresh[:4])} "
                                "would stay untrained)")
        else:
            sd = read_checkpoint(weights)
            backbone = _classifier(cfg, global_pool="", num_classes=0)
            model = LinearProbe(backbone, num_classes=cfg.model.num_classes, feature=cfg.model.linprobe_feature)
            load_state_dict_strict(model, sd, source=str(weights))
        from beit2.data import classification_transform

        tf = _resize_to(cfg, classification_transform(train=False, input_size=d.input_size, crop_pct=d.crop_pct))
        result = {"task": cfg.task, **evaluate_classifier(model, _base_dataset(cfg, split="val", transform=tf),
                                                          batch_size=args.batch_size, device=device)}
    else:
        raise SystemExit(f"error: nothing to evaluate for task '{cfg.task}' (use a finetune, linprobe or vqkd preset)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
