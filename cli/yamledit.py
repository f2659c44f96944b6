"""YAML documents users edit (`config edit`, `profile edit|create`): loading with one-line
errors, API strings from YAML scalars, and the $EDITOR loop. yaml is imported only when used."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from cli.errors import CliError


def stringify(value: Any) -> str:
    """YAML scalars as the API's strings (`limits.cpu: 2` -> "2", `true` -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def mapping(value: Any, what: str) -> dict[str, Any]:
    """A YAML mapping (None is an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CliError(f"{what} must be a mapping of key: value")
    return value


def string_map(value: Any, what: str) -> dict[str, str]:
    return {str(k): stringify(v) for k, v in mapping(value, what).items()}


def load_mapping(text: str) -> dict[str, Any]:
    """The top-level mapping of a document; an empty document is an empty mapping."""
    import yaml

    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise CliError(f"Invalid YAML{_where(e)}: {_problem(e)}") from None
    return mapping(data, "The YAML document")


def _where(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(e: Exception) -> str:
    """PyYAML's messages span several lines (context, snippet, caret): keep the gist."""
    problem = getattr(e, "problem", None)
    return str(problem) if problem else str(e).splitlines()[0]


def sorted_map(value: Any) -> Any:
    """A mapping with its keys (and those of nested mappings) sorted, as lxc prints config
    and devices."""
    if not isinstance(value, dict):
        return value
    return {k: sorted_map(value[k]) for k in sorted(value)}


def run_editor(text: str, suffix: str = ".yaml") -> str:
    """Edit `text` in $VISUAL/$EDITOR (vi by default); the edited text."""
    import shlex
    import subprocess
    import tempfile

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, path = tempfile.mkstemp(prefix="mc-", suffix=suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            rc = subprocess.call([*shlex.split(editor), path])
        except OSError as e:
            raise CliError(f"Could not run the editor {editor!r}: {e.strerror}") from None
        if rc != 0:
            raise CliError(f"The editor ({editor}) exited with status {rc}; nothing was changed")
        with open(path) as f:
            return f.read()
    finally:
        os.unlink(path)


def edit_until_accepted(text: str, apply: Callable[[str], None], what: str) -> None:
    """Open the editor until `apply(edited)` succeeds or the user gives up (as lxc)."""
    while True:
        text = run_editor(text)
        try:
            apply(text)
            return
        except CliError as e:
            click.echo(f"Config parsing error: {e.message}", err=True)
            click.echo("Press enter to open the editor again or ctrl+c to abort change", err=True)
            try:
                input()
            except (EOFError, KeyboardInterrupt):
                raise CliError(f"Aborted: {what} was not changed") from None
