"""Models, datasets, training steps and evaluation of every beit3 task (used by train / eval)."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vlcore.errors import UserError
from vlcore.masking import BlockwiseMaskGenerator

from beit3 import data as D
from beit3.metrics import cider_d, coco_bleu, recall_at_k, vqa_accuracy
from beit3.models import (
    BEiT3ForCaptioning,
    BEiT3ForImageClassification,
    BEiT3ForNLVR2,
    BEiT3ForRetrieval,
    BEiT3ForVQA,
    BEiT3Pretrain,
)


def layer_id(name: str, num_layers: int) -> int:
    """Official layer-decay ids: 0 for any name with 'embed' or the cls / mask tokens, i + 1 in layer i."""
    import re

    m = re.search(r"\.blocks\.(\d+)\.", name)
    if m:
        return int(m.group(1)) + 1
    if "embed" in name or name.endswith(("cls_token", "mask_token")):
        return 0
    return num_layers + 1


def param_groups(model, cfg):
    """Layer-decay groups; for VQA the ``head.*`` parameters get lr x head_lr_weight (pooler excluded)."""
    from vlcore.train import param_groups_lrd

    groups = param_groups_lrd(model, cfg.train.weight_decay, cfg.train.layer_decay, layer_id_fn=layer_id,
                              num_layers=cfg.model.depth)
    w = cfg.finetune.head_lr_weight
    if w == 1.0:
        return groups
    out = []
    for g in groups:
        head = [i for i, n in enumerate(g["param_names"]) if n.startswith("head.")]
        rest = [i for i in range(len(g["params"])) if i not in head]
        for idx, scale in ((rest, 1.0), (head, w)):
            if idx:
                out.append({**g, "params": [g["params"][i] for i in idx],
                            "param_names": [g["param_names"][i] for i in idx], "lr_scale": g["lr_scale"] * scale})
    return out


# ------------------------------------------------------------------ task setup
class Task:
    """Everything a run needs: the model, the training set, a step function and an evaluation."""

    def __init__(self, cfg, *, need_train: bool = True):
        self.cfg = cfg
        t = cfg.task
        if t == "imagenet" and cfg.data.dataset == "imagefolder":
            self._setup_imagefolder()
            return
        self.train_corpus, self.eval_corpus = D.load_corpora(cfg)
        if t == "imagenet" and self.train_corpus.labels is None:
            raise UserError("task imagenet needs class labels: data.dataset=synthetic or imagefolder")
        self.tok = D.build_tokenizer(cfg, [self.train_corpus, self.eval_corpus])
        self.vocab_size = cfg.model.vocab_size or len(self.tok)
        if self.vocab_size < len(self.tok):
            raise UserError(f"model.vocab_size={cfg.model.vocab_size} < tokenizer size {len(self.tok)}")
        if t in ("vqa",):
            answers = self.train_corpus.answer_vocab or sorted(
                {a for c in (self.train_corpus, self.eval_corpus) for _, _, a in c.qa})
            if not answers:
                raise UserError("task vqa needs questions: data.dataset=synthetic or vqav2")
            self.answers = answers
        self.L = cfg.data.max_text_len if t != "captioning" else cfg.finetune.caption_max_len
        self.train_set = getattr(self, f"_set_{t}")(self.train_corpus, train=True)

    # --- model
    def arch(self) -> dict:
        a = asdict(self.cfg.model)
        a["vocab_size"] = getattr(self, "vocab_size", a["vocab_size"] or 1)
        a["max_text_len"] = max(a["max_text_len"], getattr(self, "L", 0) + 2)
        return a

    def build_model(self):
        t, a, f = self.cfg.task, self.arch(), self.cfg.finetune
        if t == "pretrain":
            return BEiT3Pretrain(num_visual_tokens=self.cfg.mdm.num_visual_tokens, **a)
        if t == "vqa":
            return BEiT3ForVQA(num_answers=len(self.answers), **a)
        if t == "nlvr2":
            return BEiT3ForNLVR2(**a)
        if t == "retrieval":
            return BEiT3ForRetrieval(**a)
        if t == "captioning":
            return BEiT3ForCaptioning(**a)
        n = len(self.classes) if hasattr(self, "classes") else len(self.train_corpus.label_names)
        return BEiT3ForImageClassification(num_classes=n, **a)

    def load_init(self, model, checkpoint: str) -> list[str]:
        """Backbone (and matching heads) from our run / safetensors or an official unilm .pth.

        Every backbone tensor must be present; heads of another task are ignored. Returns the
        names of the model's tensors left at their initialisation."""
        from vlcore.checkpoint import CheckpointError, load_weights

        from beit3.convert import convert_unilm_beit3

        from vlcore.checkpoint import MODEL_FILE, resolve_checkpoint

        p = Path(checkpoint)
        if p.is_dir():  # a run folder (its ckpt/ latest), a checkpoint root or a step folder
            p = resolve_checkpoint(p / "ckpt" if (p / "ckpt").is_dir() else p) / MODEL_FILE
        if not p.exists():
            raise UserError(f"init checkpoint not found: {checkpoint}")
        sd = load_weights(p)
        if isinstance(sd, dict) and ("model" in sd or "module" in sd or any(".encoder.layers." in k for k in sd)):
            sd = convert_unilm_beit3(sd, img_grid=self.cfg.model.img_size // self.cfg.model.patch_size)
        own = model.state_dict()
        backbone = [k for k in own if k.startswith("beit3.")]
        missing = [k for k in backbone if k not in sd and not (k.startswith("beit3.encoder.norm.") or k.startswith("beit3.vl_"))]
        if missing:
            raise CheckpointError(f"{checkpoint}: backbone tensors missing: {missing[:5]}")
        load = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        bad = [k for k in backbone if k in sd and k not in load]
        if bad:
            raise CheckpointError(f"{checkpoint}: shape mismatch for {bad[:5]}")
        model.load_state_dict(load, strict=False)
        return [k for k in own if k not in load]

    # --- data
    def _images(self, corpus, idx):
        return D.normalize_images(corpus.images[idx], self.cfg.data.normalize)

    def _visual_codes(self, corpus) -> torch.Tensor:
        m, cfg = self.cfg.mdm, self.cfg
        if m.visual_tokenizer == "vqkd":
            if not m.tokenizer_checkpoint:
                raise UserError("mdm.visual_tokenizer=vqkd needs mdm.tokenizer_checkpoint (a BEiT v2 VQ-KD file)")
            return D.vqkd_codes(corpus.images, m.tokenizer_checkpoint, cfg.model.img_size // cfg.model.patch_size)
        self.codebook = D.kmeans_codebook(corpus.images, cfg.model.patch_size, m.num_visual_tokens, cfg.data.seed)
        return D.kmeans_codes(corpus.images, cfg.model.patch_size, self.codebook)

    def _set_pretrain(self, corpus, train=True):
        m, seed = self.cfg.mdm, self.cfg.train.seed
        codes = self._visual_codes(corpus)
        grid = self.cfg.model.img_size // self.cfg.model.patch_size
        n_mask = max(1, round(m.image_mask_ratio * grid * grid))
        texts = self.tok.encode(corpus.captions, self.L)
        n = len(corpus.captions)
        # monomodal texts are the captions of other images (shifted by half the set): not paired with the image
        text_only = texts.roll(n // 2, 0)

        def make(i):
            g = torch.Generator().manual_seed(seed * 1_000_003 + i)
            mask = BlockwiseMaskGenerator(input_size=grid, num_masking_patches=n_mask, min_num_patches=min(4, n_mask),
                                          seed=seed * 1_000_003 + i)().reshape(-1)
            t, tl = D.mask_tokens(text_only[i : i + 1], m.text_mask_ratio, self.tok, g)
            p, pl = D.mask_tokens(texts[i : i + 1], m.pair_text_mask_ratio, self.tok, g)
            img = self._images(corpus, [i])[0]
            return {"image": img, "mim_mask": torch.from_numpy(np.asarray(mask, dtype=bool)), "codes": codes[i],
                    "text": t[0], "text_labels": tl[0], "pair_text": p[0], "pair_labels": pl[0]}

        return D.DictDataset(n, make)

    def _set_vqa(self, corpus, train=True):
        qa = corpus.qa
        q = self.tok.encode([x for _, x, _ in qa], self.L)
        target = torch.zeros(len(qa), len(self.answers))
        if corpus.qa_scores is not None:  # VQAv2: soft scores of the answers in the vocabulary
            col = {a: j for j, a in enumerate(self.answers)}
            for i, sc in enumerate(corpus.qa_scores):
                for a, v in sc.items():
                    if a in col:
                        target[i, col[a]] = v
        else:
            target[torch.arange(len(qa)), torch.tensor([self.answers.index(a) for _, _, a in qa])] = 1.0  # 1 answer = score 1
        img_idx = [i for i, _, _ in qa]
        return D.DictDataset(len(qa), lambda i: {"image": self._images(corpus, [img_idx[i]])[0], "text": q[i],
                                                 "target": target[i]})

    def _set_nlvr2(self, corpus, train=True):
        if corpus.pairs is not None:  # NLVR2 files: (left, right, sentence, label)
            texts = self.tok.encode([p[2] for p in corpus.pairs], self.L)
            return D.DictDataset(len(corpus.pairs), lambda i: {
                "image_a": self._images(corpus, [corpus.pairs[i][0]])[0],
                "image_b": self._images(corpus, [corpus.pairs[i][1]])[0],
                "text": texts[i], "label": torch.tensor(corpus.pairs[i][3])})
        n = len(corpus.captions)
        texts = self.tok.encode(corpus.captions, self.L)

        def make(i):  # statement = caption of image a (true) or of a third image (false)
            rng = np.random.default_rng((self.cfg.train.seed, int(train), i))
            b = int(rng.integers(n))
            label = int(rng.random() < 0.5)
            j = i if label else int((i + 1 + rng.integers(n - 1)) % n)
            if not label and corpus.captions[j] in (corpus.captions[i], corpus.captions[b]):
                label = 1
            first, second = (i, b) if rng.random() < 0.5 else (b, i)
            return {"image_a": self._images(corpus, [first])[0], "image_b": self._images(corpus, [second])[0],
                    "text": texts[j], "label": torch.tensor(label)}

        return D.DictDataset(n, make)

    def _set_retrieval(self, corpus, train=True):
        caps = corpus.all_captions
        n = len(caps)

        def make(i):  # a random caption of the image each epoch draw (first one for evaluation)
            j = int(np.random.default_rng((self.cfg.train.seed, i)).integers(len(caps[i]))) if train else 0
            return {"image": self._images(corpus, [i])[0], "text": self.tok.encode([caps[i][j]], self.L)[0]}

        return D.DictDataset(n, make)

    def _set_captioning(self, corpus, train=True):
        texts = self.tok.encode(corpus.captions, self.L)
        ratio = self.cfg.finetune.caption_mask_prob

        def make(i):
            g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + i)
            t, lab = D.mask_tokens(texts[i : i + 1], ratio, self.tok, g)
            return {"image": self._images(corpus, [i])[0], "text": t[0], "labels": lab[0]}

        return D.DictDataset(len(texts), make)

    def _set_imagenet(self, corpus, train=True):
        return D.DictDataset(len(corpus.labels), lambda i: {"image": self._images(corpus, [i])[0],
                                                            "label": corpus.labels[i]})

    def _setup_imagefolder(self):
        from torchvision import datasets, transforms

        cfg = self.cfg
        if not cfg.data.root:
            raise UserError("data.dataset=imagefolder needs data.root (a folder with train/ and val/)")
        root = Path(cfg.data.root)
        s = cfg.model.img_size
        mean, std = (D.IMAGENET_MEAN, D.IMAGENET_STD) if cfg.data.normalize == "imagenet" else ((0.5,) * 3, (0.5,) * 3)
        train_tf = transforms.Compose([transforms.RandomResizedCrop(s, interpolation=transforms.InterpolationMode.BICUBIC),
                                       transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(mean, std)])
        eval_tf = transforms.Compose([transforms.Resize(int(s / 0.875), interpolation=transforms.InterpolationMode.BICUBIC),
                                      transforms.CenterCrop(s), transforms.ToTensor(), transforms.Normalize(mean, std)])
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise UserError(f"{root / split} not found (expected ImageFolder train/ and val/)")
        tr = datasets.ImageFolder(str(root / "train"), transform=train_tf)
        self.eval_folder = datasets.ImageFolder(str(root / "val"), transform=eval_tf)
        self.classes = tr.classes
        self.train_set = D.DictDataset(len(tr), lambda i: dict(zip(("image", "label"), (tr[i][0], torch.tensor(tr[i][1])))))

    # --- training step
    def step_fn(self, model, b):
        t, m = self.cfg.task, self.cfg.mdm
        if t == "pretrain":
            losses = {}
            if m.use_images:
                losses["mim"] = model.forward_mim(b["image"], b["mim_mask"], b["codes"])
            if m.use_texts:
                losses["mlm_text"] = model.forward_mlm(b["text"], b["text_labels"], text_padding_mask=b["text"] == self.tok.pad_id)
            if m.use_pairs:
                losses["mlm_pair"] = model.forward_mlm(b["pair_text"], b["pair_labels"], image=b["image"],
                                                       text_padding_mask=b["pair_text"] == self.tok.pad_id)
            if not losses:
                raise UserError("mdm: use_images, use_texts and use_pairs are all false")
            return sum(losses.values()), losses
        if t == "vqa":
            logits = model(b["image"], b["text"], text_padding_mask=b["text"] == self.tok.pad_id)
            return model.loss(logits, b["target"]), {}
        if t == "nlvr2":
            logits = model(b["image_a"], b["image_b"], b["text"], text_padding_mask=b["text"] == self.tok.pad_id)
            loss = F.cross_entropy(logits, b["label"])
            return loss, {"acc": (logits.argmax(-1) == b["label"]).float().mean()}
        if t == "retrieval":
            return model(b["image"], b["text"], text_padding_mask=b["text"] == self.tok.pad_id), {}
        if t == "captioning":
            return model.loss(b["image"], b["text"], b["labels"], text_padding_mask=b["text"] == self.tok.pad_id,
                              label_smoothing=self.cfg.finetune.label_smoothing), {}
        logits = model(b["image"])
        return F.cross_entropy(logits, b["label"], label_smoothing=self.cfg.finetune.label_smoothing), {}

    # --- evaluation
    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        t, bs = self.cfg.task, self.cfg.eval_batch_size
        model.eval()
        dev = next(model.parameters()).device
        if t == "imagenet" and hasattr(self, "eval_folder"):
            correct = total = 0
            for x, y in DataLoader(self.eval_folder, batch_size=bs):
                correct += (model(x.to(dev)).argmax(-1).cpu() == y).sum().item()
                total += len(y)
            return {"top1": 100.0 * correct / max(total, 1)}
        c = self.eval_corpus
        if t == "pretrain":
            ds = self._set_pretrain(c, train=False)
            tot = {}
            n = 0
            for b in DataLoader(ds, batch_size=bs):
                b = {k: v.to(dev) for k, v in b.items()}
                _, parts = self.step_fn(model, b)
                for k, v in parts.items():
                    tot[k] = tot.get(k, 0.0) + v.item() * len(b["image"])
                n += len(b["image"])
            return {f"{k}_loss": v / n for k, v in tot.items()}
        if t == "vqa":
            ds = self._set_vqa(c, train=False)
            logits, targets = [], []
            for b in DataLoader(ds, batch_size=bs):
                logits.append(model(b["image"].to(dev), b["text"].to(dev), text_padding_mask=(b["text"] == self.tok.pad_id).to(dev)).cpu())
                targets.append(b["target"])
            return {"vqa_score": vqa_accuracy(torch.cat(logits), torch.cat(targets))}
        if t == "nlvr2":
            ds = self._set_nlvr2(c, train=False)
            correct = total = 0
            for b in DataLoader(ds, batch_size=bs):
                b = {k: v.to(dev) for k, v in b.items()}
                lg = model(b["image_a"], b["image_b"], b["text"], text_padding_mask=b["text"] == self.tok.pad_id)
                correct += (lg.argmax(-1) == b["label"]).sum().item()
                total += len(lg)
            return {"acc": 100.0 * correct / total}
        if t == "retrieval":
            return retrieval_metrics(model, c, self, ks=self.cfg.finetune.retrieval_ks)
        if t == "captioning":
            hyps = []
            for idx in torch.arange(len(c.captions)).split(bs):
                f = self.cfg.finetune
                kw = dict(max_len=self.L - 1, bos_id=self.tok.bos_id, eos_id=self.tok.eos_id, mask_id=self.tok.mask_id)
                if f.num_beams > 1:
                    out = model.generate_beam(self._images(c, idx).to(dev), num_beams=f.num_beams,
                                              length_penalty=f.length_penalty, **kw)
                else:
                    out = model.generate(self._images(c, idx).to(dev), **kw)
                hyps += [self.tok.decode(o[1:].tolist()) for o in out]
            refs = [[" ".join(D._words(r)) for r in rs] for rs in c.all_captions]
            res = {"bleu4": 100.0 * coco_bleu(hyps, refs)[3], "cider": 100.0 * cider_d(hyps, refs)}
            res["example"] = hyps[0] if hyps else ""
            return res
        correct = 0
        for idx in torch.arange(len(c.labels)).split(bs):
            correct += (model(self._images(c, idx).to(dev)).argmax(-1).cpu() == c.labels[idx]).sum().item()
        return {"top1": 100.0 * correct / len(c.labels)}


@torch.no_grad()
def retrieval_metrics(model, corpus, task, ks=(1, 5, 10)) -> dict[str, float]:
    """Image -> text (tr@k) and text -> image (ir@k) recall over (image, first caption) pairs."""
    dev = next(model.parameters()).device
    zi, zt = [], []
    texts = task.tok.encode([c[0] for c in corpus.all_captions], task.L)
    for idx in torch.arange(len(texts)).split(task.cfg.eval_batch_size):
        zi.append(model.embed_images(task._images(corpus, idx).to(dev)).cpu())
        t = texts[idx].to(dev)
        zt.append(model.embed_texts(t, text_padding_mask=t == task.tok.pad_id).cpu())
    return recall_at_k(torch.cat(zi) @ torch.cat(zt).t(), ks=ks)
