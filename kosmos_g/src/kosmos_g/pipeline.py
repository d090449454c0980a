"""``KosmosGPipeline``: generation from interleaved images and text with any compatible U-Net.

The MLLM + AlignerNet M (:class:`kosmos_g.models.kosmos_g.KosmosGEncoder`) turn an interleaved
prompt into ``prompt_embeds`` of exactly the shape the U-Net's text encoder would produce (SD v1.5:
(B, 77, 768)); the null condition M(MLLM("<s>")) is the default negative prompt. Everything after
that is the standard Stable Diffusion sampling loop, so the U-Net, the scheduler and the guidance
scale are free to choose, a LoRA-adapted U-Net (``unet.add_adapter``/``load_lora_adapter``) works
unchanged, and a ``ControlNetModel`` receives the same condition as the U-Net (card §8).

Classifier-free guidance: eps = eps(z, c_null) + w (eps(z, c) - eps(z, c_null)); w = 1 skips the
unconditional pass. Without a VAE the U-Net works in pixel space ([-1, 1]).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput


class KosmosGPipeline(DiffusionPipeline):
    """Args:
        encoder: the condition encoder (MLLM + AlignerNet M), ``encoder(**processor(prompts))``.
        processor: callable turning a list of interleaved prompts (each a list of ``str`` and image
            tensors) into the encoder's keyword arguments (``input_ids``, ``pixel_values``,
            ``image_embeds_position_mask``, ``attention_mask``).
        unet, scheduler: any ``UNet2DConditionModel`` whose ``cross_attention_dim`` matches the
            encoder's output and any diffusers scheduler.
        vae: optional ``AutoencoderKL`` (latent diffusion); None = pixel space.
        controlnet: optional ``ControlNetModel``; pass its conditioning image as ``control_image``.
    """

    def __init__(self, encoder, processor: Callable, unet, scheduler, vae=None, controlnet=None):
        super().__init__()
        self.register_modules(encoder=encoder, unet=unet, scheduler=scheduler, vae=vae, controlnet=controlnet)
        self.processor = processor

    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[Sequence]) -> torch.Tensor:
        batch = self.processor(list(prompts))
        dev = self.unet.device
        batch = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        return self.encoder(**batch)

    @torch.no_grad()
    def null_prompt_embeds(self, batch: int) -> torch.Tensor:
        return self.encoder.null_condition(batch)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Sequence | None = None,
        negative_prompt: Sequence | None = None,
        *,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        control_image: torch.Tensor | None = None,
        controlnet_conditioning_scale: float = 1.0,
        cross_attention_kwargs: dict | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        if prompt_embeds is None:
            if prompt is None:
                raise ValueError("give `prompt` (interleaved text / images) or `prompt_embeds`")
            prompts = [prompt] if _is_single(prompt) else list(prompt)
            prompt_embeds = self.encode_prompt(prompts)
        if negative_prompt_embeds is None:
            if negative_prompt is not None:
                negs = [negative_prompt] if _is_single(negative_prompt) else list(negative_prompt)
                negative_prompt_embeds = self.encode_prompt(negs)
            else:
                negative_prompt_embeds = self.null_prompt_embeds(prompt_embeds.shape[0])
        if negative_prompt_embeds.shape[0] == 1 and prompt_embeds.shape[0] > 1:
            negative_prompt_embeds = negative_prompt_embeds.expand_as(prompt_embeds)
        cond = prompt_embeds.repeat_interleave(num_images_per_prompt, 0)
        uncond = negative_prompt_embeds.repeat_interleave(num_images_per_prompt, 0)
        b = cond.shape[0]
        do_cfg = guidance_scale != 1.0
        dev, dtype = self.unet.device, self.unet.dtype
        cond, uncond = cond.to(dev, dtype), uncond.to(dev, dtype)

        scale = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        size = self.unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        height = height or size * scale
        width = width or size * scale
        shape = (b, self.unet.config.in_channels, height // scale, width // scale)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(dev, dtype)
        latents = latents * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=dev)
        embeds = torch.cat([uncond, cond]) if do_cfg else cond
        ctrl = None
        if self.controlnet is not None:
            if control_image is None:
                raise ValueError("a ControlNet is attached: pass `control_image`")
            ctrl = control_image.to(dev, dtype).repeat_interleave(num_images_per_prompt, 0)
            if ctrl.shape[0] == 1 and b > 1:
                ctrl = ctrl.expand(b, -1, -1, -1)
            ctrl = torch.cat([ctrl, ctrl]) if do_cfg else ctrl

        for t in self.progress_bar(self.scheduler.timesteps):
            inp = torch.cat([latents, latents]) if do_cfg else latents
            inp = self.scheduler.scale_model_input(inp, t)
            extra = {}
            if ctrl is not None:
                down, mid = self.controlnet(inp, t, encoder_hidden_states=embeds, controlnet_cond=ctrl,
                                            conditioning_scale=controlnet_conditioning_scale, return_dict=False)
                extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            eps = self.unet(inp, t, encoder_hidden_states=embeds, cross_attention_kwargs=cross_attention_kwargs,
                            **extra).sample
            if do_cfg:
                e0, e1 = eps.chunk(2)
                eps = e0 + guidance_scale * (e1 - e0)
            latents = self.scheduler.step(eps, t, latents, generator=generator).prev_sample

        if self.vae is not None:
            images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        else:
            images = latents
        images = ((images.float().clamp(-1, 1) + 1) / 2).cpu()
        if output_type == "pil":
            from diffusers.image_processor import VaeImageProcessor

            images = VaeImageProcessor.numpy_to_pil(images.permute(0, 2, 3, 1).numpy())
        elif output_type == "np":
            images = images.permute(0, 2, 3, 1).numpy()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def _is_single(prompt) -> bool:
    """A single interleaved prompt is a str or a sequence of str / image tensors (no nested lists)."""
    return isinstance(prompt, str) or not any(isinstance(p, (list, tuple)) for p in prompt)
