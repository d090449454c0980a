"""Configurations of the frozen Stable Diffusion v1.5 components (built in code, no download)."""

from __future__ import annotations


def sd15_unet_config() -> dict:
    return dict(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8,
    )


def sd15_vae_config() -> dict:
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )


def sd15_text_config(**kw):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(**{**dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                    projection_dim=768), **kw})


# Stable Diffusion v1.5's noise schedule (scaled-linear betas, 1,000 steps, epsilon prediction).
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      prediction_type="epsilon")
