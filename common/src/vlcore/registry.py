"""A per-paper registry of model configurations with their paper parameter counts.

Every paper package keeps one `ModelRegistry`; `python -m <paper>.models` lists it.
Parameters are counted on the meta device, so listing a 1.6 B-parameter model
allocates no memory and takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    paper_params_m: float | None = None  # the paper's table, millions of parameters
    paper_source: str = ""  # where the number comes from, e.g. "BEiT v2 Table 1"
    tolerance: float = 0.005  # relative; papers round to 0.1 M or 1 M
    description: str = ""
    count_filter: Callable[[str], bool] | None = None  # which parameters the paper counts

    def build(self, **kwargs) -> nn.Module:
        return self.builder(**kwargs)

    def count_params(self) -> int:
        with torch.device("meta"):
            model = self.builder()
        return count_parameters(model, self.count_filter)


def count_parameters(model: nn.Module, keep: Callable[[str], bool] | None = None) -> int:
    # Shared (tied) parameters are counted once, as `sum(p.numel())` over
    # `model.parameters()` does.
    return sum(p.numel() for n, p in model.named_parameters() if keep is None or keep(n))


class ModelRegistry:
    def __init__(self, paper: str):
        self.paper = paper
        self._entries: dict[str, ModelEntry] = {}

    def register(
        self,
        name: str | None = None,
        *,
        paper_params_m: float | None = None,
        paper_source: str = "",
        tolerance: float = 0.005,
        description: str = "",
        count_filter: Callable[[str], bool] | None = None,
    ):
        """Decorator registering a zero-argument-capable builder under `name`."""

        def deco(fn: Callable[..., nn.Module]):
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.paper}: model '{key}' registered twice")
            self._entries[key] = ModelEntry(
                key, fn, paper_params_m, paper_source, tolerance, description or (fn.__doc__ or "").strip().split("\n")[0], count_filter
            )
            return fn

        return deco

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> ModelEntry:
        if name not in self._entries:
            import difflib

            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise KeyError(f"{self.paper}: unknown model '{name}'{hint}; known: {', '.join(self._entries) or 'none'}")
        return self._entries[name]

    def build(self, name: str, **kwargs) -> nn.Module:
        return self.get(name).build(**kwargs)

    def table(self) -> list[dict]:
        rows = []
        for e in self:
            n = e.count_params()
            row = {
                "name": e.name,
                "params": n,
                "params_m": round(n / 1e6, 2),
                "paper_params_m": e.paper_params_m,
                "paper_source": e.paper_source,
                "description": e.description,
            }
            if e.paper_params_m is not None:
                row["rel_diff"] = round(n / 1e6 / e.paper_params_m - 1.0, 5)
                row["matches_paper"] = abs(row["rel_diff"]) <= e.tolerance
            rows.append(row)
        return rows
