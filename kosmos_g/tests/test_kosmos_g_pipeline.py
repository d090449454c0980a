import pytest
import torch
from diffusers import ControlNetModel, DDIMScheduler, DPMSolverMultistepScheduler

from kosmos_g.mini import sample_scenes
from kosmos_g.pipeline import KosmosGPipeline
from kosmos_g.testing import frozen_tiny_unet, mini_processor, tiny_encoder


def _prompt():
    sc = sample_scenes(2, torch.Generator().manual_seed(0))
    return [[sc.crop[0], "on a blue background"], ["a red", sc.crop[1], "and", sc.crop[0], "on a grey background"]]


def _pipe(unet=None, controlnet=None, scheduler=None):
    enc = tiny_encoder().eval()
    enc.aligner.drop_reconstruction_()
    return KosmosGPipeline(enc, mini_processor, unet or frozen_tiny_unet(),
                           scheduler or DDIMScheduler(num_train_timesteps=1000), controlnet=controlnet)


@pytest.mark.unit
def test_pipeline_generates_from_interleaved_prompts_with_any_scheduler_and_guidance():
    pipe = _pipe()
    prompts = _prompt()
    embeds = pipe.encode_prompt(prompts)
    assert embeds.shape == (2, 8, 64)  # the text encoder's (L, D), here 8 x 64 (SD v1.5: 77 x 768)
    a = pipe(prompts, num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(0)).images
    assert a.shape == (2, 3, 16, 16) and 0 <= float(a.min()) and float(a.max()) <= 1
    # same seed, same result; prompt_embeds path identical to the prompt path
    b = pipe(prompt_embeds=embeds, num_inference_steps=3, guidance_scale=3.0,
             generator=torch.Generator().manual_seed(0)).images
    torch.testing.assert_close(a, b)
    # guidance scale matters; w = 1 runs a single (conditional) pass
    c = pipe(prompts, num_inference_steps=3, guidance_scale=1.0, generator=torch.Generator().manual_seed(0)).images
    assert not torch.allclose(a, c)
    pipe.scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000)
    d = pipe(prompts[0], num_inference_steps=4, num_images_per_prompt=2, guidance_scale=2.0,
             generator=torch.Generator().manual_seed(0), output_type="pil").images
    assert len(d) == 2 and d[0].size == (16, 16)


@pytest.mark.unit
def test_cfg_step_is_the_card_formula():
    """eps = eps(z, c_null) + w (eps(z, c) - eps(z, c_null)), checked by one DDIM step done by hand."""
    pipe = _pipe()
    prompts = _prompt()
    c = pipe.encode_prompt(prompts)
    n = pipe.null_prompt_embeds(2)
    z = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    out = pipe(prompt_embeds=c, latents=z.clone(), num_inference_steps=1, guidance_scale=4.0).images
    sched = DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(1)
    t = sched.timesteps[0]
    with torch.no_grad():
        e = pipe.unet(z, t, encoder_hidden_states=n).sample + 4.0 * (
            pipe.unet(z, t, encoder_hidden_states=c).sample - pipe.unet(z, t, encoder_hidden_states=n).sample)
    ref = ((sched.step(e, t, z).prev_sample.clamp(-1, 1) + 1) / 2)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.unit
def test_lora_adapted_unet_runs_unchanged_conditioning():
    from peft import LoraConfig

    prompts = _prompt()
    base = _pipe()
    embeds = base.encode_prompt(prompts)
    ref = base(prompt_embeds=embeds, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).images
    unet = frozen_tiny_unet()
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    lora = _pipe(unet=unet)
    # the conditioning does not depend on the U-Net
    torch.testing.assert_close(lora.encode_prompt(prompts), embeds)
    same = lora(prompts, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).images
    torch.testing.assert_close(same, ref)  # a zero-initialised LoRA is the identity
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    styled = lora(prompts, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).images
    assert not torch.allclose(styled, ref, atol=1e-3)
    assert any("lora" in n for n, _ in unet.named_parameters())


@pytest.mark.unit
def test_controlnet_attached_receives_the_same_condition():
    unet = frozen_tiny_unet()
    torch.manual_seed(0)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8,))
    calls = []
    cn.register_forward_hook(lambda m, args, kw, out: calls.append(kw["encoder_hidden_states"]), with_kwargs=True)
    pipe = _pipe(unet=unet, controlnet=cn)
    prompts = _prompt()
    control = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    base = _pipe(unet=unet)
    ref = base(prompts, num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0)).images
    # ControlNet's zero convolutions start at zero: attached, the output is unchanged
    out = pipe(prompts, control_image=control, num_inference_steps=2, guidance_scale=2.0,
               generator=torch.Generator().manual_seed(0)).images
    torch.testing.assert_close(out, ref)
    assert len(calls) == 2 and calls[0].shape == (4, 8, 64)  # [null; cond] with CFG
    torch.testing.assert_close(calls[0][2:], pipe.encode_prompt(prompts))
    with torch.no_grad():
        for m in list(cn.controlnet_down_blocks) + [cn.controlnet_mid_block]:
            m.weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(3))
    out2 = pipe(prompts, control_image=control, num_inference_steps=2, guidance_scale=2.0,
                generator=torch.Generator().manual_seed(0)).images
    assert not torch.allclose(out2, ref, atol=1e-3)
    with pytest.raises(ValueError, match="control_image"):
        pipe(prompts, num_inference_steps=1)
