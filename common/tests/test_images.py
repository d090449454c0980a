"""Image decoding, data-root resolution and missing-data errors."""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from vlcore.data.images import CorruptImageError, load_image, load_label_map, load_rgb, to_tensor
from vlcore.data.paths import (
    ENV_VAR,
    DataNotFoundError,
    repo_root,
    require_dir,
    require_file,
    shared_data_root,
)
from vlcore.errors import UserError


def _jpeg_bytes(h: int = 48, w: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_bytes(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.unit
@pytest.mark.parametrize("truncated_flag", [False, True])
def test_truncated_jpeg_raises_naming_the_file(tmp_path, monkeypatch, truncated_flag):
    # Other code often switches this global on; it must not let a truncated file through.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", truncated_flag)
    raw = _jpeg_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptImageError) as e:
        load_image(path)
    assert str(path) in str(e.value)
    assert isinstance(e.value, UserError)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is truncated_flag  # restored


@pytest.mark.unit
def test_truncated_png_and_non_image_raise(tmp_path):
    png = _png_bytes(np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8), "L")
    cut = tmp_path / "cut.png"
    cut.write_bytes(png[: len(png) - 40])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    for p in (cut, text):
        with pytest.raises(CorruptImageError, match=p.name):
            load_image(p)


@pytest.mark.unit
def test_missing_image_is_data_not_found(tmp_path):
    p = tmp_path / "nope.jpg"
    with pytest.raises(DataNotFoundError) as e:
        load_rgb(p)
    assert isinstance(e.value, FileNotFoundError) and str(p) in str(e.value)


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "RGB"])
def test_load_converts_to_rgb(tmp_path, mode):
    base = np.full((5, 7), 100, np.uint8)
    if mode == "L":
        im = Image.fromarray(base, mode="L")
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([base, base, base, np.full_like(base, 7)]), mode="RGBA")
    elif mode == "P":
        im = Image.fromarray(base, mode="L").convert("P")
    else:
        im = Image.fromarray(np.dstack([base] * 3), mode="RGB")
    p = tmp_path / f"x_{mode}.png"
    im.save(p)
    arr = load_rgb(p)
    assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8
    assert (arr == 100).all()


@pytest.mark.unit
def test_label_map_kept_exact_and_rgb_rejected(tmp_path):
    lab = np.random.default_rng(1).integers(0, 151, (9, 11)).astype(np.uint8)
    p = tmp_path / "lab.png"
    p.write_bytes(_png_bytes(lab, "L"))
    assert np.array_equal(load_label_map(p), lab)
    rgb = tmp_path / "rgb.png"
    Image.new("RGB", (4, 4)).save(rgb)
    with pytest.raises(CorruptImageError, match="single-channel"):
        load_label_map(rgb)


@pytest.mark.unit
def test_to_tensor_layout_and_scale():
    arr = np.zeros((3, 4, 3), np.uint8)
    arr[1, 2] = (255, 0, 51)
    t = to_tensor(arr)
    assert t.shape == (3, 3, 4) and t.dtype == torch.float32
    assert torch.allclose(t[:, 1, 2], torch.tensor([1.0, 0.0, 0.2]))
    assert to_tensor(arr, scale=False).dtype == torch.uint8


@pytest.mark.unit
def test_shared_data_root_does_not_depend_on_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    root = repo_root()
    assert (root / "common" / "src" / "vlcore" / "data" / "paths.py").is_file()
    assert shared_data_root() == (root.parent / "shared" / "data").resolve()


@pytest.mark.unit
def test_shared_data_root_precedence(tmp_path, monkeypatch):
    env_dir, arg_dir = tmp_path / "env", tmp_path / "arg"
    monkeypatch.setenv(ENV_VAR, str(env_dir))
    assert shared_data_root() == env_dir.resolve()
    assert shared_data_root(arg_dir) == arg_dir.resolve()


@pytest.mark.unit
def test_require_dir_and_file_messages(tmp_path):
    missing = tmp_path / "cifar10"
    with pytest.raises(DataNotFoundError) as e:
        require_dir(missing, "the CIFAR-10 subset")
    msg = str(e.value)
    assert str(missing) in msg and "the CIFAR-10 subset" in msg and "\n" not in msg
    assert e.value.filename == str(missing) and isinstance(e.value, FileNotFoundError)
    f = tmp_path / "a.txt"
    f.write_text("x")
    with pytest.raises(DataNotFoundError, match="is not a folder"):
        require_dir(f, "images")
    assert require_file(f, "text") == f
    with pytest.raises(DataNotFoundError, match="b.txt"):
        require_file(tmp_path / "b.txt", "text")


@pytest.mark.unit
def test_cli_reports_missing_data_in_one_line(tmp_path, capsys):
    from vlcore.cli import run_cli

    missing = tmp_path / "coco_mini"

    def main(argv):
        require_dir(missing, "coco_mini (images/, annotations/)")

    with pytest.raises(SystemExit) as e:
        run_cli(main, [])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(missing) in err and len(err.splitlines()) == 1
