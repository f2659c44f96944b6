"""Rendering: lxc-style tables, compact, csv, json, yaml; sizes and dates."""

from __future__ import annotations

import json

import click
import pytest
import yaml

from cli.output import (
    format_bytes,
    format_mib,
    format_time,
    format_upload_date,
    parse_format,
    render,
    render_compact,
    render_csv,
    render_table,
)

HEADER = ["NAME", "STATE", "IPV4"]
ROWS = [["c1", "RUNNING", "10.0.0.5 (eth0)\n10.0.1.5 (eth1)"], ["web", "STOPPED", ""]]


def test_table_matches_lxc_layout() -> None:
    assert render_table(HEADER, ROWS) == (
        "+------+---------+-----------------+\n"
        "| NAME |  STATE  |      IPV4       |\n"
        "+------+---------+-----------------+\n"
        "| c1   | RUNNING | 10.0.0.5 (eth0) |\n"
        "|      |         | 10.0.1.5 (eth1) |\n"
        "+------+---------+-----------------+\n"
        "| web  | STOPPED |                 |\n"
        "+------+---------+-----------------+\n"
    )


def test_empty_table_has_header_only() -> None:
    assert render_table(["A", "B"], []) == "+---+---+\n| A | B |\n+---+---+\n"


def test_compact() -> None:
    assert render_compact(HEADER, ROWS[1:]) == "NAME  STATE    IPV4\nweb   STOPPED\n"


def test_csv_quotes_and_has_no_header_by_default() -> None:
    assert render("csv", HEADER, [["a", "b,c", "x"]]) == 'a,"b,c",x\n'
    assert render_csv(HEADER, []) == "NAME,STATE,IPV4\n"
    assert render("csv,header", HEADER, []) == "NAME,STATE,IPV4\n"


def test_json_and_yaml_dump_the_raw_objects() -> None:
    raw = [{"name": "c1", "config": {"k": "v"}}]
    assert json.loads(render("json", HEADER, ROWS, raw)) == raw
    assert yaml.safe_load(render("yaml", HEADER, ROWS, raw)) == raw
    assert render("json", [], [], []) == "[]\n"


def test_parse_format() -> None:
    assert parse_format("table") == ("table", True)
    assert parse_format("csv") == ("csv", False)
    assert parse_format("table,noheader") == ("table", False)
    with pytest.raises(click.BadParameter):
        parse_format("xml")
    with pytest.raises(click.BadParameter):
        parse_format("csv,sideways")


def test_row_width_must_match_header() -> None:
    with pytest.raises(ValueError):
        render_table(["A"], [["1", "2"]])


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (1023, "1023B"), (1024, "1.00KiB"), (47431680, "45.23MiB"), (3 << 30, "3.00GiB")],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_format_mib() -> None:
    assert format_mib(50_000_000) == "47.68MiB"


def test_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    assert format_time("2024-01-02T10:11:12.123456789Z") == "2024/01/02 10:11 UTC"
    assert format_time("0001-01-01T00:00:00Z") == ""
    assert format_time(None) == ""
    assert format_time("garbage") == ""
    assert format_upload_date("2024-05-06T15:04:05Z") == "May 6, 2024 at 3:04pm (UTC)"
    assert format_upload_date("2024-05-06T00:30:00+00:00") == "May 6, 2024 at 12:30am (UTC)"


def test_terminal_controls_from_servers_are_shown_not_obeyed():
    """Descriptions and aliases come from remote servers: an escape sequence in one must
    not reach the terminal raw (it could rewrite the screen or the title)."""
    from cli.output import printable, render

    evil = "Debian\x1b]0;pwned\x07 12\x9b2J\ttab"
    assert printable(evil) == "Debian\\x1b]0;pwned\\x07 12\\x9b2J tab"
    assert printable("two\nlines") == "two\nlines"
    for fmt in ("table", "compact"):
        out = render(fmt, ["DESCRIPTION"], [[evil]])
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
        assert "\\x1b]0;pwned" in out


def test_csv_cells_cannot_carry_terminal_controls():
    from cli.output import render_csv

    assert render_csv(None, [["eth\x1b]0;pwned\x07", "10.0.0.1 (eth0)\nfd42::1 (eth0)"]]) == (
        'eth\\x1b]0;pwned\\x07,"10.0.0.1 (eth0)\nfd42::1 (eth0)"\n')
