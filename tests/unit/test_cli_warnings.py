"""`mc warning` columns and filtering, and the Warnings section of `mc info` (pure parts)."""

from __future__ import annotations

import click
import pytest

from cli.commands.info import format_info
from cli.commands.warning import COLUMNS, DEFAULT_COLUMNS, parse_columns, visible

WARNING = {"uuid": "0b7e", "type": "instance-autostart-failure",
           "entity_url": "/1.0/instances/c1", "project": "default", "status": "new",
           "severity": "low", "count": 3, "first_seen_at": "2026-01-02T03:04:05Z",
           "last_seen_at": "2026-01-02T15:04:05Z",
           "last_message": "Failed to autostart instance c1: source \x1b[2J is missing"}


def test_columns_as_lxc_plus_entity() -> None:
    letters = parse_columns(DEFAULT_COLUMNS)
    assert [COLUMNS[c][0] for c in letters] == [
        "UUID", "TYPE", "STATUS", "SEVERITY", "COUNT", "PROJECT", "ENTITY", "LAST SEEN"]
    assert [COLUMNS[c][1](WARNING) for c in letters] == [
        "0b7e", "instance-autostart-failure", "NEW", "LOW", "3", "default",
        "/1.0/instances/c1", "Jan 2, 2026 at 3:04pm (UTC)"]
    assert parse_columns("ut,S") == ["u", "t", "S"]
    with pytest.raises(click.BadParameter, match='unknown column "L"'):
        parse_columns("uL")  # location: clusters only
    with pytest.raises(click.BadParameter, match="empty column entry"):
        parse_columns("u,,t")


def test_acknowledged_hidden_unless_all() -> None:
    acked = dict(WARNING, uuid="1", status="acknowledged")
    assert visible([WARNING, acked], False) == [WARNING]
    assert visible([WARNING, acked], True) == [WARNING, acked]


def test_info_lists_the_instance_warnings() -> None:
    inst = {"name": "c1", "status": "Stopped", "type": "container", "architecture": "x86_64"}
    assert "Warnings:" not in format_info(inst, {"status": "Stopped"})
    assert "Warnings:" not in format_info(inst, {"status": "Stopped"}, [])
    text = format_info(inst, {"status": "Stopped"}, [WARNING, dict(WARNING, count=1)])
    lines = text.splitlines()
    at = lines.index("Warnings:")
    assert lines[at + 1] == ("  instance-autostart-failure (new, 3 times, last Jan 2, 2026 "
                             "at 3:04pm (UTC)): Failed to autostart instance c1: source "
                             "\\x1b[2J is missing")
    assert lines[at + 2].startswith("  instance-autostart-failure (new, once, ")
