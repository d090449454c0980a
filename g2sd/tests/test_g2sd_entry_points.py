"""Entry points: train / eval / repro / verify run end to end on tiny inputs; bad input is one line, exit 2."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from vlcore.checkpoint import save_weights
from vlcore.cli import run_cli

from g2sd import eval as g2sd_eval
from g2sd import repro, train, verify
from g2sd.engine.stages import build_mae_model, build_vit

CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10" / "cifar10_subset.npz"
needs_cifar = pytest.mark.skipif(not CIFAR.is_file(), reason="needs ../shared/data/cifar10")


@pytest.mark.smoke
@needs_cifar
def test_gd_then_sd_then_eval(tmp_path):
    cfg = train.load_g2sd_config("smoke_gd_cifar10")
    torch.manual_seed(0)
    mae = build_mae_model(cfg.teacher)
    mae_path = tmp_path / "mae_full.pth"  # official layout and container
    torch.save({"model": mae.state_dict(), "epoch": 1, "args": argparse.Namespace(norm_pix_loss=True)}, mae_path)
    gd_dir = tmp_path / "gd"
    assert train.main(["--config", "smoke_gd_cifar10", "--set", f"teacher_checkpoint={mae_path}",
                       "--set", f"train.out_dir={gd_dir}"]) == 0
    rows = [json.loads(line) for line in (gd_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("loss_decoder" in r for r in rows)  # 2 epochs x 2 steps of 32

    teacher = build_vit(cfg.teacher, 10)
    save_weights(teacher.state_dict(), tmp_path / "teacher.safetensors")
    sd_dir = tmp_path / "sd"
    assert train.main(["--config", "smoke_sd_cifar10", "--set", f"init_checkpoint={gd_dir}",
                       "--set", f"teacher_checkpoint={tmp_path / 'teacher.safetensors'}",
                       "--set", f"train.out_dir={sd_dir}"]) == 0
    top1 = json.loads((sd_dir / "eval.json").read_text())["top1"]
    assert 0.0 <= top1 <= 100.0
    out = tmp_path / "eval.json"
    assert g2sd_eval.main(["--config", "smoke_sd_cifar10", "--checkpoint", str(sd_dir), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["top1"] == pytest.approx(top1)
    # The GD loss of the trained student against its teacher, on fixed masks.
    assert g2sd_eval.main(["--config", "smoke_gd_cifar10", "--checkpoint", str(gd_dir),
                           "--set", f"teacher_checkpoint={mae_path}", "--out", str(out)]) == 0
    assert 0.0 < json.loads(out.read_text())["gd_loss"] < 10.0


@pytest.mark.smoke
@pytest.mark.parametrize("argv, message", [
    (["--config", "smoke_gd_cifar10", "--set", "model.dpeth=3"], "unknown key 'model.dpeth' (did you mean 'model.depth'?)"),
    (["--config", "no_such_preset"], "config file not found"),
    (["--config", "smoke_gd_cifar10", "--set", "gd.layer_index=x"], "gd.layer_index' expects int"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err


@pytest.mark.smoke
def test_gd_without_teacher_decoder_is_refused(tmp_path, capsys):
    cfg = train.load_g2sd_config("smoke_gd_cifar10")
    enc_only = {k: v for k, v in build_mae_model(cfg.teacher).state_dict().items() if not k.startswith(("decoder", "mask"))}
    path = tmp_path / "mae_pretrain.pth"
    torch.save({"model": enc_only}, path)
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--config", "smoke_gd_cifar10", "--set", f"teacher_checkpoint={path}",
                             "--set", f"train.out_dir={tmp_path / 'x'}"])
    assert e.value.code == 2 and "_full" in capsys.readouterr().err


@pytest.mark.smoke
@needs_cifar
def test_repro_smoke_writes_every_arm(tmp_path):
    rc = repro.main(["--config", "smoke", "--seeds", "2", "--workers", "1", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "g2sd.json").read_text())
    assert rc == (0 if r["holds"] else 1)
    assert set(r["arms"]) == {"A", "B", "C", "D"} and len(r["arms"]["D"]["per_seed"]) == 2
    assert r["min_margin"] == pytest.approx(2 * r["pooled_std"]) and "pooled" in r["criterion"]
    assert r["data"].startswith("real: CIFAR-10") and (tmp_path / "g2sd.png").stat().st_size > 1000


@pytest.mark.smoke
def test_verify_runs_a_named_checkpoint_on_an_image_folder(tmp_path, capsys):
    from PIL import Image

    from g2sd.models import REGISTRY

    for c in ("a", "b"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (64, 48), (40 * i, 100, 200)).save(tmp_path / "val" / c / f"{i}.jpg")
    torch.manual_seed(0)
    ckpt = tmp_path / "ViT_Ti_SD.pth"  # the file name of a RESULTS.yaml entry
    torch.save({"model": REGISTRY.build("g2sd_vit_tiny_patch16_224_dist").state_dict(),
                "args": argparse.Namespace(model="vit_tiny_patch16")}, ckpt)
    assert verify.main(["--checkpoint", str(ckpt), "--data", str(tmp_path), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "in1k_vit_tiny_g2sd: top-1 (%) = " in out and "no expected value recorded" in out
