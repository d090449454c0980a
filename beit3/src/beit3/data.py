"""Data for beit3's entry points: generated scenes, COCO captions, ImageFolder; text tokenizers.

Everything a task needs is held as tensors in memory (the tiny / coco_mini sets) or read
per item (ImageFolder). Images are normalised with 0.5/0.5 (vision-language tasks) or the
ImageNet statistics (ImageNet), as the official ``datasets.py`` does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vlcore.errors import UserError

WORD_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # XLM-R order: <s>=0, <pad>=1, </s>=2
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _words(s: str) -> list[str]:
    return re.findall(r"[a-z]+|\d", s.lower())


class WordTokenizer:
    """Word-level vocabulary of a corpus, with the XLM-R special ids (bos 0, pad 1, eos 2, mask 4)."""

    def __init__(self, sentences: Sequence[str]):
        words = sorted({w for s in sentences for w in _words(s)} - set(WORD_SPECIALS))
        self.itos = list(WORD_SPECIALS) + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.bos_id, self.pad_id, self.eos_id, self.unk_id, self.mask_id = 0, 1, 2, 3, 4

    def __len__(self) -> int:
        return len(self.itos)

    def pieces(self, s: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in _words(s)]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i > self.mask_id:
                out.append(self.itos[i])
        return " ".join(out)

    def encode(self, sentences: Sequence[str], max_len: int) -> torch.Tensor:
        """(B, max_len): ``<s> pieces </s> <pad>...`` (pieces cut to fit)."""
        out = torch.full((len(sentences), max_len), self.pad_id, dtype=torch.long)
        for i, s in enumerate(sentences):
            ids = [self.bos_id] + self.pieces(s)[: max_len - 2] + [self.eos_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


class SpmTokenizer(WordTokenizer):
    """sentencepiece model with XLM-R ids (fairseq offset 1; <mask> = size + 1), as XLMRobertaTokenizer."""

    def __init__(self, path: str):  # noqa: D107 - no super().__init__: no corpus vocabulary
        import sentencepiece

        if not Path(path).is_file():
            raise UserError(f"sentencepiece model not found: {path}")
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self.bos_id, self.pad_id, self.eos_id, self.unk_id = 0, 1, 2, 3
        self.mask_id = self.sp.get_piece_size() + 1
        self.itos = []

    def __len__(self) -> int:
        return self.sp.get_piece_size() + 2

    def pieces(self, s: str) -> list[int]:
        return [i + 1 if i > 0 else self.unk_id for i in self.sp.encode(s)]

    def decode(self, ids: Sequence[int]) -> str:
        keep = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i > self.unk_id and i != self.mask_id:
                keep.append(i - 1)
        return self.sp.decode(keep)


def normalize_images(x: torch.Tensor, kind: str) -> torch.Tensor:
    """x (B, 3, H, W) in [0, 1]."""
    if kind == "imagenet":
        m = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (x - m) / s
    return (x - 0.5) / 0.5


class Corpus:
    """Images (N, 3, S, S) in [0, 1] with captions, questions, answers and class labels (synthetic)."""

    def __init__(self, images, captions, *, qa=None, labels=None, label_names=None, all_captions=None,
                 qa_scores=None, answer_vocab=None, pairs=None):
        self.images = images
        self.captions = captions  # one per image (training text)
        self.all_captions = all_captions or [[c] for c in captions]  # references for captioning metrics
        self.qa = qa or []  # (image index, question, answer)
        self.qa_scores = qa_scores  # VQAv2: per question {answer: soft score}
        self.answer_vocab = answer_vocab  # VQAv2: the answer classes (from the training split)
        self.pairs = pairs  # NLVR2: (left image index, right image index, sentence, label)
        self.labels = labels
        self.label_names = label_names or []


def synthetic_corpus(n: int, img_size: int, seed: int) -> Corpus:
    from vlcore.data.synthetic import SHAPES, SceneConfig, generate_scene

    cfg = SceneConfig(image_size=img_size, min_objects=1, max_objects=2, background="plain",
                      min_object_px=max(3, img_size // 6))
    scenes = [generate_scene(seed=(seed, 11, i), config=cfg) for i in range(n)]
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float().div(255)
    qa = [(i, q.question, q.answer) for i, s in enumerate(scenes) for q in s.qa[:2]]
    labels = torch.tensor([SHAPES.index(s.objects[0].shape) for s in scenes])
    return Corpus(images, [s.caption for s in scenes], qa=qa, labels=labels, label_names=list(SHAPES))


def coco_caption_corpus(root: str | None, split: str, img_size: int, limit: int = 0) -> Corpus:
    from PIL import Image

    from vlcore.data.coco import coco_mini_paths, load_coco_captions, read_json

    ann, img_dir = coco_mini_paths(split, kind="captions", root=root)
    caps = load_coco_captions(ann)
    files = {int(im["id"]): im["file_name"] for im in read_json(ann, what="COCO captions")["images"]}
    ids = [i for i in caps if caps[i] and (img_dir / files[i]).is_file()]
    if limit:
        ids = ids[:limit]
    if not ids:
        raise UserError(f"no captioned images found under {img_dir}")
    arr = []
    for i in ids:
        im = Image.open(img_dir / files[i]).convert("RGB").resize((img_size, img_size), Image.BICUBIC)
        arr.append(np.asarray(im))
    images = torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2).float().div(255)
    return Corpus(images, [caps[i][0] for i in ids], all_captions=[caps[i] for i in ids])


def load_images(paths: Sequence[Path], img_size: int) -> torch.Tensor:
    """(N, 3, S, S) in [0, 1], each image resized (bicubic) to S x S; a missing file is named."""
    from PIL import Image

    from vlcore.data.paths import require_file

    arr = []
    for p in paths:
        im = Image.open(require_file(p, "image")).convert("RGB").resize((img_size, img_size), Image.BICUBIC)
        arr.append(np.asarray(im))
    return torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2).float().div(255)


def _need_root(d) -> Path:
    if not d.root:
        raise UserError(f"data.dataset={d.dataset} needs data.root")
    return Path(d.root)


def karpathy_corpus(d, split: str, img_size: int, limit: int = 0) -> Corpus:
    """Karpathy-split json (COCO / Flickr30K): ROOT/{karpathy_file}, images ROOT/{image_dir}/{filepath}/{filename}."""
    from beit3.datasets import read_karpathy

    root = _need_root(d)
    items = read_karpathy(root / d.karpathy_file, split)[: limit or None]
    images = load_images([root / d.image_dir / x.image for x in items], img_size)
    return Corpus(images, [x.captions[0] for x in items], all_captions=[x.captions for x in items])


def vqav2_corpus(d, split: str, img_size: int, limit: int = 0, answer_vocab=None, num_answers: int = 3129) -> Corpus:
    """ROOT/v2_OpenEnded_mscoco_{split}_questions.json (+ v2_mscoco_{split}_annotations.json when present),
    images ROOT/{image_dir or split}/COCO_{split}_{id:012d}.jpg; the answer classes are the training split's
    ``finetune.num_answers`` most frequent answers."""
    from beit3.datasets import read_vqav2, vqa_answer_vocab

    root = _need_root(d)
    ann = root / f"v2_mscoco_{split}_annotations.json"
    items = read_vqav2(root / f"v2_OpenEnded_mscoco_{split}_questions.json", ann if ann.is_file() else None)
    items = items[: limit or None]
    if answer_vocab is None:
        answer_vocab = vqa_answer_vocab(items, num_answers)
    img_ids = sorted({x.image_id for x in items})
    index = {i: k for k, i in enumerate(img_ids)}
    name = {x.image_id: x.image for x in items}
    images = load_images([root / (d.image_dir or split) / name[i] for i in img_ids], img_size)
    qa = [(index[x.image_id], x.question, x.answer or "") for x in items]
    return Corpus(images, [x.question for x in items], qa=qa, qa_scores=[x.scores for x in items],
                  answer_vocab=answer_vocab)


def nlvr2_corpus(d, split: str, img_size: int, limit: int = 0) -> Corpus:
    """ROOT/{split}.json (one example per line), images ROOT/{image_dir or 'images'}/{split}/[directory/]..."""
    from beit3.datasets import read_nlvr2

    root = _need_root(d)
    items = read_nlvr2(root / f"{split}.json")[: limit or None]
    files = sorted({f for x in items for f in (x.left, x.right)})
    index = {f: k for k, f in enumerate(files)}
    images = load_images([root / (d.image_dir or "images") / split / f for f in files], img_size)
    pairs = [(index[x.left], index[x.right], x.sentence, x.label) for x in items]
    return Corpus(images, [x.sentence for x in items], pairs=pairs)


def load_corpora(cfg) -> tuple[Corpus, Corpus]:
    d, s = cfg.data, cfg.model.img_size
    if d.dataset == "synthetic":
        return synthetic_corpus(d.num_train, s, d.seed), synthetic_corpus(d.num_eval, s, d.seed + 1000)
    if d.dataset == "coco_captions":
        return (coco_caption_corpus(d.root, d.train_split, s, d.num_train),
                coco_caption_corpus(d.root, d.eval_split, s, d.num_eval))
    if d.dataset == "karpathy":
        return karpathy_corpus(d, d.train_split, s, d.num_train), karpathy_corpus(d, d.eval_split, s, d.num_eval)
    if d.dataset == "vqav2":
        tr = vqav2_corpus(d, d.train_split, s, d.num_train, num_answers=cfg.finetune.num_answers)
        return tr, vqav2_corpus(d, d.eval_split, s, d.num_eval, answer_vocab=tr.answer_vocab)
    if d.dataset == "nlvr2":
        return nlvr2_corpus(d, d.train_split, s, d.num_train), nlvr2_corpus(d, d.eval_split, s, d.num_eval)
    raise UserError(f"data.dataset={d.dataset} is read by the imagenet task only (ImageFolder)")


def build_tokenizer(cfg, corpora: Sequence[Corpus]) -> WordTokenizer:
    if cfg.data.tokenizer == "spm":
        if not cfg.data.spm_path:
            raise UserError("data.tokenizer=spm needs data.spm_path (the released beit3.spm)")
        return SpmTokenizer(cfg.data.spm_path)
    texts = [c for corp in corpora for caps in corp.all_captions for c in caps]
    texts += [q for corp in corpora for _, q, _ in corp.qa]
    return WordTokenizer(texts)


# ------------------------------------------------------------------ masking
def mask_tokens(text: torch.Tensor, ratio: float, tok, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``ratio`` of the word pieces (never specials) by <mask>, at least one per row.

    Returns (masked text, labels with -100 at unmasked positions)."""
    cand = text > max(tok.eos_id, tok.pad_id, tok.bos_id)
    cand &= text != tok.mask_id
    sel = cand & (torch.rand(text.shape, generator=g) < ratio)
    first = torch.where(cand, torch.rand(text.shape, generator=g), torch.full(text.shape, -1.0)).argmax(1)
    has = cand.any(1)
    sel[torch.arange(len(text))[has], first[has]] = True
    labels = torch.where(sel, text, torch.full_like(text, -100))
    return text.masked_fill(sel, tok.mask_id), labels


# ------------------------------------------------------------------ visual tokens
def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    b, c, h, _ = images.shape
    g = h // patch
    return images.reshape(b, c, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, -1)


def kmeans_codebook(images: torch.Tensor, patch: int, k: int, seed: int, iters: int = 15) -> torch.Tensor:
    """Cosine k-means centroids (k, 3 P P) of pixel patches: a stand-in visual tokenizer for tiny runs."""
    flat = F.normalize(patchify(images, patch).reshape(-1, 3 * patch * patch) - 0.5, dim=-1)
    g = torch.Generator().manual_seed(seed)
    c = flat[torch.randperm(len(flat), generator=g)[:k]].clone()
    if len(c) < k:
        raise UserError(f"k-means visual tokenizer: {len(flat)} patches for {k} codes")
    for _ in range(iters):
        a = (flat @ c.t()).argmax(1)
        for j in range(k):
            sel = flat[a == j]
            if len(sel):
                c[j] = F.normalize(sel.mean(0), dim=0)
    return c


def kmeans_codes(images: torch.Tensor, patch: int, codebook: torch.Tensor) -> torch.Tensor:
    x = patchify(images, patch)
    flat = F.normalize(x.reshape(-1, x.shape[-1]) - 0.5, dim=-1)
    return (flat @ codebook.t()).argmax(1).reshape(x.shape[:2])


def vqkd_codes(images: torch.Tensor, checkpoint: str, grid: int, batch: int = 64) -> torch.Tensor:
    """Visual token ids from a BEiT v2 VQ-KD tokenizer; its input is resized so that its grid is ``grid``."""
    from beit2.convert import convert, read_checkpoint

    _, tok, _ = convert(read_checkpoint(Path(checkpoint)), layout="vqkd")
    tok.eval()
    size = grid * tok.encoder.patch_embed.patch_size[0] if hasattr(tok, "encoder") else grid * 16
    out = []
    with torch.no_grad():
        for x in images.split(batch):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
            out.append(tok.get_codebook_indices(x).reshape(len(x), -1))
    return torch.cat(out)


# ------------------------------------------------------------------ task datasets
class DictDataset(Dataset):
    """Items are dicts of tensors; ``make(i)`` builds item i (randomness seeded by i)."""

    def __init__(self, n: int, make):
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return self.make(i)
