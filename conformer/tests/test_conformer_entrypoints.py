"""Entry points: models --json, train / eval on the smoke preset, verify on a local checkpoint, bad input."""

import json

import pytest
import torch

from vlcore.cli import run_cli

from conformer.testing import one_torch_thread, randomize_, shared_data, tiny_conformer  # noqa: F401


@pytest.mark.smoke
def test_models_json_lists_paper_sizes_and_macs(capsys):
    from conformer.models.__main__ import main

    names = ["conformer_tiny_patch16_224", "conformer_small_patch16_224", "conformer_base_patch16_224"]
    assert main(["--json", *(f"--name={n}" for n in names)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name, (params, macs) in {"conformer_tiny_patch16_224": (23.5, 5.2), "conformer_small_patch16_224": (37.7, 10.6),
                                 "conformer_base_patch16_224": (83.3, 23.3)}.items():
        r = rows[name]
        assert r["paper_params_m"] == params and r["matches_paper"]
        assert r["paper_macs_g"] == macs and r["macs_match_paper"] and abs(r["macs_rel_diff"]) <= 0.01


@pytest.mark.smoke
def test_train_then_eval_on_the_smoke_preset(tmp_path, shared_data, capsys):
    from conformer import eval as eval_entry
    from conformer import train

    out = tmp_path / "run"
    assert train.main(["--config", "smoke", "--set", f"train.out_dir={out}", "--set", f"data.root={shared_data}"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 2 and res["model"] == "conformer_micro_patch16_32"
    for key in ("eval", "eval_ema"):
        assert {"acc1", "acc5", "acc1_conv", "acc1_trans"} <= set(res[key])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor([r["loss"], r["loss_conv"], r["loss_trans"]])).all() for r in rows)
    capsys.readouterr()
    assert eval_entry.main(["--config", "smoke", "--checkpoint", str(out), "--set", f"data.root={shared_data}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["acc1"] == pytest.approx(res["eval"]["acc1"], abs=1e-3)


@pytest.mark.smoke
def test_verify_evaluates_a_local_official_checkpoint(tmp_path, capsys):
    from PIL import Image

    from conformer import verify

    for c in range(2):
        folder = tmp_path / "imagenet" / "val" / f"n0{c}"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (80, 64), (40 * c + 20 * i, 90, 160)).save(folder / f"{i}.JPEG")
    model = randomize_(tiny_conformer(num_classes=2, num_heads=1))
    torch.save({"model": model.state_dict(), "epoch": 0}, tmp_path / "Conformer_tiny.pth")
    assert verify.main(["--checkpoint", str(tmp_path / "Conformer_tiny.pth"), "--data", str(tmp_path / "imagenet"),
                        "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "Conformer_tiny.pth" in out and "no expected value recorded" in out
    value = float(out.split("= ")[1].split()[0])
    assert abs(value * 3 / 100 - round(value * 3 / 100)) < 1e-4  # a fraction of the 3 images
    from vlcore.verify import load_results

    headlines = load_results(verify.RESULTS)
    assert {h.paper_value for h in headlines if h.id.startswith("imagenet")} == {81.3, 83.4, 84.1}


@pytest.mark.unit
def test_bad_input_exits_2_with_one_line(capsys, tmp_path):
    from conformer import train

    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--config", "smoke", "--set", "model.drop_pth_rate=0.1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.drop_pth_rate" in err and "drop_path_rate" in err
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--config", "no_such_preset"])
    assert e.value.code == 2 and "config not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--config", "smoke", "--set", f"data.root={tmp_path}"])
    assert e.value.code == 2 and "cifar10" in capsys.readouterr().err
