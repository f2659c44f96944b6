"""`mc operation list|show|delete`."""

from __future__ import annotations

from typing import Any

import click

from cli.context import Env, format_option, pass_env
from cli.output import format_time, render, render_yaml


def flatten(ops: Any) -> list[dict[str, Any]]:
    """recursion=1 answers {status: [ops]} like LXD; accept a plain list as well."""
    if isinstance(ops, dict):
        return [op for group in ops.values() for op in (group or [])]
    return list(ops or [])


@click.group("operation")
def operation() -> None:
    """List, show and cancel background operations."""


@operation.command("list")
@format_option
@pass_env
def list_ops(env: Env, fmt: str) -> None:
    """List operations."""
    ops = sorted(
        flatten(env.client().get("/1.0/operations?recursion=1")),
        key=lambda o: str(o.get("created_at", "")),
    )
    rows = [
        [
            str(o.get("id", "")),
            str(o.get("class", "")).upper(),
            str(o.get("description", "")),
            str(o.get("status", "")).upper(),
            "YES" if o.get("may_cancel") else "NO",
            format_time(o.get("created_at")),
        ]
        for o in ops
    ]
    header = ["ID", "TYPE", "DESCRIPTION", "STATUS", "CANCELABLE", "CREATED"]
    click.echo(render(fmt, header, rows, ops), nl=False)


@operation.command("show")
@click.argument("op_id")
@pass_env
def show(env: Env, op_id: str) -> None:
    """Show an operation."""
    click.echo(render_yaml(env.client().get(f"/1.0/operations/{op_id}")), nl=False)


@operation.command("delete")
@click.argument("op_id")
@pass_env
def delete(env: Env, op_id: str) -> None:
    """Cancel an operation."""
    env.client().delete(f"/1.0/operations/{op_id}")
