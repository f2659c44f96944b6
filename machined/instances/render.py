"""Rendering of one image template, run in the limited child that templates.render_isolated
starts (`python -I -m machined.instances.render`): jobs as JSON on stdin, texts as JSON on
stdout. Imports only Jinja2 and machined.errors, so the child starts quickly."""

from __future__ import annotations

from typing import Any

from machined.errors import BadRequest

MAX_TEMPLATE = 1 << 20  # bytes read from templates/, and written per file


def render(text: str, context: dict[str, Any], limit: int = MAX_TEMPLATE) -> str:
    """In-process rendering: the daemon only calls it in the limited child."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
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


def main() -> int:
    """Child side of render_isolated: jobs as JSON on stdin, texts as JSON on stdout."""
    import json
    import sys

    jobs = json.loads(sys.stdin.buffer.read())
    out = []
    try:
        for text, ctx in jobs:
            config = ctx.get("config", {})
            ctx["config_get"] = lambda key, default="", config=config: config.get(key, default)
            out.append(render(text, ctx))
    except BadRequest as e:
        print(f"Error: {e.message}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
