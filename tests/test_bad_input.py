"""Bad input to the papers' command lines: each case exits 2 with one stderr line naming the cause (and the
file), leaves a good output file untouched, and never runs a pickled payload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vlcore.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _fails(capsys, main, argv, *needles: str) -> str:
    """Run an entry point in-process; assert exit 2 and one stderr line holding every needle."""
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert str(n).lower() in err.lower(), (n, err)
    return err


class _Payload:
    """Unpickling this runs `open(marker, 'w')`: a stand-in for arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_ckpt(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(1)}, "evil": _Payload(str(marker))}, path)
    return path


def _truncated(path: Path) -> Path:
    good = path.with_suffix(".full")
    save_file({"w": torch.randn(64, 64)}, str(good))
    path.write_bytes(good.read_bytes()[:200])
    return path


def _good_out(path: Path) -> bytes:
    save_file({"keep": torch.arange(4.0)}, str(path))
    return path.read_bytes()


# --------------------------------------------------------------------------- config
CONFIG_PAPERS = [("lda", "cifar10_lt_smoke"), ("magneto", "gpt_tiny")]


@pytest.mark.unit
@pytest.mark.parametrize("paper,preset", CONFIG_PAPERS)
def test_train_unknown_config_key(capsys, paper, preset):
    torch.manual_seed(0)
    main = __import__(f"{paper}.train", fromlist=["main"]).main
    _fails(capsys, main, ["--config", preset, "--set", "no_such_key=1"], "no_such_key")


@pytest.mark.unit
@pytest.mark.parametrize("paper,preset", CONFIG_PAPERS)
def test_eval_missing_checkpoint(capsys, tmp_path, paper, preset):
    main = __import__(f"{paper}.eval", fromlist=["main"]).main
    _fails(capsys, main, ["--config", preset, "--checkpoint", tmp_path / "gone.safetensors"], "gone.safetensors")


@pytest.mark.unit
def test_train_unknown_key_in_yaml(capsys, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("made_up_section:\n  x: 1\n")
    from lda.train import main
    _fails(capsys, main, ["--config", cfg], "made_up_section")


@pytest.mark.unit
def test_train_missing_config_file(capsys, tmp_path):
    from magneto.train import main
    _fails(capsys, main, ["--config", tmp_path / "absent.yaml"], "absent")


@pytest.mark.unit
def test_config_non_utf8_yaml(capsys, tmp_path):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("seed: 1  # caf\xe9\n".encode("latin-1"))
    from lda.train import main
    _fails(capsys, main, ["--config", cfg], "latin1.yaml")


# --------------------------------------------------------------------------- checkpoints
def _convert_argv(paper: str, src: Path, out: Path) -> list:
    return {
        "lda": ["--src", src, "--model", "lda_resnet32_cifar10_lt", "--out", out],
        "magneto": ["--src", src, "--kind", "decoder_lm", "--out", out],
        "beit2": ["--input", src, "--output", out],
        "g2sd": ["cls", src, out],
    }[paper]


CONVERTERS = ["lda", "magneto", "beit2", "g2sd"]


@pytest.mark.unit
@pytest.mark.parametrize("paper", CONVERTERS)
def test_convert_pickle_payload_never_runs(capsys, tmp_path, paper):
    marker = tmp_path / "PWNED"
    src = _pickle_ckpt(tmp_path / "evil.pth", marker)
    out = tmp_path / "out.safetensors"
    good = _good_out(out)
    main = __import__(f"{paper}.convert", fromlist=["main"]).main
    _fails(capsys, main, _convert_argv(paper, src, out), "evil.pth")
    assert not marker.exists()
    assert out.read_bytes() == good


@pytest.mark.unit
@pytest.mark.parametrize("paper", CONVERTERS)
def test_convert_truncated_safetensors(capsys, tmp_path, paper):
    src = _truncated(tmp_path / "cut.safetensors")
    out = tmp_path / "out.safetensors"
    good = _good_out(out)
    main = __import__(f"{paper}.convert", fromlist=["main"]).main
    _fails(capsys, main, _convert_argv(paper, src, out), "cut.safetensors")
    assert out.read_bytes() == good


@pytest.mark.unit
@pytest.mark.parametrize("paper", CONVERTERS)
def test_convert_wrong_model_checkpoint(capsys, tmp_path, paper):
    src = tmp_path / "other.safetensors"
    save_file({"totally.unrelated.weight": torch.randn(3, 3)}, str(src))
    out = tmp_path / "out.safetensors"
    good = _good_out(out)
    main = __import__(f"{paper}.convert", fromlist=["main"]).main
    _fails(capsys, main, _convert_argv(paper, src, out))
    assert out.read_bytes() == good


CONVERTER_ARGV_MORE = {
    "imted": lambda src, out: ["mae", src, out, "--config", IMTED_SMOKE],
    "conformer": lambda src, out: ["--src", src, "--dst", out],
    "beit3": lambda src, out: ["--src", src, "--out", out],
    "kosmos2": lambda src, out: ["--official", src, "--out", out],
}
IMTED_SMOKE = "imted_faster-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py"


@pytest.mark.unit
@pytest.mark.parametrize("paper", sorted(CONVERTER_ARGV_MORE))
@pytest.mark.parametrize("kind", ["pickle", "truncated", "wrong_model"])
def test_convert_bad_checkpoint_more_papers(capsys, tmp_path, paper, kind):
    marker = tmp_path / "PWNED"
    if kind == "pickle":
        src = _pickle_ckpt(tmp_path / "evil.pth", marker)
    elif kind == "truncated":
        src = _truncated(tmp_path / "cut.safetensors")
    else:
        src = tmp_path / "other.safetensors"
        save_file({"totally.unrelated.weight": torch.randn(3, 3)}, str(src))
    out = tmp_path / "out.safetensors"
    good = _good_out(out)
    main = __import__(f"{paper}.convert", fromlist=["main"]).main
    _fails(capsys, main, CONVERTER_ARGV_MORE[paper](src, out), src.name)
    assert not marker.exists()
    assert out.read_bytes() == good


# --------------------------------------------------------------------------- config keys and types
TRAIN_PRESETS = [("beit2", "smoke_finetune", "train.bogus"), ("g2sd", "smoke_sd_cifar10", "model.bogus"),
                 ("conformer", "smoke", "data.bogus"), ("beit3", "smoke_vqa", "train.bogus"),
                 ("maskdistill", "smoke_pretrain", "train.bogus"), ("kosmos2", "smoke_pretrain", "train.bogus"),
                 ("kosmos_g", "smoke_align", "bogus")]


@pytest.mark.unit
@pytest.mark.parametrize("paper,preset,key", TRAIN_PRESETS)
def test_train_unknown_key_more_papers(capsys, paper, preset, key):
    main = __import__(f"{paper}.train", fromlist=["main"]).main
    _fails(capsys, main, ["--config", preset, "--set", f"{key}=1"], key)


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["pickle", "truncated", "wrong_model"])
def test_kosmos_g_init_checkpoint_refused_before_the_run_folder(capsys, tmp_path, kind):
    from kosmos_g.train import main
    marker = tmp_path / "PWNED"
    if kind == "pickle":
        src = _pickle_ckpt(tmp_path / "evil.pt", marker)
    elif kind == "truncated":
        src = _truncated(tmp_path / "cut.pt")
    else:  # a training state of another model: plain data, but not a kosmos_g stage checkpoint
        src = tmp_path / "other.pt"
        torch.save({"step": 3, "optimizer": {}}, src)
    run = tmp_path / "run"
    _fails(capsys, main, ["--config", "smoke_instruct", "--set", f"init={src}", "--set", f"out_dir={run}"], src.name)
    assert not marker.exists()
    assert not run.exists()


@pytest.mark.unit
def test_train_wrong_value_type(capsys):
    from magneto.train import main
    _fails(capsys, main, ["--config", "gpt_tiny", "--set", "model.depth=two"], "model.depth", "int")


@pytest.mark.unit
@pytest.mark.parametrize("sets,needles", [
    (["train_cfg.maxiters=2"], ["train_cfg.maxiters", "unknown key"]),
    (["train_cfg.max_iters=abc"], ["train_cfg.max_iters", "expects int"]),
])
def test_mmengine_plugin_refuses_bad_overrides(capsys, tmp_path, sets, needles):
    from imted.train import main
    argv = ["--config", IMTED_SMOKE, "--work-dir", tmp_path / "run"]
    for s in sets:
        argv += ["--set", s]
    _fails(capsys, main, argv, *needles)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- data
def _image_folder(root: Path, *, broken: bool = False, empty: bool = False) -> Path:
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        if not empty:
            Image.new("RGB", (40, 40), (10, 20, 30)).save(root / c / "ok.jpg")
    if broken:
        (root / "a" / "broken.jpg").write_bytes((root / "b" / "ok.jpg").read_bytes()[:100])
    return root


def _beit2_folder_argv(root: Path, out: Path) -> list:
    sets = ["data.kind=image_folder", f"data.root={root}", "data.num_classes=2", "model.num_classes=2",
            "data.limit=null", "train.global_batch_size=3", "train.per_device_batch_size=3", f"train.out_dir={out}"]
    return ["--config", "smoke_finetune"] + [a for s in sets for a in ("--set", s)]


@pytest.mark.unit
@pytest.mark.parametrize("case,needles", [
    ("missing", ["image folder not found", "nope"]),
    ("no_classes", ["no class folders", "empty"]),
    ("no_images", ["no images", "noimg"]),
    ("corrupt", ["corrupt", "broken.jpg"]),
])
def test_beit2_train_bad_image_folder(capsys, tmp_path, case, needles):
    from beit2.train import main
    root = {"missing": lambda: tmp_path / "nope",
            "no_classes": lambda: (tmp_path / "empty").mkdir() or tmp_path / "empty",
            "no_images": lambda: _image_folder(tmp_path / "noimg", empty=True),
            "corrupt": lambda: _image_folder(tmp_path / "imgs", broken=True)}[case]()
    out = tmp_path / "run"
    _fails(capsys, main, _beit2_folder_argv(root, out), *needles)
    assert not (out / "ckpt").exists()


@pytest.mark.unit
def test_missing_data_folders(capsys, tmp_path):
    from conformer.train import main as conformer_train
    from magneto.train import main as magneto_train
    _fails(capsys, conformer_train, ["--config", "smoke", "--set", "data.dataset=imagenet",
                                     "--set", f"data.root={tmp_path / 'nope'}"], "nope", "not found")
    out = tmp_path / "lm_run"
    _fails(capsys, magneto_train, ["--config", "gpt_tiny", "--set", f"data.root={tmp_path / 'nope'}",
                                   "--set", f"train.out_dir={out}"], "nope", "not found")
    assert not out.exists()


def _cifar_with_bad_label(root: Path) -> Path:
    from vlcore.data.paths import shared_data_root

    src = shared_data_root() / "cifar10" / "cifar10_subset.npz"
    if not src.is_file():
        pytest.skip("shared CIFAR-10 subset not available")
    z = np.load(src)
    arrays = {k: z[k] for k in z.files}
    arrays["y_train"] = arrays["y_train"].copy()
    arrays["y_train"][5] = 12
    (root / "cifar10").mkdir(parents=True)
    np.savez(root / "cifar10" / "cifar10_subset.npz", **arrays)
    return root


@pytest.mark.unit
@pytest.mark.parametrize("paper,preset", [("conformer", "smoke"), ("beit2", "smoke_finetune")])
def test_out_of_range_labels(capsys, tmp_path, paper, preset):
    root = _cifar_with_bad_label(tmp_path / "data")
    main = __import__(f"{paper}.train", fromlist=["main"]).main
    _fails(capsys, main, ["--config", preset, "--set", f"data.root={root}", "--set", f"train.out_dir={tmp_path / 'run'}"],
           "cifar10_subset.npz", "outside [0, 10)", "12")


@pytest.mark.unit
def test_non_utf8_text_corpus(capsys, tmp_path):
    from magneto.train import main
    corpus = tmp_path / "data" / "text_tinyshakespeare"
    corpus.mkdir(parents=True)
    (corpus / "input.txt").write_bytes(("First Citizen:\nCaf\xe9 " * 500).encode("latin-1"))
    _fails(capsys, main, ["--config", "gpt_tiny", "--set", f"data.root={tmp_path / 'data'}",
                          "--set", f"train.out_dir={tmp_path / 'run'}"], "input.txt", "utf-8")


def _coco_variant(tmp_path: Path, name: str, edit) -> Path:
    from vlcore.data.paths import shared_data_root

    src = shared_data_root() / "coco_mini" / "annotations" / "instances_train2017.json"
    if not src.is_file():
        pytest.skip("coco_mini not available")
    data = json.loads(src.read_text())
    edit(data["annotations"])
    out = tmp_path / name
    out.write_text(json.dumps(data))
    return out


def _set_box(anns):
    anns[3]["bbox"] = [10, 10, -5, 20]


def _set_category(anns):
    anns[2]["category_id"] = 999


@pytest.mark.unit
@pytest.mark.parametrize("name,edit,needle", [("bad_box.json", _set_box, "non-positive width"),
                                              ("bad_cat.json", _set_category, "unknown category_id 999")])
def test_coco_json_invalid_annotations(capsys, tmp_path, name, edit, needle):
    from imted.train import main
    ann = _coco_variant(tmp_path, name, edit)
    _fails(capsys, main, ["--config", IMTED_SMOKE, "--work-dir", tmp_path / "run",
                          "--set", f"train_dataloader.dataset.ann_file={ann}"], name, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.unit
def test_mmengine_plugin_missing_data_root(capsys, tmp_path):
    from imted.train import main
    _fails(capsys, main, ["--config", IMTED_SMOKE, "--work-dir", tmp_path / "run",
                          "--set", f"train_dataloader.dataset.data_root={tmp_path / 'nope'}"], "data_root", "nope")


# --------------------------------------------------------------------------- position tables
@pytest.mark.smoke
def test_beit2_eval_refuses_other_grid_unless_asked(capsys, tmp_path):
    from beit2.eval import main as evaluate
    from beit2.train import main as train
    with pytest.raises(SystemExit) as exc:
        run_cli(train, ["--config", "smoke_finetune", "--set", f"train.out_dir={tmp_path / 'ft'}"])
    assert exc.value.code == 0
    capsys.readouterr()
    bigger = ["--config", "smoke_finetune", "--checkpoint", str(tmp_path / "ft"),
              "--set", "model.img_size=64", "--set", "data.input_size=64"]
    _fails(capsys, evaluate, bigger, "model.safetensors", "4x4 patch grid", "8x8", "--resize-pos-embed")
    with pytest.raises(SystemExit) as exc:
        run_cli(evaluate, bigger + ["--resize-pos-embed"])
    assert exc.value.code == 0
    assert '"top1"' in capsys.readouterr().out


@pytest.mark.unit
def test_g2sd_classifier_pos_embed_mismatch(tmp_path):
    from vlcore.errors import UserError

    from g2sd.config import ArchConfig
    from g2sd.engine.stages import build_vit, load_classifier

    arch = ArchConfig(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    small = build_vit(arch, 10, distilled=True)
    big = build_vit(ArchConfig(img_size=64, patch_size=8, embed_dim=32, depth=1, num_heads=2), 10, distilled=True)
    prefix = small.pos_embed.shape[1] - small.patch_embed.num_patches
    with pytest.raises(UserError, match=rf"small.safetensors: pos_embed \(1, {16 + prefix}, 32\).*--resize-pos-embed"):
        load_classifier(big, small.state_dict(), name="small.safetensors")
    load_classifier(big, small.state_dict(), resize_pos_embed=True)
    # The prefix rows (class token) are kept; the grid rows are resampled to 8 x 8.
    assert big.pos_embed.shape[1] == 64 + prefix
    assert torch.equal(big.pos_embed[:, :prefix], small.pos_embed[:, :prefix])
    assert big(torch.randn(1, 3, 64, 64))[0].shape[-1] == 10


# --------------------------------------------------------------------------- other entry points
@pytest.mark.unit
def test_report_unknown_paper(capsys, tmp_path):
    from vlcore.report import main
    _fails(capsys, main, ["--papers", "nosuch", "--out", tmp_path / "res"], "nosuch")
    assert not (tmp_path / "res").exists()


@pytest.mark.unit
def test_verify_unknown_checkpoint_name(capsys, tmp_path):
    from beit2.verify import main
    _fails(capsys, main, ["--checkpoint", "no_such_ckpt", "--data", tmp_path], "no_such_ckpt", "RESULTS.yaml")


@pytest.mark.unit
def test_verify_missing_data_folder(capsys, tmp_path):
    from g2sd.verify import main
    src = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(1)}, str(src))
    _fails(capsys, main, ["--checkpoint", src, "--data", tmp_path / "nope"], "nope")
