"""Crash points (machined/crash.py), read from the source: every crash.point() call names a
registered point with a literal, and every registered point is placed somewhere (the system
walk, tests/system/test_crash_points.py, fires each one)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from machined import crash

REPO = Path(__file__).resolve().parents[2]


def placed() -> dict[str, list[str]]:
    """point name -> the files calling crash.point() with it."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "machined").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "point" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "crash"):
                continue
            where = path.relative_to(REPO).as_posix()
            assert len(node.args) == 1 and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str), \
                f"{where}:{node.lineno}: crash.point() takes one literal name"
            found.setdefault(node.args[0].value, []).append(where)
    return found


def test_every_placed_point_is_registered():
    unknown = {name: files for name, files in placed().items() if name not in crash.POINTS}
    assert unknown == {}


def test_every_registered_point_is_placed():
    assert sorted(set(crash.POINTS) - set(placed())) == []


def test_points_are_named_operation_dot_step():
    for name, what in crash.POINTS.items():
        parts = name.split(".")
        assert len(parts) >= 3 and all(p.isidentifier() for p in parts), name
        assert what and what == what.strip(), name


def test_an_unknown_point_fails_loudly():
    with pytest.raises(KeyError, match="not registered"):
        crash.point("instance.create.typo")


def test_a_point_that_is_not_the_target_does_nothing():
    crash.point("instance.create.volume")  # MACHINED_CRASH_AT is unset in unit tests
