"""docs/training-path.md, the path of one training step from `roadmap run` to `optimizer.step()`, matches the code:
at most six files, each row's function defined in its file, each reached from a file before it, and the last one
stepping the optimizer. Read with `ast`: nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "training-path.md"
ROW = re.compile(r"^\| (\d+) \| `([^`]+)` \| `([^`]+)` \|")


def path_rows(text: str) -> list[tuple[str, str]]:
    """(file, function) of every numbered row of the doc's table, in order."""
    return [(m.group(2), m.group(3)) for line in text.splitlines() if (m := ROW.match(line))]


def _module(file: str) -> str:
    parts = Path(file).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defined(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _reaches(tree: ast.Module, name: str, module: str) -> bool:
    """Whether a file refers to `name` (a call, an import, a registration such as `set_defaults(func=name)`) or
    imports the module that defines it."""
    package, _, leaf = module.rpartition(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == name or isinstance(node, ast.Attribute) and node.attr == name:
            return True
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module == module and name in names or node.module == package and leaf in names:
                return True
        if isinstance(node, ast.Import) and any(a.name == module for a in node.names):
            return True
    return False


def check(rows: list[tuple[str, str]], root: Path = ROOT) -> list[str]:
    """What is wrong with a path of (file, function) rows, one line each (empty: the path is right)."""
    problems = []
    if not rows:
        return ["no path rows found"]
    if len(rows) > 6:
        problems.append(f"{len(rows)} files on the path; at most 6")
    trees = []
    for file, name in rows:
        source = root / file
        if not source.is_file():
            problems.append(f"{file} does not exist")
            trees.append(None)
            continue
        tree = ast.parse(source.read_text())
        trees.append(tree)
        if _defined(tree, name) is None:
            problems.append(f"{name} is not a function of {file}")
    for i, (file, name) in enumerate(rows[1:], start=1):
        if not any(t is not None and _reaches(t, name, _module(file)) for t in trees[:i]):
            problems.append(f"no file before {file} reaches {name}")
    last_file, last_name = rows[-1]
    last = trees[-1] and _defined(trees[-1], last_name)
    if last and ".step()" not in ast.unparse(last):
        problems.append(f"{last_name} in {last_file} does not step an optimizer")
    return problems


def test_the_documented_path_is_the_code():
    rows = path_rows(DOC.read_text())
    assert rows[0][0] == "roadmap/cli/__init__.py" and rows[-1] == ("runner/fitting/loop.py", "train_epoch")
    assert check(rows) == []


@pytest.mark.parametrize("change, expected", [
    (lambda rows: rows[:3] + rows[4:], "no file before runner/fitting/training_run.py reaches prepare"),
    (lambda rows: rows + [("runner/fitting/loop.py", "evaluate")] * 2, "8 files on the path; at most 6"),
    (lambda rows: [*rows[:-1], ("runner/fitting/loop.py", "gone")], "gone is not a function of"),
    (lambda rows: [*rows[:-1], ("runner/fitting/loop.py", "evaluate")], "does not step an optimizer"),
])
def test_the_check_fails_on_a_path_that_is_not_the_code(change, expected):
    """A dropped file, a path too long, a missing function and a last step that steps nothing are each found."""
    problems = check(change(path_rows(DOC.read_text())))
    assert any(expected in p for p in problems), problems
