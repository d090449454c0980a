"""Entry points: configs load and build, train / eval / convert / verify run and write their outputs,
bad input is one line and exit 2."""

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from vlcore.checkpoint import load_weights
from vlcore.cli import run_cli
from vlcore.config import ConfigError, load_config
from vlcore.data.paths import shared_data_root
from magneto import convert, eval as eval_mod, train, verify
from magneto.config import CONFIG_DIR, MagnetoConfig, ModelConfig, resolve_config_path
from magneto.models import REGISTRY

from magneto.testing import one_torch_thread  # noqa: F401  (autouse)

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.mark.config
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_builds_its_model(path):
    cfg = load_config(MagnetoConfig, path)
    text = path.read_text()
    assert "python -m magneto.train --config" in text and "Expected" in text  # header: command + outcome
    with torch.device("meta"):
        model = REGISTRY.build(cfg.model.name, **cfg.model.build_kwargs())
    assert model.norm_kind == cfg.model.resolved_norm()
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.config
def test_contradictory_model_settings_are_config_errors():
    with pytest.raises(ConfigError, match="exclude each other"):
        ModelConfig(subln=True, deepnorm=True)
    with pytest.raises(ConfigError, match="torchscale flags"):
        ModelConfig(norm="pre", subln=True)
    with pytest.raises(ConfigError, match="'model.subln' is false"):
        ModelConfig(norm="subln", subln=False)
    with pytest.raises(ConfigError, match="magneto"):
        ModelConfig(norm="post", init="magneto")
    assert ModelConfig(deepnorm=True).resolved_norm() == "deepnorm"
    assert ModelConfig(subln=True).resolved_norm() == "subln"
    with pytest.raises(ConfigError, match="sentencepiece"):
        load_config(MagnetoConfig, None, ["task=mlm"])
    with pytest.raises(ConfigError, match="did you mean 'model.norm'"):
        load_config(MagnetoConfig, None, ["model.nrom=pre"])


@pytest.mark.smoke
def test_bad_input_exits_2_with_one_line(capsys):
    for argv in (
        ["--config", "gpt_tiny", "--set", "model.subln=true", "--set", "model.deepnorm=true"],
        ["--config", "no_such_preset"],
    ):
        with pytest.raises(SystemExit) as e:
            run_cli(train.main, argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")


def _train(tmp_path: Path, preset: str, *extra: str) -> dict:
    out = tmp_path / preset
    argv = ["--config", preset, "--set", f"train.out_dir={out}", "--set", "train.total_steps=2",
            "--set", "train.log_interval=1", "--set", "data.eval_batches=2", *extra]
    assert train.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["final_step"] == 2 and (out / "config.yaml").is_file() and (out / "metrics.jsonl").is_file()
    assert all(v == v for v in result["val"].values())  # finite, not NaN
    return result


@pytest.mark.smoke
def test_train_eval_verify_causal_lm(tmp_path, capsys):
    r = _train(tmp_path, "gpt_tiny", "--set", "train.global_batch_size=4", "--set", "train.per_device_batch_size=4")
    assert r["norm"] == "subln" and r["val"]["loss"] < 5.0
    run = tmp_path / "gpt_tiny"
    capsys.readouterr()
    assert eval_mod.main(["--config", str(run / "config.yaml"), "--checkpoint", str(run), "--batches", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["val"]["loss"] == pytest.approx(r["val"]["loss"], rel=1e-5)
    assert verify.main(["--checkpoint", str(run), "--data", str(shared_data_root()), "--limit", "2"]) == 0
    assert "loss" in capsys.readouterr().out


@pytest.mark.smoke
def test_train_masked_lm_seq2seq_and_vit(tmp_path):
    spm = ["--set", "data.spm_vocab_size=300", "--set", "data.spm_max_sentences=2000",
           "--set", "train.global_batch_size=4", "--set", "train.per_device_batch_size=4"]
    r = _train(tmp_path, "bert_tiny", *spm)
    assert (tmp_path / "bert_tiny" / "spm.model").is_file() and 0.0 <= r["val"]["accuracy"] <= 1.0
    r = _train(tmp_path, "nmt_tiny", *spm)
    assert r["val"]["loss"] > 0
    r = _train(tmp_path, "vit_tiny_cifar10", "--set", "train.global_batch_size=8", "--set",
               "train.per_device_batch_size=8")
    assert 0.0 <= r["val"]["accuracy"] <= 1.0


@pytest.mark.convert
def test_convert_cli_from_a_torchscale_checkpoint(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchscale.architecture.config import DecoderConfig
        from torchscale.architecture.decoder import Decoder
        from torchscale.component.embedding import PositionalEmbedding, TextEmbedding
    torch.manual_seed(0)
    args = DecoderConfig(decoder_layers=2, decoder_embed_dim=32, decoder_attention_heads=4,
                         decoder_ffn_embed_dim=128, vocab_size=40, share_decoder_input_output_embed=True)
    ts = Decoder(args, embed_tokens=TextEmbedding(40, 32), embed_positions=PositionalEmbedding(20 + 2, 32)).eval()
    src = tmp_path / "checkpoint_best.pt"
    # fairseq layout: the weights under "model", prefixed by the decoder's attribute name
    torch.save({"model": {f"decoder.{k}": v for k, v in ts.state_dict().items()}}, src)
    out = tmp_path / "gpt.safetensors"
    argv = ["--src", str(src), "--kind", "decoder_lm", "--out", str(out), "--model", "magneto_gpt_tiny",
            "--num-heads", "4"]
    assert convert.main(argv) == 0
    model = REGISTRY.build("magneto_gpt_tiny", vocab_size=40, max_seq_len=20, depth=2, dim=32, num_heads=4).eval()
    model.load_state_dict(load_weights(out), strict=True)
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        assert (model(ids) - ts(ids)[0]).abs().max().item() < 1e-5
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # a layout that contradicts the keys is refused
        run_cli(convert.main, argv[:-4] + ["--norm", "deepnorm"])
    assert e.value.code == 2 and "contradicts" in capsys.readouterr().err


@pytest.mark.config
def test_config_paths_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("gpt_tiny") == CONFIG_DIR / "gpt_tiny.yaml"
    assert resolve_config_path("gpt_tiny.yaml") == CONFIG_DIR / "gpt_tiny.yaml"


@pytest.mark.smoke
def test_repro_runs_without_the_shared_data_on_generated_text(tmp_path):
    from magneto import repro

    corpus, kind = repro._corpus(str(tmp_path / "no_data_here"))
    assert kind == "generated" and corpus.vocab_size < 40
    r = repro.run_one("subln", repro.BASE_LR, 0, str(tmp_path / "no_data_here"), steps=3)
    assert r["steps_done"] == 3 and len(r["val_curve"]) == 2 and r["final_val"] < r["initial_val"] + 1.0
    assert r["gain"] == pytest.approx(math.sqrt(math.log(2 * repro.DEPTH)))
