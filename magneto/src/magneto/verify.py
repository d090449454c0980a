"""`python -m magneto.verify --checkpoint RUN_OR_WEIGHTS --data ROOT [--limit N]`.

Magneto released no checkpoint of its experiments (see magneto/RESULTS.yaml), so this
evaluates checkpoints of ``python -m magneto.train`` runs: the run's own config.yaml
(next to ``ckpt/``) says the task and data; ``--data`` is the data root; the fixed subset
is the first ``--limit`` validation batches in order (default: the config's eval_batches).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.verify import Headline, verify_main

RESULTS = Path(__file__).resolve().parents[2] / "RESULTS.yaml"


def evaluate(entry: Headline | None, path: Path, data: Path, limit: int | None) -> float:
    """Validation loss of a magneto run's checkpoint on its config's data under ``data``."""
    from vlcore.checkpoint import load_state_dict_strict, load_weights
    from vlcore.config import load_config
    from magneto.config import MagnetoConfig
    from magneto.eval import weights_file
    from magneto.tasks import build_data, build_model, evaluate as run_eval

    weights, run = weights_file(path)
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        raise UserError(f"{cfg_file} not found: verify needs a checkpoint inside a magneto.train run folder")
    overrides = [f"data.root={data}"]
    if (run / "spm.model").is_file():
        overrides.append(f"data.spm_model={run / 'spm.model'}")
    cfg = load_config(MagnetoConfig, cfg_file, overrides)
    task_data = build_data(cfg, run)
    model = build_model(cfg, task_data)
    load_state_dict_strict(model, load_weights(weights), source=str(weights))
    metrics = run_eval(cfg, model, task_data, batches=limit)
    print({k: round(v, 4) for k, v in metrics.items()})
    return metrics["loss"]


def main(argv: Sequence[str] | None = None) -> int:
    return verify_main("magneto", RESULTS, evaluate, argv)


if __name__ == "__main__":
    run_cli(main)
