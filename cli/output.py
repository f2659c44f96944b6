"""Rendering of lists (table, compact, csv, json, yaml) and of sizes and dates. Pure: every
function returns a string; yaml and csv are imported only when asked for."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

FORMATS = ("table", "compact", "csv", "json", "yaml")
FORMAT_HINT = "'-f' / '--format'"


def parse_format(spec: str) -> tuple[str, bool]:
    """`csv,header` -> ("csv", True). Table and compact show a header by default, csv not."""
    name, _, modifier = spec.partition(",")
    if name not in FORMATS:
        raise click.BadParameter(f'"{name}" is not one of {", ".join(FORMATS)}',
                                 param_hint=FORMAT_HINT)
    header = name in ("table", "compact")
    if modifier == "header":
        header = True
    elif modifier == "noheader":
        header = False
    elif modifier:
        raise click.BadParameter(f'unknown modifier "{modifier}" (accepted: header, noheader)',
                                 param_hint=FORMAT_HINT)
    return name, header


def format_option(default: str = "table") -> Any:
    """The `-f/--format` option shared by list commands."""
    return click.option(
        "-f",
        "--format",
        "fmt",
        default=default,
        show_default=True,
        metavar="FORMAT",
        help="Output format: table, compact, csv, json or yaml (csv,header adds a header).",
    )


def render(spec: str, header: Sequence[str], rows: Sequence[Sequence[str]], raw: Any = None) -> str:
    """Render rows in the requested format; json and yaml dump `raw` (the API objects)."""
    name, show_header = parse_format(spec)
    if name == "json":
        return render_json(raw)
    if name == "yaml":
        return render_yaml(raw)
    if name == "csv":
        return render_csv(header if show_header else None, rows)
    if name == "compact":
        return render_compact(header if show_header else None, rows)
    return render_table(header if show_header else None, rows)


def render_json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


def render_yaml(obj: Any) -> str:
    import yaml

    return str(yaml.safe_dump(obj, default_flow_style=False, sort_keys=False, allow_unicode=True))


def render_csv(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    # Cells are data from containers, images and servers: no terminal control characters
    # (newlines stay: csv quotes them).
    writer.writerows([printable(str(cell)) for cell in row] for row in rows)
    return out.getvalue()


def _widths(header: Sequence[str] | None, cells: list[list[list[str]]]) -> list[int]:
    columns = len(header) if header is not None else (len(cells[0]) if cells else 0)
    widths = [len(h) for h in header] if header is not None else [0] * columns
    for row in cells:
        if len(row) != columns:
            raise ValueError(f"A row has {len(row)} cells for {columns} columns")
        for i, lines in enumerate(row):
            widths[i] = max([widths[i], *(len(line) for line in lines)])
    return widths


# Control characters (C0 but newline, DEL, C1) shown as \xNN: table cells carry strings from
# remote servers and images (descriptions, aliases), and a terminal must not obey them.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7f, *range(0x80, 0xa0)]
             if c != 0x0a}
_CONTROLS[0x09] = " "


def printable(text: str) -> str:
    """`text` with terminal control characters made visible (newlines kept)."""
    return text.translate(_CONTROLS)


def _split_cells(rows: Sequence[Sequence[str]]) -> list[list[list[str]]]:
    return [[printable(str(cell)).split("\n") for cell in row] for row in rows]


def _center(text: str, width: int) -> str:
    """Centre like lxc's tablewriter: an odd spare space goes to the right."""
    left = (width - len(text)) // 2
    return (" " * left + text).ljust(width)


def render_table(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """lxc's table: +---+ borders, centred header, left-aligned cells, a rule after each row,
    multi-line cells (one IP per line)."""
    cells = _split_cells(rows)
    widths = _widths(header, cells)
    if not widths:
        return ""
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule]
    if header is not None:
        cols = zip(header, widths, strict=True)
        out.append("|" + "|".join(f" {_center(h, w)} " for h, w in cols) + "|")
        out.append(rule)
    for row in cells:
        height = max(len(lines) for lines in row)
        for n in range(height):
            parts = [lines[n] if n < len(lines) else "" for lines in row]
            cols = zip(parts, widths, strict=True)
            out.append("|" + "|".join(f" {p.ljust(w)} " for p, w in cols) + "|")
        out.append(rule)
    return "\n".join(out) + "\n"


def render_compact(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """Plain columns separated by two spaces, no borders."""
    cells = _split_cells(rows)
    widths = _widths(header, cells)
    if not widths:
        return ""
    out: list[str] = []
    if header is not None:
        out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in cells:
        height = max(len(lines) for lines in row)
        for n in range(height):
            parts = [lines[n] if n < len(lines) else "" for lines in row]
            out.append("  ".join(p.ljust(w) for p, w in zip(parts, widths, strict=True)).rstrip())
    return "\n".join(out) + "\n"


_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(size: int | float) -> str:
    """IEC size like lxc: 512B, 45.23MiB."""
    value = float(size)
    if value < 1024:
        return f"{int(value)}B"
    unit = 0
    while value >= 1024 and unit < len(_IEC) - 1:
        value /= 1024
        unit += 1
    return f"{value:.2f}{_IEC[unit]}"


def format_mib(size: int | float) -> str:
    """Image sizes in `image list`: always MiB, two decimals."""
    return f"{float(size) / 1024 / 1024:.2f}MiB"


def parse_time(value: str | None) -> datetime | None:
    """An API timestamp, or None for empty / zero times: Go's 0001-01-01 and the Unix epoch
    (what an image that never expires or was never used carries), shown as "never"."""
    if not value or value.startswith(("0001-01-01", "1970-01-01T00:00:00")):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_time(value: str | None, layout: str = "%Y/%m/%d %H:%M %Z") -> str:
    """lxc's `2006/01/02 15:04 MST` in local time; "" for empty times."""
    when = parse_time(value)
    if when is None:
        return ""
    return when.astimezone().strftime(layout)


def format_upload_date(value: str | None) -> str:
    """`image list` dates: `Jan 2, 2006 at 3:04pm (UTC)`."""
    when = parse_time(value)
    if when is None:
        return ""

    when = when.astimezone(UTC)
    hour = when.hour % 12 or 12
    ampm = "am" if when.hour < 12 else "pm"
    return f"{when:%b} {when.day}, {when.year} at {hour}:{when:%M}{ampm} (UTC)"
