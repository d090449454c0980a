"""Triton kernels. Imported lazily by :mod:`vlcore.kernels.dispatch`, never at ``import vlcore`` time.

Under ``TRITON_INTERPRET=1`` (set before this module is imported) they run on CPU tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


# ---------------------------------------------------------------- add + LayerNorm
@triton.jit
def _add_ln_fwd(X, R, W, B, Y, S, MEAN, RSTD, C, eps, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
                BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    m = cols < C
    x = tl.load(X + row * C + cols, mask=m, other=0.0).to(tl.float32)
    r = tl.load(R + row * C + cols, mask=m, other=0.0).to(tl.float32)
    s = x + r
    tl.store(S + row * C + cols, s.to(S.dtype.element_ty), mask=m)
    # statistics from the rounded sum so that forward matches LN(x + r) computed in the input dtype
    s = tl.load(S + row * C + cols, mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(s, axis=0) / C
    d = tl.where(m, s - mean, 0.0)
    var = tl.sum(d * d, axis=0) / C
    rstd = 1.0 / tl.sqrt(var + eps)
    y = d * rstd
    if HAS_W:
        y = y * tl.load(W + cols, mask=m, other=0.0).to(tl.float32)
    if HAS_B:
        y = y + tl.load(B + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(Y + row * C + cols, y.to(Y.dtype.element_ty), mask=m)
    tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)


@triton.jit
def _add_ln_bwd(DY, DS_IN, S, W, MEAN, RSTD, DX, DW_PART, DB_PART, C, HAS_W: tl.constexpr,
                HAS_DS: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    m = cols < C
    s = tl.load(S + row * C + cols, mask=m, other=0.0).to(tl.float32)
    dy = tl.load(DY + row * C + cols, mask=m, other=0.0).to(tl.float32)
    mean = tl.load(MEAN + row)
    rstd = tl.load(RSTD + row)
    xhat = tl.where(m, (s - mean) * rstd, 0.0)
    g = dy
    if HAS_W:
        g = dy * tl.load(W + cols, mask=m, other=0.0).to(tl.float32)
    # d LN / d s for one row: rstd * (g - mean(g) - xhat * mean(g * xhat))
    ds = rstd * (g - tl.sum(g, axis=0) / C - xhat * (tl.sum(g * xhat, axis=0) / C))
    if HAS_DS:
        ds += tl.load(DS_IN + row * C + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(DX + row * C + cols, ds.to(DX.dtype.element_ty), mask=m)
    tl.store(DW_PART + row * C + cols, dy * xhat, mask=m)
    tl.store(DB_PART + row * C + cols, dy, mask=m)


class _AddLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps):
        shape = x.shape
        C = shape[-1]
        x2 = x.reshape(-1, C).contiguous()
        r2 = residual.reshape(-1, C).contiguous().to(x.dtype)
        N = x2.shape[0]
        y = torch.empty_like(x2)
        s = torch.empty_like(x2)
        mean = torch.empty(N, device=x.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        BLOCK = triton.next_power_of_2(C)
        w = weight if weight is not None else x2
        b = bias if bias is not None else x2
        _add_ln_fwd[(N,)](x2, r2, w, b, y, s, mean, rstd, C, eps, HAS_W=weight is not None,
                          HAS_B=bias is not None, BLOCK=BLOCK)
        ctx.save_for_backward(s, weight, mean, rstd)
        ctx.has_b = bias is not None
        ctx.shape = shape
        return y.view(shape), s.view(shape)

    @staticmethod
    def backward(ctx, dy, ds_in):
        s, weight, mean, rstd = ctx.saved_tensors
        C = s.shape[-1]
        N = s.shape[0]
        dy = dy.reshape(-1, C).contiguous()
        dx = torch.empty_like(s)
        dw_part = torch.empty(N, C, device=s.device, dtype=torch.float32)
        db_part = torch.empty_like(dw_part)
        has_ds = ds_in is not None
        ds2 = ds_in.reshape(-1, C).contiguous() if has_ds else dy
        _add_ln_bwd[(N,)](dy, ds2, s, weight if weight is not None else s, mean, rstd, dx, dw_part, db_part, C,
                          HAS_W=weight is not None, HAS_DS=has_ds, BLOCK=triton.next_power_of_2(C))
        dw = dw_part.sum(0).to(weight.dtype) if weight is not None and ctx.needs_input_grad[2] else None
        db = db_part.sum(0).to(weight.dtype if weight is not None else s.dtype) if ctx.has_b and ctx.needs_input_grad[3] else None
        dx = dx.view(ctx.shape)
        return dx, dx, dw, db, None


def add_layer_norm(x, residual, weight, bias, eps: float = 1e-5):
    return _AddLayerNorm.apply(x, residual, weight, bias, eps)


# ---------------------------------------------------------------- VQ nearest code
@triton.jit
def _nearest_code(Z, CB, IDX, N, K, D, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    rm = rows < N
    dm = dims < D
    z = tl.load(Z + rows[:, None] * D + dims[None, :], mask=rm[:, None] & dm[None, :], other=0.0).to(tl.float32)
    norm = tl.sqrt(tl.sum(z * z, axis=1))
    z = z / tl.maximum(norm, 1e-12)[:, None]  # BLOCK_N, BLOCK_D
    best = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    best_i = tl.zeros((BLOCK_N,), tl.int32)
    # one BLOCK_N x BLOCK_K tile of similarities at a time; the N x K matrix never exists
    for k0 in range(0, K, BLOCK_K):
        codes = k0 + tl.arange(0, BLOCK_K)
        km = codes < K
        c = tl.load(CB + codes[:, None] * D + dims[None, :], mask=km[:, None] & dm[None, :], other=0.0)
        sim = tl.dot(z, tl.trans(c), input_precision="ieee")  # BLOCK_N, BLOCK_K
        sim = tl.where(km[None, :], sim, float("-inf"))
        tile_best = tl.max(sim, axis=1)
        tile_i = tl.argmax(sim, axis=1).to(tl.int32) + k0
        # strict > keeps the earliest index on ties, as torch.argmax does
        take = tile_best > best
        best = tl.where(take, tile_best, best)
        best_i = tl.where(take, tile_i, best_i)
    tl.store(IDX + rows, best_i.to(tl.int64), mask=rm)


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    D = z.shape[-1]
    z2 = z.reshape(-1, D).contiguous()
    cn = torch.nn.functional.normalize(codebook.float(), dim=-1).contiguous()  # K, D
    N, K = z2.shape[0], cn.shape[0]
    idx = torch.empty(N, device=z.device, dtype=torch.int64)
    BLOCK_N, BLOCK_K = 32, 64
    BLOCK_D = max(16, triton.next_power_of_2(D))
    _nearest_code[(triton.cdiv(N, BLOCK_N),)](z2, cn, idx, N, K, D, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
                                              BLOCK_D=BLOCK_D)
    return idx.view(z.shape[:-1]), cn[idx].to(z.dtype).view(z.shape)


# ---------------------------------------------------------------- cross-entropy
@triton.jit
def _ce_fwd(LOGITS, TARGET, LOSS, LSE, V, stride, ignore_index, smoothing, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    t = tl.load(TARGET + row)
    base = LOGITS + row.to(tl.int64) * stride
    m = float("-inf")
    acc = 0.0
    total = 0.0
    # one pass over the vocabulary with a running max (online log-sum-exp)
    for v0 in range(0, V, BLOCK):
        cols = v0 + tl.arange(0, BLOCK)
        cm = cols < V
        x = tl.load(base + cols, mask=cm, other=float("-inf")).to(tl.float32)
        new_m = tl.maximum(m, tl.max(x, axis=0))
        acc = acc * tl.exp(m - new_m) + tl.sum(tl.exp(x - new_m), axis=0)
        m = new_m
        total += tl.sum(tl.where(cm, x, 0.0), axis=0)
    lse = m + tl.log(acc)
    valid = t != ignore_index
    xt = tl.load(base + tl.where(valid, t, 0)).to(tl.float32)
    loss = (1.0 - smoothing) * (lse - xt) + smoothing * (lse - total / V)
    tl.store(LOSS + row, tl.where(valid, loss, 0.0))
    tl.store(LSE + row, lse)


@triton.jit
def _ce_bwd(LOGITS, TARGET, LSE, DLOSS, DLOGITS, V, stride, ignore_index, smoothing, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    t = tl.load(TARGET + row)
    g = tl.load(DLOSS + row).to(tl.float32)
    g = tl.where(t != ignore_index, g, 0.0)
    lse = tl.load(LSE + row)
    base = LOGITS + row.to(tl.int64) * stride
    for v0 in range(0, V, BLOCK):
        cols = v0 + tl.arange(0, BLOCK)
        cm = cols < V
        x = tl.load(base + cols, mask=cm, other=0.0).to(tl.float32)
        d = tl.exp(x - lse) - smoothing / V - tl.where(cols == t, 1.0 - smoothing, 0.0)
        tl.store(DLOGITS + row.to(tl.int64) * stride + cols, (d * g).to(DLOGITS.dtype.element_ty), mask=cm)


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, ignore_index, smoothing):
        logits = logits.contiguous()
        N, V = logits.shape
        loss = torch.empty(N, device=logits.device, dtype=torch.float32)
        lse = torch.empty_like(loss)
        BLOCK = min(4096, triton.next_power_of_2(V))
        _ce_fwd[(N,)](logits, target, loss, lse, V, logits.stride(0), ignore_index, smoothing, BLOCK=BLOCK)
        ctx.save_for_backward(logits, target, lse)
        ctx.args = (ignore_index, smoothing, BLOCK)
        return loss

    @staticmethod
    def backward(ctx, dloss):
        logits, target, lse = ctx.saved_tensors
        ignore_index, smoothing, BLOCK = ctx.args
        N, V = logits.shape
        dlogits = torch.empty_like(logits)
        _ce_bwd[(N,)](logits, target, lse, dloss.contiguous(), dlogits, V, logits.stride(0), ignore_index,
                      smoothing, BLOCK=BLOCK)
        return dlogits, None, None, None


def cross_entropy_rows(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, smoothing: float) -> torch.Tensor:
    """Per-row loss (N,), zero on ignored rows, float32."""
    return _CrossEntropy.apply(logits, target.contiguous(), ignore_index, float(smoothing))
