"""Model configurations of lda, each with the paper's parameter count.

`python -m lda.models [--json]` lists them. The paper's tables could not be
retrieved (only the abstract was accessible when this package was written), so
`paper_params_m` is the count of the official code's network for each recipe
(`lib/net/network.py` with the config's backbone, two heads and neck), computed
layer by layer; the source string says so.
"""

from vlcore.registry import ModelRegistry

from lda.models.lda_net import LDANet, LinearNeck, build_backbone
from lda.models.resnet_cifar import ResNetCifar
from lda.models.small_cnn import SmallCNN

REGISTRY = ModelRegistry("lda")

_SRC = "official code, configs/{cfg}: backbone + 2 heads{neck} (paper table not retrieved)"


@REGISTRY.register(paper_params_m=27.34, paper_source=_SRC.format(cfg="ImageNet.yaml", neck=" + neck 2048->128"))
def lda_resnext50_32x4d_imagenet_lt(**kw) -> LDANet:
    """ImageNet-LT: ResNeXt-50 32x4d from scratch, heads 2048->1000, neck 2048->128."""
    return LDANet(**{"backbone": "resnext50_32x4d", "num_classes": 1000, "neck_dim": 128, **kw})


@REGISTRY.register(paper_params_m=59.64, paper_source=_SRC.format(cfg="Places.yaml", neck=""))
def lda_resnet152_places_lt(**kw) -> LDANet:
    """Places-LT: ImageNet ResNet-152 trained only in layer4[2], heads 2048->365."""
    return LDANet(**{"backbone": "resnet152", "num_classes": 365, "trainable": "last_block", **kw})


@REGISTRY.register(paper_params_m=0.4648, paper_source=_SRC.format(cfg="cifar100.yaml with C=10", neck=""))
def lda_resnet32_cifar10_lt(**kw) -> LDANet:
    """CIFAR-10-LT with the plain ResNet-32 (64-d feature)."""
    return LDANet(**{"backbone": "resnet32_cifar", "num_classes": 10, **kw})


@REGISTRY.register(paper_params_m=0.5401, paper_source=_SRC.format(cfg="cifar10.yaml (bbn_res32_cifar)", neck=""))
def lda_bbn_resnet32_cifar10_lt(**kw) -> LDANet:
    """CIFAR-10-LT as in the official config: BBN's ResNet-32 (128-d feature), heads 128->10."""
    return LDANet(**{"backbone": "bbn_resnet32_cifar", "num_classes": 10, **kw})


@REGISTRY.register(paper_params_m=0.4765, paper_source=_SRC.format(cfg="cifar100.yaml", neck=""))
def lda_resnet32_cifar100_lt(**kw) -> LDANet:
    """CIFAR-100-LT: ResNet-32, heads 64->100."""
    return LDANet(**{"backbone": "resnet32_cifar", "num_classes": 100, **kw})


@REGISTRY.register()
def lda_small_cnn_cifar10_mini(**kw) -> LDANet:
    """The CPU mini reproduction's network: 0.07 M CNN (strided stem), heads 64->10, neck 64->32."""
    return LDANet(**{"backbone": "small_cnn_s2", "num_classes": 10, "neck_dim": 32, **kw})


__all__ = ["REGISTRY", "LDANet", "LinearNeck", "ResNetCifar", "SmallCNN", "build_backbone"]
