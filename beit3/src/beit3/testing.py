"""Tiny configurations and a torchscale reference shared by beit3's tests."""

from __future__ import annotations

import warnings

import torch

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, vocab_size=100, max_text_len=32)


def torchscale_beit3(seed: int = 0, normalize_output: bool = True):
    """torchscale's BEiT3 at the TINY size, randomly initialised (with its own init)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchscale.architecture.config import EncoderConfig
        from torchscale.model.BEiT3 import BEiT3 as TSBEiT3
    torch.manual_seed(seed)
    cfg = EncoderConfig(
        multiway=True, layernorm_embedding=False, normalize_output=normalize_output, no_output_layer=True,
        vocab_size=TINY["vocab_size"], encoder_embed_dim=TINY["embed_dim"], encoder_attention_heads=TINY["num_heads"],
        encoder_ffn_embed_dim=int(TINY["embed_dim"] * TINY["mlp_ratio"]), encoder_layers=TINY["depth"],
        img_size=TINY["img_size"], patch_size=TINY["patch_size"], max_source_positions=TINY["max_text_len"],
        drop_path_rate=0.0, dropout=0.0,
    )
    m = TSBEiT3(cfg).eval()
    with torch.no_grad():  # non-zero tokens so that CLS / mask token paths are exercised
        m.vision_embed.cls_token.normal_()
        m.vision_embed.mask_token.normal_()
    return m


def tiny_inputs(batch: int = 2, text_len: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, TINY["img_size"], TINY["img_size"], generator=g)
    text = torch.randint(3, TINY["vocab_size"], (batch, text_len), generator=g)
    pad = torch.zeros(batch, text_len, dtype=torch.bool)
    pad[0, -2:] = True
    return image, text, pad


def tiny_vqkd_checkpoint(path, num_codes: int = 16, seed: int = 0):
    """A randomly initialised VQ-KD tokenizer (32 px, patch 8) saved in the official BEiT v2 layout
    (``{"model": state_dict}``) at ``path``; returns the tokenizer (eval mode)."""
    from vlcore.tokenizers import VQKD, VQKDConfig

    torch.manual_seed(seed)
    cfg = VQKDConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1, decoder_embed_dim=64,
                     decoder_depth=1, decoder_num_heads=1, num_codes=num_codes, code_dim=8, target_dim=12)
    tok = VQKD(cfg)
    with torch.no_grad():
        for p in tok.parameters():  # spread the encoder's outputs so that several codes are used
            p.add_(0.05 * torch.randn_like(p))
        tok.quantize.embedding.weight.copy_(torch.nn.functional.normalize(torch.randn(num_codes, 8), dim=-1))
        tok.quantize.embedding.initted.fill_(1.0)
    torch.save({"model": dict(tok.state_dict())}, path)
    return tok.eval()
