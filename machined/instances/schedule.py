"""Scheduled snapshots, the pure part: names from snapshots.pattern, expiry times from
snapshots.expiry, and whether a snapshots.schedule fired between two instants.

Times are UTC (the daemon's clock, machined.clock): a schedule "0 6 * * *" fires at 06:00 UTC,
so there is no daylight-saving hour that fires twice or never.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from machined import clock
from machined.config.validate import check_schedule, parse_expiry
from machined.errors import BadRequest
from machined.instances.copying import check_snapshot_name

# --- snapshots.pattern -------------------------------------------------------------------
# LXD renders the pattern as a pongo2 template with one variable, creation_date (a Go time),
# before looking at %d. machined renders the part of pongo2 that makes sense there:
# {{ creation_date|date:"<Go layout>" }} (and a bare {{ creation_date }}, Go's String(), whose
# '+' no snapshot name may hold); anything else between {{ }} or {% %} is refused when the key
# is set (LXD would render unknown names as "").

_DATE = re.compile(r"""^creation_date\s*(?:\|\s*date\s*:\s*(?:"([^"]*)"|'([^']*)'))?$""")
# Go's default time.Time String() layout, what pongo2 prints for a bare creation_date.
_GO_DEFAULT = "2006-01-02 15:04:05.999999999 -0700 MST"
# Far more than any pattern giving a valid (<= 255 character) name needs; rendering and
# validating stay cheap whatever a config value holds.
MAX_PATTERN = 1024


def render_pattern(pattern: str, now: datetime) -> str:
    """Expand the {{ creation_date ... }} expressions of a snapshots.pattern (ValueError
    naming the unsupported expression otherwise). A scan, not a regular expression: one with
    optional whitespace and dashes around a lazy group took cubic time on "{{" followed by
    spaces (seconds for 1000 of them, minutes for 4000, the event loop stalled)."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"a name template of at most {MAX_PATTERN} characters")
    if "{%" in pattern:
        raise ValueError("a name template: {% %} tags are not supported, only "
                         "{{ creation_date|date:\"2006-01-02\" }}")
    out: list[str] = []
    done = 0
    while (start := pattern.find("{{", done)) >= 0:
        end = pattern.find("}}", start + 2)
        if end < 0:
            break  # reported below
        out += [pattern[done:start], _expand(pattern[start + 2:end], now)]
        done = end + 2
    rendered = "".join(out) + pattern[done:]
    if "{{" in rendered:
        raise ValueError("a name template: '{{' without a closing '}}'")
    return rendered


def _expand(inner: str, now: datetime) -> str:
    """The value of one {{ ... }} (pongo2's {{- -}} trim marks are accepted)."""
    expr = inner.removeprefix("-").removesuffix("-").strip()
    date = _DATE.match(expr)
    if date is None:
        raise ValueError(f"a name template: {'{{' + inner + '}}'!r} is not supported, only "
                         "{{ creation_date|date:\"2006-01-02\" }} (a Go time layout)")
    layout = date.group(1) if date.group(1) is not None else date.group(2)
    return go_format(now, _GO_DEFAULT if layout is None else layout)


def _index(name: str, prefix: str, suffix: str) -> int | None:
    """The number N of a name prefix+N+suffix (decimal digits only), else None."""
    if len(name) <= len(prefix) + len(suffix) or not name.startswith(prefix) \
            or not name.endswith(suffix):
        return None
    digits = name[len(prefix):len(name) - len(suffix)]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def _next_index(prefix: str, suffix: str, existing: set[str]) -> str:
    """prefix + N + suffix, N one more than the highest number an existing name has there
    (0 when none): LXD's rule, so names keep growing after older snapshots expired
    (snap0, snap2 -> snap3) and a name is never reused for a newer snapshot while an
    older one with a higher number exists."""
    numbers = [n for n in (_index(e, prefix, suffix) for e in existing) if n is not None]
    return f"{prefix}{max(numbers) + 1 if numbers else 0}{suffix}"


def snapshot_name(pattern: str, existing: set[str], now: datetime) -> str:
    """The name of a new snapshot from snapshots.pattern (default snap%d), given the names the
    instance's snapshots already have. Without %d a taken name gets -0, -1... appended, as LXD
    does. BadRequest when the pattern cannot give a valid name."""
    try:
        rendered = render_pattern(pattern or "snap%d", now)
    except ValueError as e:
        raise BadRequest(f"Invalid snapshots.pattern {pattern!r}: expected {e}") from None
    count = rendered.count("%d")
    if count > 1:
        raise BadRequest(f"Invalid snapshots.pattern {pattern!r}: %d may appear only once")
    if count == 1:
        prefix, _, suffix = rendered.partition("%d")
        name = _next_index(prefix, suffix, existing)
    elif rendered in existing:
        name = _next_index(rendered + "-", "", existing)
    else:
        name = rendered
    try:
        check_snapshot_name(name)
    except BadRequest as e:
        raise BadRequest(f"Invalid snapshots.pattern {pattern!r}: {e.message}") from None
    return name


def check_pattern(pattern: str) -> None:
    """snapshots.pattern validator: renders, at most one %d, and gives a valid name."""
    now = datetime(2006, 1, 2, 15, 4, 5, tzinfo=UTC)
    rendered = render_pattern(pattern, now)
    if rendered.count("%d") > 1:
        raise ValueError("a name template with at most one %d")
    try:
        check_snapshot_name(rendered.replace("%d", "0"))
    except BadRequest as e:  # "Invalid snapshot name 'x': use <what is accepted>"
        accepted = e.message.partition(": use ")[2] or e.message
        raise ValueError(f"a name template giving a valid snapshot name ({accepted})") \
            from None


# --- Go time layouts (time.Format), as pongo2's date filter uses them ----------------------

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Longest first where one token starts another. Time is UTC, so zones print as UTC/+0000/Z.
_TOKENS: tuple[tuple[str, str], ...] = (
    ("January", "%B"), ("Jan", "%b"), ("Monday", "%A"), ("Mon", "%a"), ("MST", "UTC"),
    ("2006", "%Y"), ("002", "%j"), ("__2", "yday_"), ("_2006", "_%Y"), ("_2", "day_"),
    ("01", "%m"), ("02", "%d"), ("03", "%I"), ("04", "%M"), ("05", "%S"), ("06", "%y"),
    ("15", "%H"), ("1", "month"), ("2", "day"), ("3", "hour12"), ("4", "minute"),
    ("5", "second"), ("PM", "%p"), ("pm", "pm"),
    ("-07:00:00", "+00:00:00"), ("-070000", "+000000"), ("-07:00", "+00:00"),
    ("-0700", "+0000"), ("-07", "+00"),
    ("Z07:00:00", "Z"), ("Z070000", "Z"), ("Z07:00", "Z"), ("Z0700", "Z"), ("Z07", "Z"),
)
_FRACTION = re.compile(r"[.,](0+|9+)(?![0-9])")


def _token_value(kind: str, t: datetime) -> str:
    fixed = {"%B": _MONTHS[t.month - 1], "%b": _MONTHS[t.month - 1][:3],
             "%A": _DAYS[t.weekday()], "%a": _DAYS[t.weekday()][:3]}
    if kind in fixed:
        return fixed[kind]
    hour12 = t.hour % 12 or 12
    numbers = {"%Y": f"{t.year:04d}", "_%Y": f"_{t.year:04d}", "%j": f"{t.timetuple().tm_yday:03d}",
               "yday_": f"{t.timetuple().tm_yday:>3d}", "day_": f"{t.day:>2d}",
               "%m": f"{t.month:02d}", "%d": f"{t.day:02d}", "%I": f"{hour12:02d}",
               "%M": f"{t.minute:02d}", "%S": f"{t.second:02d}", "%y": f"{t.year % 100:02d}",
               "%H": f"{t.hour:02d}", "month": str(t.month), "day": str(t.day),
               "hour12": str(hour12), "minute": str(t.minute), "second": str(t.second),
               "%p": "PM" if t.hour >= 12 else "AM", "pm": "pm" if t.hour >= 12 else "am"}
    return numbers.get(kind, kind)  # zones: the literal UTC spelling in the table


def _fraction(spec: str, t: datetime) -> str:
    """'.000' -> fixed digits, '.999' -> trailing zeros trimmed (nothing when zero)."""
    digits = f"{t.microsecond:06d}000"[:len(spec) - 1]  # nanoseconds: Python has micro
    if spec[1] == "9":
        digits = digits.rstrip("0")
        return spec[0] + digits if digits else ""
    return spec[0] + digits


def go_format(t: datetime, layout: str) -> str:
    """Format `t` (UTC) with a Go reference-time layout ("2006-01-02_15-04-05")."""
    out: list[str] = []
    i = 0
    while i < len(layout):
        fraction = _FRACTION.match(layout, i)
        if fraction:
            out.append(_fraction(fraction.group(0), t))
            i = fraction.end()
            continue
        for token, kind in _TOKENS:
            if layout.startswith(token, i):
                out.append(_token_value(kind, t))
                i += len(token)
                break
        else:
            out.append(layout[i])
            i += 1
    return "".join(out)


# --- snapshots.expiry --------------------------------------------------------------------

def add_expiry(spec: str, now: datetime) -> datetime:
    """now + '1M 2H 3d 4w 5m 6y' (S seconds too), with Go's AddDate month arithmetic: the day
    overflows into the next month (Jan 31 + 1m = Mar 3, or Mar 2 in leap years)."""
    parts = parse_expiry(spec)
    months = now.month - 1 + parts.get("months", 0) + 12 * parts.get("years", 0)
    year, month = now.year + months // 12, months % 12 + 1
    first = now.replace(year=year, month=month, day=1)
    days = now.day - 1 + parts.get("days", 0) + 7 * parts.get("weeks", 0)
    return first + timedelta(days=days, hours=parts.get("hours", 0),
                             minutes=parts.get("minutes", 0), seconds=parts.get("seconds", 0))


def expiry_from(spec: str, now: datetime) -> str:
    """expires_at of a snapshot taken at `now` under snapshots.expiry `spec`: "" (never) for
    an empty spec, else an ISO-8601 UTC time with a Z. BadRequest on a malformed spec."""
    if not spec.strip():
        return ""
    try:
        return clock.iso(add_expiry(spec.strip(), now))
    except ValueError as e:
        raise BadRequest(f"Invalid snapshot expiry {spec!r}: expected {e}") from None
    except OverflowError:
        raise BadRequest(f"Invalid snapshot expiry {spec!r}: the date is out of range") \
            from None


# --- snapshots.schedule ------------------------------------------------------------------

_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
            "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@annually": "0 0 1 1 *",
            "@yearly": "0 0 1 1 *"}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                "dec")
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, _MONTH_NAMES), (0, 7, _DOW_NAMES))


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (7 is folded into 0)
    any_day: bool  # day-of-month or day-of-week starts with '*': AND them, else OR (Vixie)

    def day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        return dom and dow if self.any_day else dom or dow

    def next_after(self, after: datetime, until: datetime) -> datetime | None:
        """The first matching minute > `after` and <= `until`, else None. Skips whole
        months, days and hours that cannot match, so a gap of years costs little."""
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while t <= until:
            if t.month not in self.months:
                t = _next_month(t)
            elif not self.day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        return None


def _next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


def _number(text: str, names: tuple[str, ...], low: int) -> int:
    low_text = text.lower()
    return names.index(low_text) + low if low_text in names else int(text)


def _field(text: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """One cron field (already validated): lists, ranges, steps, names; 'N/s' means N-high/s
    (as robfig/cron, which LXD and Incus use)."""
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            first, last = low, high
        else:
            a, dash, b = base.partition("-")
            first = _number(a, names, low)
            last = _number(b, names, low) if dash else (high if step_text else first)
        values.update(range(first, last + 1, step))
    return values


def parse_entry(entry: str) -> Cron | None:
    """One schedule entry as a Cron; None for @startup and @never (no time of their own)."""
    entry = _ALIASES.get(entry.strip(), entry.strip())
    if entry.startswith("@"):
        return None
    texts = entry.split()
    sets = [_field(t, lo, hi, names) for t, (lo, hi, names) in zip(texts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return Cron(frozenset(sets[0]), frozenset(sets[1]), frozenset(sets[2]), frozenset(sets[3]),
                weekdays, texts[2].startswith(("*", "?")) or texts[4].startswith(("*", "?")))


def parse_schedule(schedule: str) -> list[Cron]:
    """The timed entries of a snapshots.schedule ('0 6 * * *, @weekly'); ValueError (what is
    accepted) when config.validate refuses it."""
    if not schedule.strip():
        return []
    check_schedule(schedule)
    return [c for c in (parse_entry(e) for e in schedule.split(", ")) if c is not None]


def due(schedule: str, last: datetime, now: datetime) -> bool:
    """Whether any minute the schedule names lies in (last, now]: one answer however long the
    gap (a daemon asleep for days takes one snapshot, not one per missed minute)."""
    if now <= last:
        return False
    return any(c.next_after(last, now) is not None for c in parse_schedule(schedule))


def has_startup(schedule: str) -> bool:
    """@startup in the list: a snapshot when the daemon starts (of running instances)."""
    return any(e.strip() == "@startup" for e in schedule.split(", "))

