"""Checkpoints: exact round trips, atomic writes, refusal of code-carrying pickles, one-line errors."""

from __future__ import annotations

import os
import pickle
import pickletools
import random

import numpy as np
import pytest
import torch
from torch import nn

from vlcore import checkpoint as ckpt
from vlcore.checkpoint import (
    CheckpointError, CheckpointMismatchError, atomic_save, capture_rng_state, latest_checkpoint, list_checkpoints,
    load_state_dict_strict, load_training_state, load_weights, restore_rng_state, save_checkpoint,
    save_training_state, save_weights,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))


def _assert_one_line_naming(e: pytest.ExceptionInfo, path) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


class _WritesMarker:
    """Unpickling this calls `open(marker, "w")`: the file appears iff the payload runs."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.unit
def test_weights_round_trip_is_exact(tmp_path):
    sd = _net().state_dict()
    path = save_weights(sd, tmp_path / "w.safetensors")
    back = load_weights(path)
    assert sorted(back) == sorted(sd)  # safetensors stores names sorted
    assert all(torch.equal(back[k], sd[k]) for k in sd)

    # .pt / .bin state dicts, bare or wrapped the way released checkpoints are
    torch.save(sd, tmp_path / "w.pt")
    torch.save({"model": sd, "epoch": 3}, tmp_path / "w.pth")
    for name in ("w.pt", "w.pth"):
        back = load_weights(tmp_path / name)
        assert all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.unit
def test_tied_and_noncontiguous_tensors_save(tmp_path):
    w = torch.randn(6, 4)
    sd = {"embed.weight": w, "head.weight": w, "t": torch.randn(4, 5).t()}  # shared storage, a transposed view
    back = load_weights(save_weights(sd, tmp_path / "tied.safetensors"))
    assert torch.equal(back["embed.weight"], w) and torch.equal(back["head.weight"], w)
    assert torch.equal(back["t"], sd["t"])


@pytest.mark.unit
def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    raw = pickle.dumps(_WritesMarker(str(marker)), protocol=2)
    # the payload is live: the stream calls a global, and that global with its arguments writes the file
    ops = {op.name for op, _, _ in pickletools.genops(raw)}
    assert "REDUCE" in ops and ops & {"GLOBAL", "STACK_GLOBAL"}
    fn, args = _WritesMarker(str(tmp_path / "control")).__reduce__()
    fn(*args).close()
    assert (tmp_path / "control").exists()

    legacy = tmp_path / "evil.pt"
    legacy.write_bytes(raw)  # a plain pickle, the pre-zip torch format
    zipped = tmp_path / "evil_zip.bin"
    torch.save({"model": _WritesMarker(str(marker)), "w": torch.ones(2)}, zipped)
    for path in (legacy, zipped):
        for loader in (load_weights, load_training_state):
            with pytest.raises(CheckpointError) as e:
                loader(path)
            msg = _assert_one_line_naming(e, path)
            assert "refused" in msg
            assert not marker.exists(), "the pickle payload was executed"


@pytest.mark.unit
def test_missing_truncated_and_corrupt_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_weights(tmp_path / "absent.safetensors")
    _assert_one_line_naming(e, tmp_path / "absent.safetensors")

    w = save_weights(_net().state_dict(), tmp_path / "w.safetensors")
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_weights(w)
    _assert_one_line_naming(e, w)

    s = save_training_state({"step": 3, "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "state.pt")
    data = s.read_bytes()
    s.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_training_state(s)
    _assert_one_line_naming(e, s)

    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError) as e:
        load_weights(junk)
    _assert_one_line_naming(e, junk)

    not_sd = tmp_path / "list.pt"
    torch.save([torch.ones(1)], not_sd)
    with pytest.raises(CheckpointError) as e:
        load_weights(not_sd)
    _assert_one_line_naming(e, not_sd)


@pytest.mark.unit
def test_strict_load_lists_every_difference():
    model = _net()
    sd = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    load_state_dict_strict(model, sd)
    assert torch.equal(model[0].weight, sd["0.weight"])

    bad = dict(sd)
    del bad["2.bias"]
    bad["extra.weight"] = torch.zeros(1)
    bad["0.weight"] = torch.zeros(8, 5)
    with pytest.raises(CheckpointMismatchError) as e:
        load_state_dict_strict(model, bad, source="ckpt.safetensors")
    msg = str(e.value)
    assert "\n" not in msg and "ckpt.safetensors" in msg
    assert e.value.missing == ["2.bias"] and e.value.unexpected == ["extra.weight"]
    assert e.value.mismatched == [("0.weight", (8, 5), (8, 4))]
    assert "2.bias" in msg and "extra.weight" in msg and "0.weight" in msg
    assert isinstance(e.value, CheckpointError)
    assert torch.equal(model[0].weight, sd["0.weight"])  # nothing was loaded


@pytest.mark.unit
def test_interrupted_atomic_write_keeps_previous_file(tmp_path):
    path = tmp_path / "w.bin"
    atomic_save(b"old contents", path)

    def half_then_fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"new, half writ")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError, match="disk went away"):
        atomic_save(half_then_fail, path)
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]  # no temporary left behind


@pytest.mark.unit
def test_interrupted_checkpoint_never_leaves_a_bad_latest(tmp_path, monkeypatch):
    root = tmp_path / "ckpt"
    sd2 = _net().state_dict()
    save_checkpoint(root, 2, model_state=sd2, training_state={"step": 2})
    assert (root / "latest").read_text().strip() == "step_000002"

    # 1) an exception while writing the state (an unpicklable object, mid torch.save)
    with pytest.raises(Exception):
        save_checkpoint(root, 4, model_state=sd2, training_state={"step": 4, "bad": lambda: 0})
    assert latest_checkpoint(root) == root / "step_000002"
    assert [p.name for p in list_checkpoints(root)] == ["step_000002"]
    assert not any(p.name.startswith(".") for p in root.iterdir())

    # 2) killed after the step folder is in place but before `latest` moved: latest stays valid
    real = ckpt.atomic_save

    def fail_on_latest(obj, path):
        if str(path).endswith("latest"):
            raise KeyboardInterrupt
        return real(obj, path)

    monkeypatch.setattr(ckpt, "atomic_save", fail_on_latest)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(root, 4, model_state=sd2, training_state={"step": 4})
    monkeypatch.setattr(ckpt, "atomic_save", real)
    latest = latest_checkpoint(root)
    assert latest == root / "step_000002"
    assert load_training_state(latest / "state.pt")["step"] == 2
    back = load_weights(latest / "model.safetensors")
    assert all(torch.equal(back[k], sd2[k]) for k in sd2)

    # 3) the same step written again replaces the half-finished one; keep_last prunes the rest
    save_checkpoint(root, 4, model_state=sd2, training_state={"step": 4})
    save_checkpoint(root, 6, model_state=sd2, training_state={"step": 6}, keep_last=2)
    assert [p.name for p in list_checkpoints(root)] == ["step_000004", "step_000006"]
    assert latest_checkpoint(root) == root / "step_000006"

    # 4) a replacement of the latest step killed between its two renames is recovered
    os.replace(root / "step_000006", root / ".replaced-step_000006")
    assert latest_checkpoint(root) == root / "step_000006"
    assert load_training_state(root / "step_000006" / "state.pt")["step"] == 6

    (root / "latest").write_text("../../etc\n")
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(root)
    _assert_one_line_naming(e, root / "latest")


@pytest.mark.unit
def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's legacy state
    path = save_training_state({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3))
    restore_rng_state(load_training_state(path)["rng"])
    second = (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3))
    assert first[:3] == second[:3] and torch.equal(first[3], second[3])
