"""Image templates (LXD's metadata.yaml `templates:`): files rendered into the container on
`create`, `copy`, `start` or `rename`. Templates come from images, so they are hostile input:
Jinja2's sandbox renders them (pongo2's simple syntax is the same: {{ instance.name }},
{% if %}), output is capped while it streams, and files are written inside the rootfs only."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from machined.errors import BadRequest
from machined.images import format as image_format
from machined.instances.render import MAX_TEMPLATE, render
from machined.runtime import rootfs as inroot

__all__ = ["apply", "context", "render", "render_isolated"]
log = logging.getLogger("machined.templates")

RENDER_CPU_SECONDS = 5
RENDER_MEMORY = 1 << 30
RENDER_TIMEOUT = 15.0


def render_isolated(jobs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Render in a short-lived child under CPU, memory and time limits. The sandbox stops
    templates reaching Python, not burning it: Jinja folds constants such as {{ 9**(9**10) }}
    while compiling, and big-integer maths never releases the GIL, so a hostile image would
    otherwise freeze the daemon."""
    import json
    import sys

    from machined.sys.run import CommandError, run

    argv = ["prlimit", f"--cpu={RENDER_CPU_SECONDS}", f"--as={RENDER_MEMORY}", sys.executable,
            "-I", "-m", "machined.instances.render"]
    try:
        proc = run(argv, input=json.dumps(jobs).encode(), timeout=RENDER_TIMEOUT)
    except CommandError as e:
        reason = e.stderr.strip().splitlines()[-1] if e.stderr.strip() else ""
        if reason.startswith("Error: "):
            raise BadRequest(reason[len("Error: "):]) from None
        raise BadRequest("Template rendering was stopped: it used more than "
                         f"{RENDER_CPU_SECONDS} s of CPU, {RENDER_MEMORY >> 20} MiB or "
                         f"{RENDER_TIMEOUT:g} s") from None
    return list(json.loads(proc.stdout))


def context(name: str, architecture: str, config: dict[str, str],
            devices: dict[str, dict[str, str]], trigger: str, path: str,
            properties: dict[str, str]) -> dict[str, Any]:
    """What LXD gives a template: trigger, path, instance, config, devices, properties."""
    privileged = config.get("security.privileged", "false").lower() in ("true", "1", "yes", "on")
    return {
        "trigger": trigger, "path": path, "config": config, "devices": devices,
        "properties": properties,
        "instance": {"name": name, "architecture": architecture, "type": "container",
                     "privileged": privileged, "ephemeral": False},
        "container": {"name": name, "architecture": architecture, "privileged": privileged},
        "config_get": lambda key, default="": config.get(key, default),
    }


def _read_template(templates_dir: Path, name: str) -> str:
    fd = os.open(templates_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_TEMPLATE + 1)
    if len(data) > MAX_TEMPLATE:
        raise BadRequest(f"Template {name!r} is larger than {MAX_TEMPLATE} bytes")
    return data.decode("utf-8", errors="replace")


def apply(volume: Path, triggers: str | Sequence[str], name: str, architecture: str,
          config: dict[str, str], devices: dict[str, dict[str, str]]) -> list[str]:
    """Render the rules of `triggers` (in order: one render child for all) from
    volume/metadata.yaml into volume/rootfs; returns the paths written. A target whose
    directory is missing is skipped, as LXD does."""
    if isinstance(triggers, str):
        triggers = [triggers]
    meta_path = volume / "metadata.yaml"
    if not meta_path.exists():
        return []
    try:
        metadata = image_format.load_metadata(meta_path)
    except image_format.ImageFormatError as e:
        raise BadRequest(f"Invalid image metadata: {e}") from None
    rules = [(trigger, path, rule) for trigger in triggers
             for path, rule in sorted(metadata.templates.items()) if trigger in rule.when]
    if not rules:
        return []
    texts = render_isolated([
        (_read_template(volume / "templates", rule.template),
         _plain(context(name, architecture, config, devices, trigger, path,
                        dict(rule.properties))))
        for trigger, path, rule in rules])
    written = []
    for (trigger, path, rule), text in zip(rules, texts, strict=True):
        try:
            done = inroot.write_file(
                os.fspath(volume / "rootfs"), path, text.encode(),
                mode=rule.mode if rule.mode is not None else 0o644, uid=rule.uid or 0,
                gid=rule.gid or 0,
                # A copy starts from a finished instance: create_only files exist there.
                only_if_missing=rule.create_only and trigger in ("create", "copy"))
        except FileNotFoundError:
            log.info("Skipped template %s of %s: its directory is missing", path, name)
            continue
        except OSError as e:
            raise BadRequest(f"Failed writing template {path} into {name!r}: {e}") from None
        if done and path not in written:
            written.append(path)
    return written


def _plain(ctx: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of a context (the child adds config_get back)."""
    return {k: v for k, v in ctx.items() if k != "config_get"}
