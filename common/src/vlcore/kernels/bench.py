"""GPU benchmark of the fused kernels and a ViT-L masked-image-modelling training step (bf16).

    python -m vlcore.kernels.bench            # on a CUDA machine, a few minutes
    python -m vlcore.kernels.bench --dry-run  # CPU, tiny sizes, exercises every code path

Rates are reported against the device's measured peaks (a large bf16 matmul and a large copy).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from vlcore.kernels import dispatch, reference


def _time(fn: Callable[[], object], *, iters: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    cuda = torch.cuda.is_available()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure_peaks(*, device: torch.device, n: int, iters: int) -> tuple[float, float]:
    """(matmul FLOP/s in bf16, copy bytes/s)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    t = _time(lambda: a @ a, iters=iters)
    flops = 2 * n**3 / t
    src = torch.empty(n * n * 8, device=device, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    t = _time(lambda: dst.copy_(src), iters=iters)
    return flops, 2 * src.numel() * src.element_size() / t


def _pair(name: str, fused: Callable[[], object], ref: Callable[[], object], nbytes: int, peak_bw: float,
          iters: int) -> str:
    tf, tr = _time(fused, iters=iters), _time(ref, iters=iters)
    return (f"{name:<28} fused {tf * 1e3:8.3f} ms  ref {tr * 1e3:8.3f} ms  speed-up {tr / tf:5.2f}x  "
            f"fused {nbytes / tf / 1e9:8.1f} GB/s ({100 * nbytes / tf / peak_bw:5.1f}% of copy peak)")


def bench_kernels(*, device: torch.device, rows: int, dim: int, vocab: int, codes: int, code_dim: int,
                  peak_bw: float, iters: int) -> list[str]:
    dt = torch.bfloat16
    lines = []
    x = torch.randn(rows, dim, device=device, dtype=dt, requires_grad=True)
    r = torch.randn_like(x, requires_grad=True)
    w = torch.ones(dim, device=device, dtype=dt, requires_grad=True)
    b = torch.zeros(dim, device=device, dtype=dt, requires_grad=True)

    def ln(fn):
        def step():
            y, s = fn(x, r, w, b, 1e-6)
            (y.float().sum() + s.float().sum()).backward()
        return step
    # forward reads x, r and writes y, s; backward reads dy, s and writes dx (twice counted as one)
    lines.append(_pair("add+layernorm fwd+bwd", ln(dispatch.fused_add_layer_norm), ln(reference.add_layer_norm_ref),
                       7 * x.numel() * x.element_size(), peak_bw, iters))
    z = torch.randn(rows, code_dim, device=device)
    cb = torch.randn(codes, code_dim, device=device)
    lines.append(_pair(f"vq nearest code K={codes}", lambda: dispatch.nearest_code(z, cb),
                       lambda: reference.nearest_code_ref(z, cb), z.numel() * 4 * 2 + cb.numel() * 4, peak_bw, iters))
    logits = torch.randn(rows, vocab, device=device, dtype=dt, requires_grad=True)
    tgt = torch.randint(0, vocab, (rows,), device=device)

    def ce(fn):
        return lambda: fn(logits, tgt).backward()
    lines.append(_pair(f"cross-entropy V={vocab} fwd+bwd", ce(dispatch.cross_entropy), ce(reference.cross_entropy_ref),
                       3 * logits.numel() * logits.element_size(), peak_bw, iters))
    return lines


def bench_mim_step(*, device: torch.device, size: dict, batch: int, img: int, vocab: int, peak_flops: float,
                   iters: int) -> list[str]:
    """One ViT masked-image-modelling step: Beit backbone, linear head over the vocabulary on masked positions."""
    from vlcore.models.beit import Beit

    model = Beit(img_size=img, num_classes=0, use_mask_token=True, **size).to(device)
    head = nn.Linear(size["embed_dim"], vocab).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    n = (img // 16) ** 2
    images = torch.randn(batch, 3, img, img, device=device)
    mask = torch.rand(batch, n, device=device).argsort(-1) < int(0.4 * n)  # B, N: 40% masked
    targets = torch.randint(0, vocab, (int(mask.sum()),), device=device)
    lines = []
    for mode in ("torch", "auto"):
        dispatch.set_backend(mode)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                h = model.forward_features(images, bool_masked_pos=mask)[:, 1:]  # B, N, C
                logits = head(h[mask])  # M, V
            loss = dispatch.cross_entropy(logits, targets)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        t = _time(step, iters=iters, warmup=1)
        n_params = sum(p.numel() for p in model.blocks.parameters())
        # 6 * params * tokens for the blocks, plus the head on masked tokens; attention scores left out
        flops = 6 * n_params * batch * (n + 1) + 6 * size["embed_dim"] * vocab * targets.numel()
        lines.append(f"MIM step bf16 kernels={mode:<5} {batch / t:8.1f} samples/s  {flops / t / 1e12:7.2f} TFLOP/s "
                     f"({100 * flops / t / peak_flops:5.1f}% of matmul peak)")
    dispatch.set_backend(None)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU, kernels via the reference path")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
        dims = dict(rows=37, dim=48, vocab=300, codes=100, code_dim=32)
        size = dict(embed_dim=32, depth=2, num_heads=2)
        batch, img, vocab, iters, mm_n = 2, 32, 64, 1, 64
    elif not torch.cuda.is_available():
        print("vlcore.kernels.bench: no CUDA device, nothing to benchmark (use --dry-run to check the code paths)")
        return 0
    else:
        device = torch.device("cuda")
        dims = dict(rows=64 * 196, dim=1024, vocab=8192, codes=8192, code_dim=32)
        size = dict(embed_dim=1024, depth=24, num_heads=16)
        batch, img, vocab, iters, mm_n = args.batch, 224, 8192, 10, 8192
    peak_flops, peak_bw = measure_peaks(device=device, n=mm_n, iters=iters)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}: "
          f"bf16 matmul {peak_flops / 1e12:.1f} TFLOP/s, copy {peak_bw / 1e9:.0f} GB/s")
    for line in bench_kernels(device=device, peak_bw=peak_bw, iters=iters, **dims):
        print(line)
    for line in bench_mim_step(device=device, size=size, batch=batch, img=img, vocab=vocab, peak_flops=peak_flops,
                               iters=iters):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
