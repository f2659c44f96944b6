"""Auto-update and cache-expiry rules (machined/images/policy.py) and the test clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from machined import clock
from machined.images.policy import cache_expired, update_due

NOW = datetime(2026, 5, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("last", "interval", "due"), [
    ("", 6, True),                              # never checked: at once
    ("2026-05-10T06:00:00Z", 6, True),          # exactly the interval ago
    ("2026-05-10T06:00:01Z", 6, False),         # one second short
    ("2026-05-10T11:00:00Z", 1, True),
    ("2026-05-10T11:30:00Z", 1, False),
    ("2026-05-09T12:00:00Z", 24, True),
    ("2026-05-10T11:59:59Z", 0, False),         # 0 disables
    ("", 0, False),                             # even when never checked
    ("", -3, False),
    ("2026-05-10T18:00:00Z", 6, False),         # a check "in the future" (clock went back)
    ("not a time", 6, True),                    # unreadable: treated as never checked
    ("2026-05-10T06:00:00+00:00", 6, True),
])
def test_update_due(last, interval, due):
    assert update_due(last, interval, NOW) is due


@pytest.mark.parametrize(("used", "uploaded", "days", "expired"), [
    ("2026-04-30T12:00:00Z", "2026-01-01T00:00:00Z", 10, False),   # exactly 10 days: not yet
    ("2026-04-30T11:59:59Z", "2026-01-01T00:00:00Z", 10, True),
    ("2026-05-09T00:00:00Z", "2026-01-01T00:00:00Z", 10, False),   # recent use wins over age
    ("", "2026-04-30T11:59:59Z", 10, True),                        # never used: from upload
    ("", "2026-05-01T00:00:00Z", 10, False),
    ("2020-01-01T00:00:00Z", "2020-01-01T00:00:00Z", 0, False),    # 0 disables
    ("2020-01-01T00:00:00Z", "2020-01-01T00:00:00Z", -1, False),   # negative disables
    ("2026-05-08T12:00:00Z", "2026-01-01T00:00:00Z", 1, True),
    ("2026-05-09T12:00:00Z", "2026-01-01T00:00:00Z", 1, False),    # boundary: equal is kept
    ("", "", 10, False),                                           # no time: never expires
])
def test_cache_expired(used, uploaded, days, expired):
    assert cache_expired(used, uploaded, days, NOW) is expired


def test_clock_reads_the_test_file_each_call(tmp_path, monkeypatch):
    path = tmp_path / "clock"
    monkeypatch.setenv("MACHINED_TEST_CLOCK", str(path))
    before = datetime.now(UTC)
    assert clock.now() >= before                       # missing file: real time
    path.write_text("2030-01-02T03:04:05Z\n")
    assert clock.now() == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    path.write_text("2030-01-03T00:00:00")             # naive = UTC
    assert clock.iso(clock.now()) == "2030-01-03T00:00:00Z"
    path.write_text("garbage")
    assert clock.now() >= before


def test_task_tick(monkeypatch):
    monkeypatch.delenv("MACHINED_TASK_TICK", raising=False)
    assert clock.task_tick() == 60.0
    monkeypatch.setenv("MACHINED_TASK_TICK", "0.2")
    assert clock.task_tick() == 0.2
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("MACHINED_TASK_TICK", bad)
        assert clock.task_tick() == 60.0
