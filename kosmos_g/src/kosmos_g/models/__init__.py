"""Model configurations of kosmos_g, each with the paper's parameter count.

`python -m kosmos_g.models [--json]` lists them. The counts of the AlignerNet parts and the
frozen Stable Diffusion v1.5 components are the paper card's §2.3 (closed form / diffusers
and transformers modules instantiated on the meta device); the paper's "about 225M" for the
AlignerNet is M alone.
"""

from vlcore.registry import ModelRegistry

from kosmos_g.models.aligner import AlignerConfig, AlignerNet

REGISTRY = ModelRegistry("kosmos_g")

_CARD = "Kosmos-G paper card §2.3"


@REGISTRY.register("alignernet_m", paper_params_m=225.46176, paper_source=_CARD + " (paper §2.2: ~225M)",
                   tolerance=1e-6)
def alignernet_m(**kw) -> AlignerNet:
    """AlignerNet M (Linear 2048->768, 32k positions, 12-layer encoder, 12-layer decoder, 77 queries)."""
    return AlignerNet(AlignerConfig(with_reconstruction=False, **kw))


@REGISTRY.register("alignernet_m_n", paper_params_m=476.031488, paper_source=_CARD + " (M + N, stage 2)",
                   tolerance=1e-6)
def alignernet_m_n(**kw) -> AlignerNet:
    """AlignerNet M + reconstruction decoder N (stage 2)."""
    return AlignerNet(AlignerConfig(**kw))


@REGISTRY.register("sd15_unet", paper_params_m=859.520964, paper_source=_CARD + " (frozen SD v1.5 U-Net)",
                   tolerance=1e-6)
def sd15_unet(**kw):
    """Stable Diffusion v1.5 UNet2DConditionModel (frozen image decoder)."""
    from kosmos_g.sd import sd15_unet_config
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**{**sd15_unet_config(), **kw})


@REGISTRY.register("sd15_vae", paper_params_m=83.653863, paper_source=_CARD + " (frozen SD v1.5 VAE)",
                   tolerance=1e-6)
def sd15_vae(**kw):
    """Stable Diffusion v1.5 AutoencoderKL (frozen)."""
    from kosmos_g.sd import sd15_vae_config
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{**sd15_vae_config(), **kw})


@REGISTRY.register("sd15_text_encoder", paper_params_m=123.06048,
                   paper_source=_CARD + " (CLIP text encoder, stage-2 teacher)", tolerance=1e-6)
def sd15_text_encoder(**kw):
    """CLIP ViT-L/14 text encoder of SD v1.5 (frozen alignment target)."""
    from kosmos_g.sd import sd15_text_config
    from transformers import CLIPTextModel

    return CLIPTextModel(sd15_text_config(**kw))


KOSMOS_G_VOCAB = 64007  # Kosmos-1 dictionary: SentencePiece + fairseq dict + <mask> + 5 specials (card §2.1)


@REGISTRY.register("kosmos_g_mllm", paper_params_m=1662.375936,
                   paper_source=_CARD + " (CLIP ViT-L/14 303.2M + connector 19.0M + decoder 1,340.2M; paper: ~1.6B)",
                   tolerance=1e-6)
def kosmos_g_mllm(**kw):
    """Kosmos-1-style MLLM (the kosmos2 network with the 64,007-token vocabulary)."""
    from kosmos2.models.kosmos2 import Kosmos2Model

    return Kosmos2Model(**{"vocab_size": KOSMOS_G_VOCAB, **kw})


@REGISTRY.register("kosmos_g_1.9b", paper_params_m=1887.837696,
                   paper_source=_CARD + " (MLLM + AlignerNet M; paper: Kosmos-G-1.9B)", tolerance=1e-6)
def kosmos_g_19b(**kw):
    """Kosmos-G-1.9B condition encoder: MLLM + AlignerNet M (the frozen SD v1.5 U-Net not included)."""
    from kosmos_g.models.kosmos_g import KosmosGEncoder

    return KosmosGEncoder(kosmos_g_mllm(), alignernet_m(**kw), bos_id=0)
