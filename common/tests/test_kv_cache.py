"""KV cache: incremental decoding equals the full causal forward, for every layout."""

import pytest
import torch

from vlcore.layers import Attention, DecoderCache, KVCache, TransformerStack, eager_attention

DIM, HEADS, B, T = 32, 4, 3, 9
LAYOUTS = ["pre", "post", "deepnorm", "subln"]


def _randomise(module: torch.nn.Module) -> None:
    # non-trivial norms and biases, so a position that is mixed up cannot go unnoticed
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
            elif isinstance(m, torch.nn.Linear) and m.bias is not None:
                m.bias.normal_(0.0, 0.1)


def _decoder(layout: str, *, paired_depth: int | None = None) -> TransformerStack:
    torch.manual_seed(0)
    stack = TransformerStack(
        depth=3, dim=DIM, num_heads=HEADS, kind="decoder", norm_layout=layout, paired_depth=paired_depth
    )
    _randomise(stack)
    return stack.eval()


def _incremental(stack, x, chunks, **kw):
    """Feed x (B, T, C) in pieces of the given lengths through one cache; concatenate the outputs."""
    cache = stack.new_cache()
    outs, start = [], 0
    for n in chunks:
        assert len(cache) == start
        step_kw = dict(kw)
        if "key_padding_mask" in kw:
            step_kw["key_padding_mask"] = kw["key_padding_mask"][:, : start + n]  # B, cached + new
        outs.append(stack(x[:, start : start + n], cache=cache, **step_kw))
        start += n
    assert len(cache) == x.shape[1]
    return torch.cat(outs, dim=1), cache


@pytest.mark.unit
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fused", [True, False])
def test_cached_decoding_equals_full_causal_forward(layout, fused):
    stack = _decoder(layout)
    x = torch.randn(B, T, DIM)
    with torch.no_grad(), (eager_attention() if not fused else torch.enable_grad()):
        full = stack(x)
        # a 4-token prompt, single-token steps, then a 2-token chunk (speculative-style)
        inc, _ = _incremental(stack, x, [4, 1, 1, 1, 2])
    assert inc.shape == full.shape
    assert (inc - full).abs().max().item() < 1e-5


@pytest.mark.unit
def test_cached_decoding_with_left_padding():
    # batched generation pads prompts on the left; the padded keys stay masked at every step
    stack = _decoder("subln")
    x = torch.randn(B, T, DIM)
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, :2] = True
    pad[2, :3] = True
    with torch.no_grad():
        full = stack(x, key_padding_mask=pad)
        inc, _ = _incremental(stack, x, [5, 1, 1, 1, 1], key_padding_mask=pad)
    valid = ~pad  # outputs at padded query positions are not used
    assert (inc - full).abs()[valid].max().item() < 1e-5


@pytest.mark.unit
@pytest.mark.parametrize("layout", ["subln", "deepnorm"])
def test_cached_cross_attention_projects_memory_once(layout):
    stack = _decoder(layout, paired_depth=2)
    x, memory = torch.randn(B, T, DIM), torch.randn(B, 6, DIM)
    mem_pad = torch.zeros(B, 6, dtype=torch.bool)
    mem_pad[0, -2:] = True
    calls = []
    hooks = [blk.cross_attn.kv.register_forward_hook(lambda *a: calls.append(1)) for blk in stack.blocks]
    with torch.no_grad():
        full = stack(x, memory=memory, memory_key_padding_mask=mem_pad)
        calls.clear()
        cache = stack.new_cache()
        outs = [stack(x[:, :3], memory=memory, memory_key_padding_mask=mem_pad, cache=cache)]
        for t in range(3, T):
            # after the first call the memory is read from the cache
            outs.append(stack(x[:, t : t + 1], memory=None, memory_key_padding_mask=mem_pad, cache=cache))
    for h in hooks:
        h.remove()
    assert len(calls) == len(stack.blocks)  # one projection of the memory per block, not per step
    assert all(layer.cross_attn.filled for layer in cache.layers)
    assert (torch.cat(outs, 1) - full).abs().max().item() < 1e-5


@pytest.mark.unit
def test_reorder_selects_batch_rows():
    stack = _decoder("subln")
    x = torch.randn(B, T, DIM)
    index = torch.tensor([2, 0, 0])  # e.g. beam search keeps row 2 and duplicates row 0
    with torch.no_grad():
        full = stack(x[index])
        cache = stack.new_cache()
        first = stack(x[:, :5], cache=cache)
        cache.reorder(index)
        rest = stack(x[index, 5:], cache=cache)
    assert (torch.cat((first[index], rest), 1) - full).abs().max().item() < 1e-5
    cache.reset()
    assert len(cache) == 0


@pytest.mark.unit
def test_kv_cache_errors():
    enc = TransformerStack(depth=2, dim=DIM, num_heads=HEADS)
    with pytest.raises(ValueError, match="decoder"):
        enc.new_cache()
    with pytest.raises(ValueError, match="decoder"):
        enc(torch.randn(1, 3, DIM), cache=DecoderCache(2))
    dec = TransformerStack(depth=2, dim=DIM, num_heads=HEADS, kind="decoder")
    with pytest.raises(ValueError, match="layers"):
        dec(torch.randn(1, 3, DIM), cache=DecoderCache(3))
    attn = Attention(dim=DIM, num_heads=HEADS, window_size=(2, 2))
    with pytest.raises(ValueError, match="image grids"):
        attn(torch.randn(1, 5, DIM), cache=KVCache())
    kv = KVCache()
    kv.append(torch.zeros(2, HEADS, 3, 8), torch.zeros(2, HEADS, 3, 8))
    with pytest.raises(ValueError, match="reorder"):
        kv.append(torch.zeros(1, HEADS, 1, 8), torch.zeros(1, HEADS, 1, 8))
