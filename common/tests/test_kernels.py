"""Fused Triton kernels equal their PyTorch references, run on CPU under Triton's interpreter."""

import os

# Triton reads the flag when it is imported: the repository's conftest.py sets it for a whole pytest
# session (something imports triton before this module); this line covers running the file alone.
os.environ.setdefault("TRITON_INTERPRET", "1")

import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from vlcore.kernels import dispatch, reference  # noqa: E402

TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.fixture
def triton_backend():
    dispatch.set_backend("triton")
    yield
    dispatch.set_backend(None)


@pytest.mark.unit
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,affine", [((3, 5, 37), True), ((4, 64), True), ((7, 100), False)])
def test_add_layer_norm_matches_reference(triton_backend, shape, affine, dtype):
    torch.manual_seed(0)
    C = shape[-1]
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    r = torch.randn(shape, dtype=dtype, requires_grad=True)
    w = (1 + 0.5 * torch.randn(C, dtype=dtype)).requires_grad_(affine) if affine else None
    b = (0.1 * torch.randn(C, dtype=dtype)).requires_grad_(affine) if affine else None
    dy, ds = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    leaves = [t for t in (x, r, w, b) if t is not None]
    outs = []
    for fn in (dispatch.fused_add_layer_norm, reference.add_layer_norm_ref):
        y, s = fn(x, r, w, b, 1e-6)
        grads = torch.autograd.grad((y.float() * dy.float()).sum() + (s.float() * ds.float()).sum(), leaves)
        outs.append((y, s, grads))
    (y, s, g), (y_ref, s_ref, g_ref) = outs
    assert y.dtype == dtype and y.shape == shape
    assert rel_err(y, y_ref) < TOL[dtype]
    assert rel_err(s, s_ref) < TOL[dtype]
    for a, e in zip(g, g_ref):
        assert rel_err(a, e) < TOL[dtype]


@pytest.mark.unit
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,k,d", [(70, 300, 32), (33, 1000, 24), (5, 8192, 32)])
def test_nearest_code_matches_reference(triton_backend, n, k, d, dtype):
    torch.manual_seed(0)
    z = torch.randn(n, d, dtype=dtype)
    cb = torch.randn(k, d)
    idx, q = dispatch.nearest_code(z.view(1, n, d), cb)
    idx_ref, q_ref = reference.nearest_code_ref(z, cb)
    assert idx.shape == (1, n) and q.shape == (1, n, d) and q.dtype == dtype
    assert torch.equal(idx.view(-1), idx_ref)
    assert rel_err(q.view(n, d), q_ref) < TOL[dtype]


@pytest.mark.unit
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,v,smoothing", [(7, 1000, 0.0), (5, 8192, 0.1), (9, 301, 0.0)])
def test_cross_entropy_matches_reference(triton_backend, n, v, smoothing, dtype):
    torch.manual_seed(0)
    logits = (3 * torch.randn(n, v)).to(dtype).requires_grad_(True)
    target = torch.randint(0, v, (n,))
    target[1] = -100  # ignored row
    losses, grads = [], []
    for fn in (dispatch.cross_entropy, reference.cross_entropy_ref):
        loss = fn(logits, target, label_smoothing=smoothing)
        (g,) = torch.autograd.grad(loss, logits)
        losses.append(loss)
        grads.append(g)
    assert losses[0].dtype == torch.float32
    assert rel_err(losses[0], losses[1]) < TOL[dtype]
    assert rel_err(grads[0], grads[1]) < TOL[dtype]
    assert grads[0][1].abs().max() == 0  # the ignored row gets no gradient


@pytest.mark.unit
def test_cross_entropy_reductions(triton_backend):
    torch.manual_seed(0)
    logits, target = torch.randn(6, 130), torch.randint(0, 130, (6,))
    for red in ("none", "sum"):
        got = dispatch.cross_entropy(logits, target, reduction=red)
        assert rel_err(got, reference.cross_entropy_ref(logits, target, reduction=red)) < 1e-5


@pytest.mark.unit
def test_auto_backend_uses_reference_on_cpu(monkeypatch):
    monkeypatch.setenv("VLCORE_KERNELS", "auto")
    x = torch.randn(2, 3)
    assert not dispatch.use_triton(x)
    monkeypatch.setenv("VLCORE_KERNELS", "torch")
    assert not dispatch.use_triton(x)
    monkeypatch.setenv("VLCORE_KERNELS", "bogus")
    with pytest.raises(ValueError, match="VLCORE_KERNELS"):
        dispatch.use_triton(x)
    with pytest.raises(ValueError):
        dispatch.set_backend("cuda")


@pytest.mark.unit
def test_importing_vlcore_does_not_import_triton():
    code = "import sys, vlcore, vlcore.kernels; print('triton' in sys.modules or 'vlcore.kernels._triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.smoke
def test_bench_dry_run(capsys):
    from vlcore.kernels import bench

    assert bench.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cross-entropy" in out and "MIM step" in out and out.count("speed-up") == 3
