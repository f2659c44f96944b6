"""Scheduled snapshots, pure part (instances/schedule.py): names from snapshots.pattern,
expiry times, and whether a schedule fired between two instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from machined.config import validate_instance_config
from machined.errors import BadRequest
from machined.instances import schedule as s

T = datetime(2024, 3, 5, 7, 8, 9, 123456, tzinfo=UTC)  # a Tuesday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,existing,expected", [
    ("snap%d", set(), "snap0"),
    ("", set(), "snap0"),  # unset key: LXD's default snap%d
    ("snap%d", {"snap0"}, "snap1"),
    ("snap%d", {"snap0", "snap1", "snap2"}, "snap3"),
    # LXD's rule is one more than the highest number, not the lowest free one: a newer
    # snapshot never takes the name of an expired older one while later ones exist.
    ("snap%d", {"snap0", "snap2"}, "snap3"),
    ("snap%d", {"snap1"}, "snap2"),
    ("snap%d", {"snap9", "snap10"}, "snap11"),  # numbers, not strings: 10 > 9
    ("snap%d", {"snapx", "snap", "snap-1", "snap1a", "other5", "before-upgrade"}, "snap0"),
    ("auto-%d-x", {"auto-4-x", "auto-7-y"}, "auto-5-x"),
    ("%d", {"0", "1"}, "2"),
])
def test_pattern_index(pattern, existing, expected):
    assert s.snapshot_name(pattern, existing, T) == expected


@pytest.mark.parametrize("pattern,expected", [
    ('snap-{{ creation_date|date:"2006-01-02" }}', "snap-2024-03-05"),
    ("snap-{{ creation_date|date:'2006-01-02_15-04-05' }}", "snap-2024-03-05_07-08-09"),
    ('{{creation_date|date:"20060102T150405Z07:00"}}', "20240305T070809Z"),
    ('{{ creation_date | date : "Mon Jan _2 3:04PM MST" }}', "Tue Mar  5 7:08AM UTC"),
    ('{{ creation_date|date:"Monday January 2 06 002 __2 pm PM 03 1 5" }}',
     "Tuesday March 5 24 065  65 am AM 07 3 9"),
    ('{{ creation_date|date:"05.000 05.999999 05,9" }}', "09.123 09.123456 09,1"),
    ('{{ creation_date|date:"_2006" }}', "_2024"),  # Go: '_' then the year, not '_2'+'006'
    ('daily-{{ creation_date|date:"2006-01-02" }}-%d', "daily-2024-03-05-0"),
])
def test_pattern_dates_use_go_layouts(pattern, expected):
    assert s.snapshot_name(pattern, set(), T) == expected


def test_zones_print_as_utc():
    assert s.go_format(T, "-0700 -07:00 -07 -070000 -07:00:00") == \
        "+0000 +00:00 +00 +000000 +00:00:00"
    assert s.go_format(T, "Z0700 Z07:00 Z07 Z070000 Z07:00:00 MST") == "Z Z Z Z Z UTC"


def test_bare_creation_date_renders_as_gos_string():
    assert s.render_pattern("{{ creation_date }}", T) == "2024-03-05 07:08:09.123456 +0000 UTC"


def test_fraction_of_zero_is_omitted_with_nines():
    whole = T.replace(microsecond=0)
    assert s.go_format(whole, "05.999") == "09"
    assert s.go_format(whole, "05.000") == "09.000"


def test_pm_and_twelve_hour_clock():
    assert s.go_format(at("2024-01-01T00:05:00"), "3 03 PM") == "12 12 AM"
    assert s.go_format(at("2024-01-01T13:05:00"), "3 03 pm") == "1 01 pm"


@pytest.mark.parametrize("pattern,existing,expected", [
    ("nightly", set(), "nightly"),
    ("nightly", {"nightly"}, "nightly-0"),
    ("nightly", {"nightly", "nightly-0"}, "nightly-1"),
    ("nightly", {"nightly", "nightly-0", "nightly-5"}, "nightly-6"),
    ('d-{{ creation_date|date:"2006-01-02" }}', {"d-2024-03-05"}, "d-2024-03-05-0"),
])
def test_taken_name_without_index_gets_a_suffix(pattern, existing, expected):
    assert s.snapshot_name(pattern, existing, T) == expected


@pytest.mark.parametrize("pattern", [
    "a/%d", 'snap-{{ creation_date|date:"2006/01/02" }}', "snap%d%d",
    "{{ name }}", "{% if x %}a{% endif %}", '{{ creation_date|upper }}',
    '{{ creation_date|date:"" }}', ".", "..", "50%", "a+b%d", "a{{b", "{{ x }",
    # Go's String() has a '+' (the zone), which snapshot names refuse
    "{{ creation_date }}", '{{ creation_date|date:"-0700" }}',
])
def test_bad_patterns_are_refused_when_set_and_when_used(pattern):
    with pytest.raises(BadRequest) as e:
        validate_instance_config({"snapshots.pattern": pattern})
    assert "snapshots.pattern" in e.value.message and "\n" not in e.value.message
    with pytest.raises(BadRequest) as e:
        s.snapshot_name(pattern, set(), T)
    assert "\n" not in e.value.message


@pytest.mark.parametrize("pattern", [
    "snap%d", "nightly", 'snap-{{ creation_date|date:"2006-01-02_15-04-05" }}',
    "x{{creation_date|date:'Jan'}}%d", "a.b c",
])
def test_good_patterns_are_accepted(pattern):
    validate_instance_config({"snapshots.pattern": pattern})


def test_every_accepted_pattern_gives_a_valid_name():
    for pattern in ("snap%d", '{{ creation_date|date:"Mon Jan _2 15:04:05 MST 2006" }}', "a.b c"):
        validate_instance_config({"snapshots.pattern": pattern})
        s.check_snapshot_name(s.snapshot_name(pattern, set(), T))


# --- expiry ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [
    ("", ""),
    ("  ", ""),
    ("30S", "2024-03-05T07:08:39.123456Z"),
    ("2M", "2024-03-05T07:10:09.123456Z"),
    ("2H", "2024-03-05T09:08:09.123456Z"),
    ("3d", "2024-03-08T07:08:09.123456Z"),
    ("1w", "2024-03-12T07:08:09.123456Z"),
    ("1m", "2024-04-05T07:08:09.123456Z"),
    ("1y", "2025-03-05T07:08:09.123456Z"),
    ("1M 2H 3d 4w 5m 6y", "2030-09-05T09:09:09.123456Z"),
    ("10m", "2025-01-05T07:08:09.123456Z"),  # months carry into the year
    ("48H", "2024-03-07T07:08:09.123456Z"),
])
def test_expiry_units(spec, expected):
    assert s.expiry_from(spec, T) == expected


@pytest.mark.parametrize("start,spec,expected", [
    # Go's AddDate: the day overflows into the next month, it is not clamped.
    ("2023-01-31T00:00:00", "1m", "2023-03-03T00:00:00Z"),
    ("2024-01-31T00:00:00", "1m", "2024-03-02T00:00:00Z"),
    ("2024-02-29T12:00:00", "1y", "2025-03-01T12:00:00Z"),
    ("2024-12-31T23:59:00", "1M", "2025-01-01T00:00:00Z"),
])
def test_expiry_month_arithmetic_is_gos(start, spec, expected):
    assert s.expiry_from(spec, at(start)) == expected


@pytest.mark.parametrize("spec", ["3 days", "1d 2d", "1h", "-1d", "1.5d"])
def test_bad_expiry_is_one_line_bad_request(spec):
    with pytest.raises(BadRequest) as e:
        s.expiry_from(spec, T)
    assert spec in e.value.message and "\n" not in e.value.message


def test_expiry_beyond_year_9999_is_bad_request():
    with pytest.raises(BadRequest, match="out of range"):
        s.expiry_from("9000y", T)


# --- due ------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule,last,now,expected", [
    # the boundary minute is in (last, now]
    ("0 * * * *", "2024-01-01T10:30:00", "2024-01-01T11:00:00", True),
    ("0 * * * *", "2024-01-01T10:30:00", "2024-01-01T11:00:59", True),
    ("0 * * * *", "2024-01-01T10:30:00", "2024-01-01T10:59:59", False),
    ("0 * * * *", "2024-01-01T11:00:00", "2024-01-01T11:30:00", False),  # last is excluded
    ("0 * * * *", "2024-01-01T11:00:30", "2024-01-01T11:00:50", False),  # same minute again
    ("* * * * *", "2024-01-01T11:00:30", "2024-01-01T11:00:50", False),
    ("* * * * *", "2024-01-01T11:00:50", "2024-01-01T11:01:00", True),
    ("*/15 * * * *", "2024-01-01T10:01:00", "2024-01-01T10:14:59", False),
    ("*/15 * * * *", "2024-01-01T10:01:00", "2024-01-01T10:15:00", True),
    ("5/20 * * * *", "2024-01-01T10:26:00", "2024-01-01T10:45:00", True),  # 5, 25, 45
    ("5/20 * * * *", "2024-01-01T10:26:00", "2024-01-01T10:44:00", False),
    ("10-20/5 3 * * *", "2024-01-01T03:16:00", "2024-01-01T03:21:00", True),  # 20
    ("10-20/5 3 * * *", "2024-01-01T03:21:00", "2024-01-01T04:09:00", False),
    ("0,30 * * * *", "2024-01-01T10:01:00", "2024-01-01T10:30:00", True),
    # hours, days, months
    ("0 6 * * *", "2024-01-01T06:00:00", "2024-01-02T05:59:00", False),
    ("0 6 * * *", "2024-01-01T06:00:00", "2024-01-02T06:00:00", True),
    ("0 0 1 * *", "2024-01-31T23:00:00", "2024-02-01T00:00:00", True),
    ("0 0 31 * *", "2024-04-01T00:00:00", "2024-05-30T00:00:00", False),  # April has 30
    ("0 0 29 2 *", "2023-01-01T00:00:00", "2023-12-31T23:59:00", False),
    ("0 0 29 2 *", "2023-01-01T00:00:00", "2024-02-29T00:00:00", True),
    ("0 0 * jan-mar *", "2024-03-31T23:59:00", "2024-12-31T23:59:00", False),
    ("0 0 * dec *", "2024-11-30T00:00:00", "2024-12-01T00:00:00", True),
    ("0 12 * * mon-fri", "2024-03-09T00:00:00", "2024-03-10T23:59:00", False),  # weekend
    ("0 12 * * mon-fri", "2024-03-09T00:00:00", "2024-03-11T12:00:00", True),
    ("0 0 * * 7", "2024-03-09T00:00:00", "2024-03-10T00:00:00", True),  # 7 = Sunday
    ("0 0 * * 0", "2024-03-09T00:00:00", "2024-03-10T00:00:00", True),
    ("0 0 * * SUN", "2024-03-10T00:00:00", "2024-03-16T23:00:00", False),
    ("0 0 ? * *", "2024-03-09T00:00:00", "2024-03-10T00:00:00", True),
    # day of month and day of week: OR'ed when both are restricted (Vixie cron) ...
    ("0 0 13 * fri", "2024-03-01T00:00:00", "2024-03-01T00:00:00", False),
    ("0 0 13 * fri", "2024-03-07T00:00:00", "2024-03-08T00:00:00", True),  # a Friday
    ("0 0 13 * fri", "2024-03-12T00:00:00", "2024-03-13T00:00:00", True),  # a Wednesday
    ("0 0 13 * fri", "2024-03-08T00:00:00", "2024-03-12T23:59:00", False),
    # ... AND'ed when either starts with '*', including a stepped '*/2'
    ("0 0 */2 * fri", "2024-03-07T00:00:00", "2024-03-08T00:00:00", False),  # 8th is even
    ("0 0 */2 * fri", "2024-03-14T00:00:00", "2024-03-15T00:00:00", True),  # Fri 15th
    ("0 0 13 * *", "2024-03-07T00:00:00", "2024-03-12T23:59:00", False),
    # aliases
    ("@hourly", "2024-01-01T10:59:00", "2024-01-01T11:00:00", True),
    ("@hourly", "2024-01-01T11:00:00", "2024-01-01T11:59:00", False),
    ("@daily", "2024-01-01T00:00:00", "2024-01-01T23:59:00", False),
    ("@daily", "2024-01-01T23:59:00", "2024-01-02T00:00:00", True),
    ("@midnight", "2024-01-01T23:59:00", "2024-01-02T00:00:00", True),
    ("@weekly", "2024-03-09T00:00:00", "2024-03-10T00:00:00", True),  # Sunday
    ("@weekly", "2024-03-10T00:00:00", "2024-03-16T23:59:00", False),
    ("@monthly", "2024-02-01T00:00:00", "2024-02-29T23:59:00", False),
    ("@monthly", "2024-02-01T00:00:00", "2024-03-01T00:00:00", True),
    ("@yearly", "2024-01-01T00:00:00", "2024-12-31T23:59:00", False),
    ("@annually", "2024-01-01T00:00:00", "2025-01-01T00:00:00", True),
    ("@startup", "2024-01-01T00:00:00", "2025-01-01T00:00:00", False),
    ("@never", "2024-01-01T00:00:00", "2025-01-01T00:00:00", False),
    ("", "2024-01-01T00:00:00", "2025-01-01T00:00:00", False),
    # lists: any entry
    ("0 6 * * *, 0 18 * * *", "2024-01-01T06:00:00", "2024-01-01T17:59:00", False),
    ("0 6 * * *, 0 18 * * *", "2024-01-01T06:00:00", "2024-01-01T18:00:00", True),
    ("@startup, @hourly", "2024-01-01T10:30:00", "2024-01-01T11:00:00", True),
    ("@never, 0 0 1 1 *", "2024-06-01T00:00:00", "2025-01-01T00:00:00", True),
    # the clock going back never fires
    ("* * * * *", "2024-01-01T11:00:00", "2024-01-01T10:00:00", False),
])
def test_due(schedule, last, now, expected):
    assert s.due(schedule, at(last), at(now)) is expected


def test_due_over_a_gap_of_years_is_one_answer_and_quick():
    """A daemon down for a century: one 'yes' (one snapshot), computed by skipping months
    and days that cannot match, not minute by minute; an impossible date stays 'no'."""
    import time

    started = time.monotonic()
    assert s.due("0 0 13 * fri", at("2000-01-01T00:00:00"), at("2100-01-01T00:00:00"))
    assert not s.due("0 0 30 2 *", at("2000-01-01T00:00:00"), at("2100-01-01T00:00:00"))
    assert not s.due("59 23 31 2,4,6,9,11 *", at("2000-01-01T00:00:00"),
                     at("2100-01-01T00:00:00"))
    assert time.monotonic() - started < 1.0


def test_next_after_finds_the_exact_minute():
    cron = s.parse_schedule("30 2 1 * mon")[0]
    # After Tue 2024-03-05: Mondays OR the 1st -> Monday 2024-03-11 02:30.
    assert cron.next_after(T, at("2030-01-01T00:00:00")) == at("2024-03-11T02:30:00")
    assert cron.next_after(T, at("2024-03-11T02:29:59")) is None


def test_the_skipping_search_agrees_with_a_minute_by_minute_walk():
    """Five weeks of minutes, each tested by hand, against due() over one-minute windows
    and next_after() over the whole span (a mixed expression; Vixie AND because of '*/3')."""
    spec = "*/7 1-3,22 */3 * tue,sat"
    cron = s.parse_schedule(spec)[0]
    start = at("2024-02-26T00:00:00")
    minute = timedelta(minutes=1)
    fired = []
    t = start
    while t < start + timedelta(days=35):
        dom, dow = t.day % 3 == 1, t.isoweekday() % 7 in (2, 6)
        want = t.minute % 7 == 0 and t.hour in (1, 2, 3, 22) and dom and dow
        assert (cron.next_after(t - minute, t) is not None) is want, t
        if want:
            fired.append(t)
        t += minute
    assert fired and fired[0] == at("2024-03-16T01:00:00")  # Saturday the 16th
    assert cron.next_after(start, start + timedelta(days=35)) == fired[0]
    assert s.due(spec, fired[0] - minute, fired[0])
    assert not s.due(spec, fired[0], fired[0] + timedelta(minutes=6))


@pytest.mark.parametrize("schedule,expected", [
    ("@startup", True), ("@hourly, @startup", True), ("@startup, 0 6 * * *", True),
    ("@hourly", False), ("", False), ("@never", False),
])
def test_has_startup(schedule, expected):
    assert s.has_startup(schedule) is expected


@pytest.mark.parametrize("schedule", ["60 * * * *", "@often", "* * * *", "0 6 * * *,@daily"])
def test_parse_schedule_refuses_what_validation_refuses(schedule):
    with pytest.raises(ValueError):
        s.parse_schedule(schedule)
    with pytest.raises(BadRequest):
        validate_instance_config({"snapshots.schedule": schedule})


def test_schedule_stopped_key_is_a_bool():
    validate_instance_config({"snapshots.schedule.stopped": "true"})
    with pytest.raises(BadRequest, match="snapshots.schedule.stopped"):
        validate_instance_config({"snapshots.schedule.stopped": "sometimes"})
