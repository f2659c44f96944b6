"""Image templates (LXD's metadata.yaml `templates:`): files rendered into the container on
`create`, `copy`, `start` or `rename`. Templates come from images, so they are hostile input:
Jinja2's sandbox renders them (pongo2's simple syntax is the same: {{ instance.name }},
{% if %}), output is capped while it streams, and files are written inside the rootfs only."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from machined.errors import BadRequest
from machined.images import format as image_format
from machined.runtime import rootfs as inroot

log = logging.getLogger("machined.templates")
MAX_TEMPLATE = 1 << 20  # bytes read from templates/, and written per file


def render(text: str, context: dict[str, Any], limit: int = MAX_TEMPLATE) -> str:
    from jinja2 import TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    try:
        out: list[str] = []
        size = 0
        for chunk in env.from_string(text).generate(**context):
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"Template output is larger than {limit} bytes")
            out.append(chunk)
    except TemplateError as e:
        raise BadRequest(f"Template error: {e}") from None
    return "".join(out)


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


def apply(volume: Path, trigger: str, name: str, architecture: str, config: dict[str, str],
          devices: dict[str, dict[str, str]]) -> list[str]:
    """Render the rules of `trigger` from volume/metadata.yaml into volume/rootfs; returns the
    paths written. A target whose directory is missing is skipped, as LXD does."""
    meta_path = volume / "metadata.yaml"
    if not meta_path.exists():
        return []
    try:
        metadata = image_format.load_metadata(meta_path)
    except image_format.ImageFormatError as e:
        raise BadRequest(f"Invalid image metadata: {e}") from None
    written = []
    for path, rule in sorted(metadata.templates.items()):
        if trigger not in rule.when:
            continue
        text = render(_read_template(volume / "templates", rule.template),
                      context(name, architecture, config, devices, trigger, path,
                              dict(rule.properties)))
        try:
            done = inroot.write_file(
                os.fspath(volume / "rootfs"), path, text.encode(),
                mode=rule.mode if rule.mode is not None else 0o644, uid=rule.uid or 0,
                gid=rule.gid or 0, only_if_missing=rule.create_only and trigger == "create")
        except FileNotFoundError:
            log.info("Skipped template %s of %s: its directory is missing", path, name)
            continue
        except OSError as e:
            raise BadRequest(f"Failed writing template {path} into {name!r}: {e}") from None
        if done:
            written.append(path)
    return written
