"""Validators and the parsers behind them (pure, stdlib only).

A Validator checks one raw string value and raises ValueError with a phrase saying what is
accepted; its `accepts` attribute is the same phrase, which the docs page shows. The empty
string is never passed in: it means "unset" and is handled by the caller.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_UNITS = {
    "": 1, "B": 1,
    "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15, "EB": 10**18,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50, "EiB": 2**60,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKMGTPE]i?B|B)?$")
# Kernel limits for CFS bandwidth (kernel/sched/core.c): period 1 ms .. 1 s, quota >= 1 ms.
CFS_MIN_US = 1000
CFS_MAX_PERIOD_US = 1_000_000
CPU_MAX = 8192  # NR_CPUS of distribution kernels: a bigger CPU number is a typo


class Validator:
    """A named check: `check(value)` returns False or raises ValueError(phrase) to refuse
    (parsers are wrapped with _parses: their result, even False, is not a verdict)."""

    def __init__(self, accepts: str, check: Callable[[str], object]) -> None:
        self.accepts = accepts
        self._check = check

    def __call__(self, value: str) -> None:
        try:
            ok = self._check(value)
        except ValueError as e:
            raise ValueError(str(e) or self.accepts) from None
        if ok is False:
            raise ValueError(self.accepts)


# Parsers: each returns the parsed value or raises ValueError with what is accepted.

def parse_bool(value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("a boolean (true/false, yes/no, on/off, 1/0)")


def parse_size(value: str) -> int:
    """'512MiB' -> 536870912. Units as LXD: kB/MB/GB (powers of 10), KiB/MiB/GiB (powers of 2)."""
    match = _SIZE.match(value.strip())
    unit = match.group(2) if match else None
    if unit == "KB":
        unit = "kB"
    if not match or (unit or "") not in _UNITS:
        raise ValueError("a size such as 512MiB, 2GiB or 1000000 (bytes)")
    return int(float(match.group(1)) * _UNITS[unit or ""])


def parse_cpuset(value: str) -> list[int]:
    """'0-2,7' -> [0, 1, 2, 7]; ranges must go upwards."""
    cpus: set[int] = set()
    for part in value.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError("a CPU set like 0-3,7")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or last >= CPU_MAX:
            raise ValueError(f"a CPU set like 0-3,7 with ranges going upwards and CPUs below "
                             f"{CPU_MAX}")
        cpus.update(range(first, last + 1))
    return sorted(cpus)


_DURATION = re.compile(r"^(\d+)(us|ms|s)$")
_US = {"us": 1, "ms": 1000, "s": 1_000_000}
_ALLOWANCE = "a percentage from 1% to 100%, or a CFS quota/period like 25ms/100ms"


def parse_allowance(value: str) -> tuple[int, int] | int:
    """limits.cpu.allowance: '50%' -> 50; '25ms/100ms' -> (25000, 100000) microseconds."""
    if value.endswith("%"):
        pct = value[:-1]
        if not pct.isdigit() or not 1 <= int(pct) <= 100:
            raise ValueError(_ALLOWANCE)
        return int(pct)
    quota_s, sep, period_s = value.partition("/")
    quota, period = _DURATION.match(quota_s), _DURATION.match(period_s)
    if not sep or not quota or not period:
        raise ValueError(_ALLOWANCE)
    q = int(quota.group(1)) * _US[quota.group(2)]
    p = int(period.group(1)) * _US[period.group(2)]
    if q < CFS_MIN_US or not CFS_MIN_US <= p <= CFS_MAX_PERIOD_US:
        raise ValueError("a CFS quota/period like 25ms/100ms with a quota of at least 1ms and "
                         "a period from 1ms to 1s")
    return q, p


_EXPIRY = re.compile(r"^(\d+)([SMHdwmy])$")
EXPIRY_UNITS = {"S": "seconds", "M": "minutes", "H": "hours", "d": "days", "w": "weeks",
                "m": "months", "y": "years"}
_EXPIRY_ACCEPTS = ("an expiry like '1d 12H': numbers with a unit S (second), M (minute), "
                   "H (hour), d, w, m (month) or y, separated by spaces")


def parse_expiry(value: str) -> dict[str, int]:
    """'1M 2H 3d' -> {"minutes": 1, "hours": 2, "days": 3}; each unit at most once."""
    out: dict[str, int] = {}
    for part in value.split(" "):
        match = _EXPIRY.match(part)
        if not match:
            raise ValueError(_EXPIRY_ACCEPTS)
        unit = EXPIRY_UNITS[match.group(2)]
        if unit in out:
            raise ValueError(_EXPIRY_ACCEPTS + ", each unit at most once")
        out[unit] = int(match.group(1))
    return out


SCHEDULE_ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@annually",
                    "@yearly", "@startup", "@never")
_CRON_FIELDS = (  # (low, high, names) of minute, hour, day of month, month, day of week
    (0, 59, ()), (0, 23, ()), (1, 31, ()),
    (1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
             "dec")),
    (0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_SCHEDULE_ACCEPTS = ("a cron expression 'minute hour day-of-month month day-of-week' "
                     "(e.g. '0 6 * * *') or one of " + ", ".join(SCHEDULE_ALIASES)
                     + "; several separated by ', '")


def _cron_number(text: str, low: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + low
    if not text.isdigit():
        raise ValueError(_SCHEDULE_ACCEPTS)
    return int(text)


def _cron_field(text: str, low: int, high: int, names: tuple[str, ...]) -> None:
    for item in text.split(","):
        base, sep, step = item.partition("/")
        if sep and (not step.isdigit() or int(step) == 0):
            raise ValueError(_SCHEDULE_ACCEPTS)
        if base in ("*", "?"):
            continue
        first, dash, last = base.partition("-")
        a = _cron_number(first, low, names)
        b = _cron_number(last, low, names) if dash else a
        if not low <= a <= b <= high:
            raise ValueError(f"{_SCHEDULE_ACCEPTS} (a field value {item!r} is out of range "
                             f"{low}-{high})")


def check_schedule(value: str) -> None:
    """snapshots.schedule: cron or @alias entries, separated by ', ' as LXD's."""
    for entry in value.split(", "):
        entry = entry.strip()
        if entry.startswith("@"):
            if entry not in SCHEDULE_ALIASES:
                raise ValueError(_SCHEDULE_ACCEPTS)
            continue
        fields = entry.split()
        if len(fields) != 5:
            raise ValueError(_SCHEDULE_ACCEPTS)
        for text, (low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
            _cron_field(text, low, high, names)


def check_listen_address(value: str) -> None:
    """core.https_address: [host][:port], host an IP (IPv6 in brackets) or a DNS name."""
    accepts = "a listen address like :8443, 0.0.0.0:8443, [::]:8443 or host.example:8443"
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not _is_ip(host, 6) or (rest and not rest.startswith(":")):
            raise ValueError(accepts)
        port, has_port = rest[1:], bool(rest)
    elif value.count(":") > 1:
        if not _is_ip(value, 6):  # a bare IPv6 address, no port
            raise ValueError(accepts)
        return
    else:
        host, sep, port = value.partition(":")
        has_port = bool(sep)
        if host and not _is_ip(host, 4) and not _is_hostname(host):
            raise ValueError(accepts)
    if has_port and (not port.isdigit() or not 1 <= int(port) <= 65535):
        raise ValueError(accepts + " (port 1-65535)")


_LABEL = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def _is_hostname(text: str) -> bool:
    """A DNS name (labels checked one by one: no backtracking regex over the whole name),
    not something that looks like a mistyped IPv4 address."""
    labels = text.removesuffix(".").split(".")
    return (len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
            and not all(label.isdigit() for label in labels))


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def is_utf8(text: str) -> bool:
    """False for strings holding lone surrogates (undecodable bytes from a client's argv or
    file names): they cannot be stored or sent as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Validators (what the key tables use).

def _parses(parser: Callable[[str], object]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        parser(value)
        return True
    return check


def one_of(*choices: str) -> Validator:
    return Validator("one of: " + ", ".join(choices), lambda v: v in choices)


def any_of(*validators: Validator) -> Validator:
    def check(value: str) -> bool:
        for validator in validators:
            try:
                validator(value)
                return True
            except ValueError:
                continue
        return False
    return Validator(" or ".join(v.accepts for v in validators), check)


def int_range(low: int | None = None, high: int | None = None) -> Validator:
    if low is not None and high is not None:
        accepts = f"an integer from {low} to {high}"
    elif low == 0:
        accepts = "a non-negative integer"
    elif low == 1:
        accepts = "a positive integer"
    elif low is not None:
        accepts = f"an integer of at least {low}"
    else:
        accepts = "an integer"

    def check(value: str) -> bool:
        if not re.fullmatch(r"-?\d+", value):
            return False
        n = int(value)
        return (low is None or n >= low) and (high is None or n <= high)
    return Validator(accepts, check)


def _size(value: str) -> bool:
    parse_size(value)
    return True


def _memory(value: str) -> bool:
    if value.endswith("%"):
        pct = value[:-1]
        return pct.replace(".", "", 1).isdigit() and 0 < float(pct) <= 100
    try:
        return parse_size(value) > 0
    except ValueError:
        return False


def _cpu(value: str) -> bool:
    if value.isdigit():
        return 1 <= int(value) <= CPU_MAX
    try:
        parse_cpuset(value)
    except ValueError:
        return False
    return True


def _single_line(value: str) -> bool:
    return not any(c in value for c in "\n\r\0")


def _snapshot_pattern(value: str) -> bool:
    if not _single_line(value):
        return False
    # The template renderer lives with the names it makes; imported here, not at the top,
    # because instances/schedule.py imports this module.
    from machined.instances.schedule import check_pattern

    check_pattern(value)
    return True


is_any = Validator("any value", lambda v: True)
is_bool = Validator("a boolean (true/false, yes/no, on/off, 1/0)",
                    _parses(parse_bool))
is_int = int_range()
is_uint = int_range(0)
is_uint32 = int_range(0, 2**32 - 1)
is_positive = int_range(1)
is_priority = int_range(0, 10)
is_size = Validator("a size like 512MiB, 2GiB or 1000000 (bytes)", _size)
is_memory_limit = Validator("a non-zero size like 512MiB or 2GiB, or a percentage of host "
                            "memory from 0% (excluded) to 100%", _memory)
is_cpu_limit = Validator("a CPU count like 2, or a CPU set like 0-3,7 (ranges going upwards)",
                         _cpu)
is_cpu_allowance = Validator(_ALLOWANCE, _parses(parse_allowance))
is_expiry = Validator(_EXPIRY_ACCEPTS, _parses(parse_expiry))
is_schedule = Validator(_SCHEDULE_ACCEPTS, _parses(check_schedule))
is_listen_address = Validator("a listen address like :8443, 0.0.0.0:8443, [::]:8443 or "
                              "host.example:8443", _parses(check_listen_address))
single_line = Validator("a single line (no newline or NUL characters)", _single_line)
is_snapshot_pattern = Validator(
    "a name template on one line with at most one %d and only "
    "{{ creation_date|date:\"2006-01-02\" }} expressions, giving a valid snapshot name",
    _snapshot_pattern)
