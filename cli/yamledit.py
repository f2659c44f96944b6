"""YAML documents users edit (`config edit`, `profile edit|create`, `storage|network edit`):
loading with one-line errors, API strings from YAML scalars, the $EDITOR loop, and the
get/set/unset/edit rules of objects whose writable fields are config and description. yaml is
imported only when used."""

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


# Objects whose writable fields are `config` and `description` (storage pools, networks):
# the PUT body, an edited document, and `get|set|unset [-p]`.

def writable(obj: dict[str, Any]) -> dict[str, Any]:
    """The PUT body of such an object as it is now."""
    return {"config": dict(obj.get("config") or {}), "description": obj.get("description") or ""}


def parse_writable_yaml(text: str) -> dict[str, Any]:
    """The writable fields (config, description) an edited document gives; the others are
    ignored, and fields left out are not in the result (they stay as they are)."""
    data = load_mapping(text)
    out: dict[str, Any] = {}
    if "config" in data:
        out["config"] = string_map(data["config"], "config")
    if "description" in data:
        out["description"] = stringify(data["description"])
    return out


def get_value(obj: dict[str, Any], key: str, prop: bool, properties: tuple[str, ...],
              what: str) -> str:
    """`get <key>`: a config value ("" when unset), or with -p one of `properties`."""
    if not prop:
        return str((obj.get("config") or {}).get(key, ""))
    if key not in properties:
        raise CliError(f'The property "{key}" does not exist on the {what} '
                       f"(accepted: {', '.join(properties)})")
    return stringify(obj.get(key, ""))


def set_values(body: dict[str, Any], values: dict[str, str], prop: bool, what: str) -> None:
    """`set`: config keys, or with -p the description (the only writable property)."""
    if not prop:
        body["config"] = {**body["config"], **values}
        return
    unknown = sorted(set(values) - {"description"})
    if unknown:
        raise CliError(f'The property "{unknown[0]}" does not exist on the {what} '
                       "(accepted: description)")
    body["description"] = values["description"]


def unset_value(body: dict[str, Any], key: str, prop: bool, what: str) -> None:
    """`unset`: a config key that is set, or with -p the description."""
    if prop:
        if key != "description":
            raise CliError(f'The property "{key}" does not exist on the {what} '
                           "(accepted: description)")
        body["description"] = ""
        return
    if key not in body["config"]:
        raise CliError(f'The key "{key}" is not set on the {what}')
    body["config"] = {k: v for k, v in body["config"].items() if k != key}


def edit_object(client: Any, url: str, show: Callable[[dict[str, Any]], str], header: str,
                what: str) -> None:
    """`edit`: the document from stdin when it is not a terminal, else in $EDITOR (again
    until the daemon accepts it); the writable fields it gives replace the object's."""
    import sys

    def apply(text: str) -> None:
        changes = parse_writable_yaml(text)
        if changes:  # an empty document changes nothing
            client.put(url, {**writable(client.get(url) or {}), **changes})

    if not sys.stdin.isatty():
        apply(sys.stdin.read())
        return
    edit_until_accepted(header + show(client.get(url) or {}), apply, what)
