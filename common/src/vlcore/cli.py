"""Helpers shared by every paper's entry points (`python -m <paper>.<entry>`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

from vlcore.errors import UserError


def _is_user_error(e: BaseException) -> bool:
    # Every vlcore error about bad input derives from UserError; a diverged run
    # (NonFiniteLossError) is reported the same way. Checked by name for the
    # latter so a config typo never pays for importing the training engine.
    return isinstance(e, (UserError, FileNotFoundError)) or type(e).__name__ == "NonFiniteLossError"


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run `main(argv)` and exit with its code; bad input exits 2 with one line.

    Set VLREPRO_DEBUG=1 to see the full traceback of a user error.
    """
    try:
        code = main(argv)
    except Exception as e:
        if os.environ.get("VLREPRO_DEBUG") or not _is_user_error(e):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, FileNotFoundError) and getattr(e, "filename", None) and e.filename not in msg:
            msg = f"{msg}: {e.filename}"
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))


def models_main(registry, argv: Sequence[str] | None = None) -> int:
    """`python -m <paper>.models [--json] [--name NAME]`: every configuration and its size."""
    p = argparse.ArgumentParser(prog=f"python -m {registry.paper}.models", description=models_main.__doc__)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--name", action="append", default=[], help="only these configurations (repeatable)")
    args = p.parse_args(argv)
    for n in args.name:
        registry.get(n)  # unknown names fail with a suggestion
    rows = [r for r in registry.table() if not args.name or r["name"] in args.name]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"{registry.paper}: no model configurations registered")
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}}  {'params (M)':>11}  {'paper (M)':>10}  {'diff':>8}  source")
    for r in rows:
        paper = f"{r['paper_params_m']:.1f}" if r["paper_params_m"] is not None else "-"
        diff = f"{100 * r['rel_diff']:+.2f}%" if "rel_diff" in r else "-"
        print(f"{r['name']:<{w}}  {r['params_m']:>11.2f}  {paper:>10}  {diff:>8}  {r['paper_source']}")
    return 0
