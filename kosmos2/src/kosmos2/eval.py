"""Zero-shot evaluation: referring expression comprehension, phrase grounding, captioning.

    python -m kosmos2.eval --task rec --data ../shared/data/coco_mini/vl/refexp_subset.json \
        --spm sentencepiece.bpe.model --checkpoint runs/k2/ckpt [--model kosmos2_patch14_224] --out runs/eval_rec
    python -m kosmos2.eval --task phrase_grounding --data flickr30k_entities/ --ids test.txt ...
    python -m kosmos2.eval --task caption --data images_dir_or_coco_captions.json ...

Protocols (Kosmos-2 §4, card §7): greedy decoding, image square-resized;
* rec: prompt ``<grounding><phrase> {expression}</phrase>``; the first box of the generated
  ``<object>`` that follows the query phrase, scaled by the original width / height, is correct
  when IoU >= 0.5 (no valid box = miss); `--data` in any RefCOCO layout of `kosmos2.data`;
* phrase_grounding (Flickr30K Entities): one prompt per phrase, ``<grounding>{caption up to the
  phrase}<phrase> {phrase}</phrase>``; all boxes of the generated ``<object>`` in order; R@1/5/10
  with the any-box protocol (`kosmos2.metrics.recall_at_k`);
* caption: prompt ``<grounding> An image of`` (`--prompt`); writes the text and its grounded entities.

Writes ``predictions.jsonl`` and ``metrics.json`` in `--out` and prints the metrics as JSON.
`--checkpoint` takes a checkpoint folder (step folder or root with ``latest``) or a weights file;
without it the model is randomly initialised (say so in any number you report).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from vlcore.cli import run_cli
from vlcore.errors import UserError

from kosmos2.grounding import parse_entities
from kosmos2.metrics import rec_hits, recall_at_k
from kosmos2.processor import Kosmos2Processor, load_image

TASKS = ("rec", "phrase_grounding", "caption")


def _parse_kv(items: Sequence[str]) -> dict:
    out = {}
    for it in items:
        if "=" not in it:
            raise UserError(f"--model-set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="kosmos2_patch14_224", help="registered configuration (python -m kosmos2.models)")
    p.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE", help="override a model config field")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder or weights file; random init when omitted")
    p.add_argument("--spm", required=True, help="SentencePiece model of the vocabulary (sentencepiece.bpe.model)")
    p.add_argument("--num-bins", type=int, default=32, help="location grid size P (P*P location tokens)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--device", default="cpu")


def load_model_and_processor(args):
    """The model (eval mode, weights loaded) and a processor matching its image size and slot count."""
    from kosmos2.tokenizer import Kosmos2Tokenizer

    tok = Kosmos2Tokenizer(args.spm, num_bins=args.num_bins)  # checked before the (slow) model import
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    from kosmos2.models import CONFIGS, build_model

    if args.model not in CONFIGS:
        raise UserError(f"unknown model {args.model!r}; known: {', '.join(sorted(CONFIGS))}")
    try:
        model = build_model(args.model, **_parse_kv(args.model_set))
    except TypeError as e:
        raise UserError(f"bad --model-set: {e}") from None
    if args.checkpoint:
        from vlcore.checkpoint import MODEL_FILE, load_state_dict_strict, load_weights, resolve_checkpoint

        path = Path(args.checkpoint)
        if path.is_dir():
            path = resolve_checkpoint(path) / MODEL_FILE
        load_state_dict_strict(model, load_weights(path), source=str(path))
    else:
        print("warning: no --checkpoint, the model is randomly initialised", file=sys.stderr)
    model.eval().to(args.device)
    proc = Kosmos2Processor(tok, image_size=model.cfg.img_size, num_image_tokens=model.num_image_tokens)
    if proc.tokenizer.vocab_size > model.cfg.vocab_size:
        raise UserError(
            f"the vocabulary of {args.spm} with {args.num_bins}x{args.num_bins} location tokens has "
            f"{proc.tokenizer.vocab_size} tokens, more than the model's {model.cfg.vocab_size}"
        )
    return model, proc


@torch.no_grad()
def generate_text(model, proc: Kosmos2Processor, image, prompt: str, max_new_tokens: int = 32, num_beams: int = 1, bboxes=None, device: str = "cpu") -> str:
    """The decoded sequence (prompt and continuation) for one image and prompt."""
    inp = proc(prompt, images=image, bboxes=bboxes)
    out = model.generate(
        inp["pixel_values"].to(device), inp["input_ids"].to(device), inp["image_embeds_position_mask"].to(device),
        max_new_tokens=max_new_tokens, num_beams=num_beams, eos_token_id=proc.tokenizer.eos_id,
    )
    return proc.decode(out[0].tolist(), skip_special_tokens=True)


def _entity_boxes(text: str, query: str, num_bins: int) -> list:
    """Boxes generated for the entity whose phrase is `query` (first such entity)."""
    _, ents = parse_entities(text, num_bins)
    q = query.strip()
    for phrase, _, boxes in ents:
        if phrase == q:
            return boxes
    return []


def _scale(box, w, h):
    return [box[0] * w, box[1] * h, box[2] * w, box[3] * h]


def _norm_query(proc: Kosmos2Processor, text: str) -> str:
    """The phrase as it comes back from the tokenizer (SentencePiece normalises spaces)."""
    tok = proc.tokenizer
    return tok.decode(tok.encode(" " + text.strip(), add_bos=False, add_eos=False)).strip()


def eval_rec(model, proc, examples, args) -> tuple[dict, list]:
    preds, gts, rows = [], [], []
    for e in examples:
        prompt = f"<grounding><phrase> {e.expression.strip()}</phrase>"
        text = generate_text(model, proc, e.image, prompt, args.max_new_tokens, args.num_beams, device=args.device)
        boxes = _entity_boxes(text, _norm_query(proc, e.expression), proc.num_bins)
        pred = _scale(boxes[0], e.width, e.height) if boxes else None
        preds.append(pred)
        gts.append(list(e.box))
        rows.append({"expression": e.expression, "image": e.image, "dataset": e.dataset, "split": e.split, "pred_box": pred, "gt_box": list(e.box), "text": text})
    hits = rec_hits(preds, gts, 0.5)
    for r, h in zip(rows, hits):
        r["hit"] = bool(h)
    metrics = {"task": "rec", "n": len(hits), "acc@0.5": (sum(hits) / len(hits) if hits else 0.0)}
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(f"{r['dataset']}/{r['split']}".strip("/") or "all", []).append(r["hit"])
    if len(groups) > 1:
        metrics["by_split"] = {k: {"n": len(v), "acc@0.5": sum(v) / len(v)} for k, v in sorted(groups.items())}
    return metrics, rows


def eval_phrase_grounding(model, proc, examples, args) -> tuple[dict, list]:
    preds, gts, rows = [], [], []
    for e in examples:
        for phrase, (s, _), eid, typ, gt_boxes in e.phrases:
            prefix = e.sentence[:s].rstrip()
            prompt = f"<grounding>{(' ' + prefix) if prefix else ''}<phrase> {phrase}</phrase>"
            text = generate_text(model, proc, e.image, prompt, args.max_new_tokens, args.num_beams, device=args.device)
            boxes = [_scale(b, e.width, e.height) for b in _entity_boxes(text, _norm_query(proc, phrase), proc.num_bins)]
            preds.append(boxes)
            gts.append([list(b) for b in gt_boxes])
            rows.append({"image_id": e.image_id, "phrase": phrase, "entity": eid, "type": typ, "pred_boxes": boxes, "gt_boxes": gts[-1], "text": text})
    metrics = {"task": "phrase_grounding", **recall_at_k(preds, gts, (1, 5, 10), 0.5)}
    return metrics, rows


def _caption_items(data: Path, image_root: str | None = None) -> list[tuple[str, str]]:
    """(key, image path) pairs: every image in a folder, or the images of a COCO captions json."""
    if data.is_dir():
        exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
        return [(p.stem, str(p)) for p in sorted(data.iterdir()) if p.suffix.lower() in exts]
    from kosmos2.data import _read_json

    d = _read_json(data)
    if not isinstance(d, dict) or "images" not in d:
        raise UserError(f"{data}: expected an image folder or a COCO json with 'images'")
    # COCO layout: annotations/captions_val2017.json -> images/val2017/
    root = Path(image_root) if image_root else data.parent.parent / "images" / data.stem.split("_")[-1]
    return [(str(im["id"]), str(root / im["file_name"])) for im in d["images"]]


def eval_caption(model, proc, items, args) -> tuple[dict, list]:
    rows = []
    for key, img in items:
        text = generate_text(model, proc, img, args.prompt, args.max_new_tokens, args.num_beams, device=args.device)
        clean, ents = parse_entities(text, proc.num_bins)
        rows.append({"key": key, "image": img, "caption": clean, "entities": [[p, list(sp), [list(b) for b in bx]] for p, sp, bx in ents], "text": text})
    return {"task": "caption", "n": len(rows), "prompt": args.prompt}, rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kosmos2.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--data", required=True, help="RefCOCO file/folder, Flickr30K Entities root, or images / COCO captions json")
    p.add_argument("--image-root", default=None, help="where image file names are resolved (rec, phrase_grounding)")
    p.add_argument("--dataset", default=None, help="rec: only refcoco / refcoco+ / refcocog")
    p.add_argument("--split", default=None, help="rec: only this split")
    p.add_argument("--ids", default=None, help="phrase_grounding: file with one Flickr30K image id per line")
    p.add_argument("--prompt", default="<grounding> An image of", help="caption prompt")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--out", default=None, help="folder for predictions.jsonl and metrics.json")
    add_model_args(p)
    args = p.parse_args(argv)

    data = Path(args.data)
    if not data.exists():
        raise UserError(f"--data not found: {data}")
    if args.task == "rec":
        from kosmos2.data import load_refexp

        items = load_refexp(data, image_root=args.image_root, dataset=args.dataset, split=args.split)
    elif args.task == "phrase_grounding":
        from kosmos2.data import load_flickr30k_entities

        ids = None
        if args.ids:
            idp = Path(args.ids)
            if not idp.is_file():
                raise UserError(f"--ids file not found: {idp}")
            ids = [line.strip() for line in idp.read_text().splitlines() if line.strip()]
        items = load_flickr30k_entities(data, ids=ids, image_dir=args.image_root)
    else:
        items = _caption_items(data, args.image_root)
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        raise UserError(f"no examples in {data} (after filters)")
    for it in items[:1]:  # fail early, with the file name, when images are missing
        load_image(it.image if hasattr(it, "image") else it[1])

    model, proc = load_model_and_processor(args)
    t0 = time.time()
    fn = {"rec": eval_rec, "phrase_grounding": eval_phrase_grounding, "caption": eval_caption}[args.task]
    metrics, rows = fn(model, proc, items, args)
    metrics.update({"model": args.model, "checkpoint": args.checkpoint, "data": str(data), "seconds": round(time.time() - t0, 2)})
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "predictions.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
