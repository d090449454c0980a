"""Deterministic fault injection, for the robustness tests of every training entry point.

``VLCORE_FAULT="train_step@7"`` makes the process SIGKILL itself the 7th time it passes
``fault_point("train_step")``; several points may be given, comma-separated
(``"train_step@3,checkpoint_write@1"``). Unset (every normal run) the check is one dict
lookup. The points placed in the project:

- ``train_step``: right after an optimizer update (weights changed, not yet checkpointed);
- ``checkpoint_write``: in the middle of writing a checkpoint (weights written, training
  state not yet, nothing committed).

SIGKILL rather than an exception: nothing (no ``finally``, no atexit, no buffered write)
gets a chance to tidy up, which is what a preempted or OOM-killed job looks like.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "VLCORE_FAULT"
POINTS = ("train_step", "checkpoint_write")

_hits: dict[str, int] = {}


def parse_spec(spec: str) -> dict[str, int]:
    """``"train_step@7,checkpoint_write@1"`` -> {"train_step": 7, "checkpoint_write": 1}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, count = part.partition("@")
        if not sep or name not in POINTS or not count.isdigit() or int(count) < 1:
            raise ValueError(f"{ENV_VAR}: bad entry {part!r}; expected POINT@N with POINT in {POINTS} and N >= 1")
        out[name] = int(count)
    return out


def fault_point(name: str) -> None:
    """Kill this process here if ``VLCORE_FAULT`` asks for it at this hit of ``name``."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if parse_spec(spec).get(name) == _hits[name]:
        os.kill(os.getpid(), signal.SIGKILL)
