"""Typed configs: frozen dataclasses, YAML presets that hold only the differences, `--set a.b=v` overrides.

    @dataclass(frozen=True)
    class Cfg:
        train: TrainConfig = field(default_factory=TrainConfig)
        model: str = "beit_base_patch16_224"

    cfg = load_config(Cfg, "configs/pretrain_tiny.yaml", ["train.blr=1.5e-4", "train.betas=[0.9,0.98]"])

A preset may start with `_base_: other.yaml` (or a list), resolved relative to the
preset; later files and then `--set` overrides win. Every value is checked
against the annotation of its field (int, float, bool, str, Optional, Literal,
tuple / list / dict of those, nested dataclasses). Unknown keys and wrong types
raise `ConfigError` with one line naming the key and where it came from; values
are never evaluated, only parsed by `yaml.safe_load`.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar, Union

import yaml

from vlcore.errors import UserError

T = TypeVar("T")
_MISSING = object()


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the config's schema."""


# --- schema walking ---------------------------------------------------------


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _hints(cls: type) -> dict[str, Any]:
    # Resolves string annotations (`from __future__ import annotations`).
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)) and len(args) == 1:
            return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _where(key: str, source: str) -> str:
    return f"{source}: key '{key}'" if source else f"key '{key}'"


def _suggest(word: str, options: Sequence[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check `value` against annotation `tp`; return it in canonical form (tuples for tuples)."""

    def fail(expected: str) -> ConfigError:
        got = "null" if value is None else f"{type(value).__name__} {value!r}"
        if len(got) > 80:
            got = got[:77] + "..."
        return ConfigError(f"{_where(key, source)} expects {expected}, got {got}")

    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise fail("null")
    inner, optional = _strip_optional(tp)
    if optional:
        return None if value is None else _coerce(inner, value, key, source)
    if value is None:
        raise fail(_type_name(tp))

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        choices = ", ".join(repr(a) for a in args)
        hint = _suggest(str(value), [str(a) for a in args]) if isinstance(value, str) else ""
        raise ConfigError(f"{_where(key, source)} must be one of {choices}, got {value!r}{hint}")

    if origin in (Union, types.UnionType):
        for a in args:
            try:
                return _coerce(a, value, key, source)
            except ConfigError:
                continue
        raise fail(_type_name(tp))

    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise fail(f"a mapping of {tp.__name__} fields")
        return _coerce_partial(tp, value, key, source)

    if origin in (tuple, list, collections.abc.Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise fail(_type_name(tp))
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise fail(f"{len(args)} items ({_type_name(tp)})")
            items = [_coerce(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_tp = args[0] if args else Any
            items = [_coerce(item_tp, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return list(items) if origin is list or tp is list else tuple(items)

    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise fail(_type_name(tp))
        k_tp, v_tp = args if args else (Any, Any)
        return {_coerce(k_tp, k, key, source): _coerce(v_tp, v, f"{key}.{k}", source) for k, v in value.items()}

    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail("bool (true/false)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail("int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads `1e-3` (no dot) as a string; accept any float literal.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise fail("float")
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail("str (quote it)")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise fail(tp.__name__)
    raise ConfigError(f"{_where(key, source)} has an annotation the config loader cannot check: {tp}")


def _coerce_partial(cls: type, data: dict, prefix: str, source: str) -> dict:
    """Check the keys present in `data` against dataclass `cls` (others keep their defaults)."""
    fields, hints = _fields(cls), _hints(cls)
    out = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            hint = _suggest(str(k), list(fields), prefix + "." if prefix else "")
            raise ConfigError(f"{source + ': ' if source else ''}unknown key '{key}'{hint}")
        out[k] = _coerce(hints[k], v, key, source)
    return out


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _MISSING


def _build(cls: type[T], data: dict, prefix: str = "", base: Any = None) -> T:
    """Instantiate `cls` from a checked partial dict over `base` (or the defaults)."""
    hints = _hints(cls)
    kwargs = {}
    for name, f in _fields(cls).items():
        key = f"{prefix}.{name}" if prefix else name
        current = getattr(base, name) if base is not None else _default(f)
        if name in data:
            value = data[name]
            tp, _ = _strip_optional(hints[name])
            if isinstance(value, dict) and _is_dataclass_type(tp):
                value = _build(tp, value, key, current if isinstance(current, tp) else None)
            kwargs[name] = value
        elif current is _MISSING:
            raise ConfigError(f"missing required key '{key}'")
        else:
            kwargs[name] = current
    return cls(**kwargs)


# --- reading ----------------------------------------------------------------


def _read_yaml(path: Path, cls: type, chain: tuple[Path, ...] = ()) -> dict:
    """Read `path` and its `_base_` files; each file is checked against the schema on its own."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: _base_ cycle: {' -> '.join(str(p) for p in chain + (path,))}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        why = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{path}:{line} is not valid YAML ({why})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    bases = raw.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: key '_base_' expects a file name or a list of file names")
    merged: dict = {}
    for b in bases:
        merged = _merge(merged, _read_yaml(path.parent / b, cls, chain + (path,)))
    return _merge(merged, _coerce_partial(cls, raw, "", str(path)))


def _parse_override(cls: type, item: str) -> dict:
    """`a.b=v` -> {'a': {'b': checked v}}; `v` is parsed with yaml.safe_load."""
    source = f"--set {item}"
    if "=" not in item:
        raise ConfigError(f"{source}: expected KEY=VALUE")
    dotted, text = item.split("=", 1)
    parts = dotted.strip().split(".")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text  # not YAML: keep the raw string, the type check decides
    node: Any = cls
    for i, part in enumerate(parts):
        key = ".".join(parts[: i + 1])
        tp, _ = _strip_optional(node)
        if not _is_dataclass_type(tp):
            raise ConfigError(f"{source}: unknown key '{key}' ('{'.'.join(parts[:i])}' has no sub-keys)")
        fields = _fields(tp)
        if part not in fields:
            parent = ".".join(parts[:i])
            hint = _suggest(part, list(fields), parent + "." if parent else "")
            raise ConfigError(f"{source}: unknown key '{key}'{hint}")
        node = _hints(tp)[part]
    checked = _coerce(node, value, dotted.strip(), source)
    for part in reversed(parts):
        checked = {part: checked}
    return checked


def find_preset(name_or_path: str | Path, config_dir: Path) -> Path:
    """A config file as given, else a preset of that name (with or without ``.yaml``) in ``config_dir``:
    papers' entry points find their presets from any working directory. An unknown name comes back
    unchanged so that :func:`load_config` reports the missing file."""
    p = Path(name_or_path)
    for cand in (p, config_dir / p, config_dir / f"{p}.yaml"):
        if cand.is_file():
            return cand
    return p


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of `cls`, then the YAML at `path` (with its `_base_` chain), then `overrides`."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"load_config expects a dataclass type, got {cls!r}")
    data: dict = {}
    if path is not None:
        data = _read_yaml(Path(path), cls)
    for item in overrides:
        data = _merge(data, _parse_override(cls, item))
    return _build(cls, data)


# --- writing ----------------------------------------------------------------


def config_to_dict(cfg: Any) -> Any:
    """Plain dict / list / scalar form of a config (tuples become lists), ready for YAML or JSON."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, float) and not math.isfinite(cfg):
        return str(cfg)
    return cfg


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (loads back with `load_config` to an equal config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--config PATH` and repeatable `--set KEY=VALUE` to an argparse parser."""
    parser.add_argument("--config", default=None, metavar="PATH", help="YAML preset (may name a _base_)")
    parser.add_argument(
        "--set", dest="set", action="append", default=[], metavar="KEY=VALUE",
        help="override one value, e.g. --set train.blr=1.5e-4 (repeatable; VALUE is parsed as YAML)",
    )
    return parser


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """`load_config` from the arguments added by `add_config_args`."""
    return load_config(cls, args.config, args.set)
