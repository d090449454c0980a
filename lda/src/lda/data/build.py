"""Training / test batches for a config: in-memory CIFAR-10-LT, or split files with image folders."""

from __future__ import annotations

from lda.config import LDATrainConfig
from lda.data.cifar_lt import TensorBatches, cifar10_lt, generated_lt
from lda.data.splits import SplitImageDataset, read_split
from lda.engine.trainer import Batches, LoaderBatches
from vlcore.config import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INAT_MEAN = (0.466, 0.471, 0.380)  # the official iNaturalist constants (`transform_wrapper.py`)
INAT_STD = (0.195, 0.194, 0.192)


def image_transforms(cfg: LDATrainConfig, train: bool):
    """The official ImageNet-LT / Places-LT transforms: RandomResizedCrop(0.08-1) + flip + ColorJitter(0.4, 0.4,
    0.4, 0) for training; resize to size / 0.875 and centre crop for testing."""
    from torchvision import transforms as T

    d = cfg.data
    inat = d.benchmark == "inaturalist2018"
    norm = T.Normalize(INAT_MEAN if inat else IMAGENET_MEAN, INAT_STD if inat else IMAGENET_STD)
    if train:
        ops = [T.RandomResizedCrop(d.input_size, scale=(0.08, 1.0), ratio=(0.75, 1.333333333)), T.RandomHorizontalFlip()]
        if d.color_jitter > 0:
            ops.append(T.ColorJitter(d.color_jitter, d.color_jitter, d.color_jitter, 0.0))
        return T.Compose([*ops, T.ToTensor(), norm])
    return T.Compose([T.Resize(int(d.input_size / 0.875)), T.CenterCrop(d.input_size), T.ToTensor(), norm])


def build_batches(cfg: LDATrainConfig) -> tuple[Batches, Batches, list[int], str]:
    """(train batches, test batches, training class counts, a line saying which data this is)."""
    d, bs = cfg.data, cfg.optim.batch_size
    if d.dataset in ("cifar10_lt", "generated_lt"):
        if d.dataset == "cifar10_lt":
            train, test = cifar10_lt(imbalance_factor=d.imbalance_factor, root=d.root or None, n_max=d.n_max,
                                     subsample_seed=d.subsample_seed)
            what = "real CIFAR-10 subset"
        else:
            train, test = generated_lt(imbalance_factor=d.imbalance_factor, n_max=d.n_max,
                                       subsample_seed=d.subsample_seed)
            what = "generated shapes set"
        counts = train.class_counts()
        return (TensorBatches(train, bs, train=True, seed=cfg.seed), TensorBatches(test, 500, train=False, drop_last=False),
                counts, f"{what}, long-tailed IF {d.imbalance_factor:g}: {counts}")
    if not (d.train_split and d.test_split and d.image_root):
        raise ConfigError("data.dataset=split_files needs data.train_split, data.test_split and data.image_root")
    from torch.utils.data import DataLoader

    train_split, test_split = read_split(d.train_split, d.benchmark), read_split(d.test_split, d.benchmark)
    counts = train_split.class_counts()
    # Shot groups of the test split come from the training counts (the official train.py / valid.py do the same).
    train_set = SplitImageDataset(train_split, d.image_root, image_transforms(cfg, True), d.layout)
    test_set = SplitImageDataset(test_split, d.image_root, image_transforms(cfg, False), d.layout)
    kw = {"num_workers": d.num_workers, "pin_memory": False}
    return (LoaderBatches(DataLoader(train_set, batch_size=bs, shuffle=True, drop_last=True, **kw)),
            LoaderBatches(DataLoader(test_set, batch_size=bs, shuffle=False, **kw)), counts,
            f"{d.benchmark or 'split files'}: {len(train_split)} training / {len(test_split)} test images")
