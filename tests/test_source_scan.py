"""No code path may execute what a file contains: scan every project source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sources():
    for base in ["common", "tools", "tests", "magneto", "beit2", "maskdistill", "beit3", "g2sd", "imted", "lda",
                 "conformer", "kosmos2", "kosmos_g"]:
        for f in (ROOT / base).rglob("*.py"):
            if ".venv" not in f.parts:
                yield f


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        if name in ("torch.load",):
            wo = kw.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                bad.append((node.lineno, "torch.load without weights_only=True"))
        elif name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            bad.append((node.lineno, f"{name}()"))
        elif name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "marshal.loads", "shelve.open"):
            bad.append((node.lineno, f"{name}()"))
        elif name == "yaml.load" and "Loader" not in kw:
            bad.append((node.lineno, "yaml.load without a safe Loader"))
        elif name == "yaml.load" and "Safe" not in _dotted(kw["Loader"]):
            bad.append((node.lineno, "yaml.load with an unsafe Loader"))
    return bad


@pytest.mark.unit
def test_scanner_catches_each_pattern():
    src = "import torch, pickle, yaml\ntorch.load(f)\ntorch.load(f, weights_only=False)\neval('1')\npickle.loads(b)\nyaml.load(s, Loader=yaml.Loader)\ntorch.load(f, weights_only=True)\n"
    assert [line for line, _ in unsafe_calls(ast.parse(src))] == [2, 3, 4, 5, 6]


@pytest.mark.unit
def test_no_unsafe_deserialisation_or_eval_in_project_sources():
    found = []
    files = list(_sources())
    assert len(files) > 10
    for f in files:
        for line, what in unsafe_calls(ast.parse(f.read_text(), filename=str(f))):
            found.append(f"{f.relative_to(ROOT)}:{line}: {what}")
    assert not found, "\n".join(found)
