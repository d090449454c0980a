"""`python -m conformer.models [--json] [--name NAME] [--no-macs]`: every configuration, its size and MACs.

The rows are vlcore's registry table (parameters, the paper's count, the relative
difference) plus multiply-accumulates at 224 x 224 counted by `conformer.models.count_macs`.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from vlcore.cli import run_cli

from conformer.models import REGISTRY, macs_table


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformer.models", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--name", action="append", default=[], help="only these configurations (repeatable)")
    p.add_argument("--no-macs", action="store_true", help="skip counting multiply-accumulates (a few seconds)")
    args = p.parse_args(argv)
    for n in args.name:
        REGISTRY.get(n)  # unknown names fail with a suggestion
    rows = [r for r in REGISTRY.table() if not args.name or r["name"] in args.name]
    if not args.no_macs:
        macs = {m["name"]: m for m in macs_table([r["name"] for r in rows])}
        for r in rows:
            r.update({k: v for k, v in macs[r["name"]].items() if k != "name"})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}}  {'params (M)':>10}  {'paper':>6}  {'diff':>7}  {'MACs':>12}  {'paper':>6}  {'diff':>7}")
    for r in rows:
        pp = f"{r['paper_params_m']:.1f}" if r["paper_params_m"] is not None else "-"
        pd = f"{100 * r['rel_diff']:+.2f}%" if "rel_diff" in r else "-"
        mg = "-"
        if "macs" in r:
            value = f"{r['macs'] / 1e9:.2f}G" if r["macs"] >= 1e8 else f"{r['macs'] / 1e6:.1f}M"
            mg = f"{value}@{r['mac_img_size']}"
        mp = f"{r['paper_macs_g']:.1f}" if r.get("paper_macs_g") is not None else "-"
        md = f"{100 * r['macs_rel_diff']:+.2f}%" if "macs_rel_diff" in r else "-"
        print(f"{r['name']:<{w}}  {r['params_m']:>10.2f}  {pp:>6}  {pd:>7}  {mg:>12}  {mp:>6}  {md:>7}")
    for source in dict.fromkeys(r["paper_source"] for r in rows):
        print(f"source: {source}")
    print("MACs: convolutions + linear layers + attention matmuls (torch FlopCounterMode / 2), one image")
    return 0


if __name__ == "__main__":
    run_cli(main)
