"""Hostile inputs to the pure storage and snapshot rules (issue 5 security review): pattern
rendering stays linear, mount(8)'s own options cannot ride in btrfs.mount_options."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from machined.config import validate_instance_config
from machined.errors import BadRequest
from machined.instances import schedule
from machined.storage import model

T = datetime(2024, 3, 5, 7, 8, 9, tzinfo=UTC)


@pytest.mark.parametrize("pattern", [
    "{{" + " " * 1000,  # was cubic: ~5 s for this, minutes for 4000 spaces
    "{{" + " " * 1000 + "x",
    "{{-" + "\t" * 1000 + "-",
    "{{" * 500,
    "{{ creation_date }}" * 50 + "{{",
])
def test_hostile_patterns_are_refused_at_once(pattern):
    started = time.monotonic()
    with pytest.raises(ValueError):
        schedule.render_pattern(pattern, T)
    with pytest.raises(BadRequest):
        validate_instance_config({"snapshots.pattern": pattern})
    assert time.monotonic() - started < 0.2


def test_long_patterns_are_refused_with_the_limit():
    with pytest.raises(BadRequest, match=r"at most 1024 characters"):
        validate_instance_config({"snapshots.pattern": "a" * 1025})
    started = time.monotonic()
    with pytest.raises(ValueError):
        schedule.render_pattern('{{ creation_date|date:"' + "2006" * 300 + '" }}', T)
    assert time.monotonic() - started < 0.2


@pytest.mark.parametrize("pattern,name", [
    ('{{ creation_date|date:"2006-01-02" }}', "2024-03-05"),
    ('{{- creation_date|date:"2006-01-02" -}}-%d', "2024-03-05-0"),
    ("{{creation_date|date:'15h04'}}", "07h08"),
    ("{{-creation_date|date:'Jan'-}}", "Mar"),
    ("snap%d", "snap0"),
])
def test_patterns_still_render(pattern, name):
    assert schedule.snapshot_name(pattern, set(), T) == name


@pytest.mark.parametrize("options", [
    "helper=../../tmp/x",  # mount(8) runs /sbin/mount.<helper>
    "uhelper=x",
    "user_subvol_rm_allowed,user",  # user/users/owner/group imply noexec,nosuid,nodev
    "users",
    "owner",
    "group",
])
def test_mount8_options_are_refused(options):
    with pytest.raises(BadRequest, match="Invalid btrfs.mount_options"):
        model.validate_pool("btrfs", {"btrfs.mount_options": options})
    with pytest.raises(BadRequest, match="Invalid btrfs.mount_options"):
        model.check_update("btrfs", {}, {"btrfs.mount_options": options})


def test_plain_btrfs_options_stay_accepted():
    model.validate_pool("btrfs", {"btrfs.mount_options":
                                  "user_subvol_rm_allowed,compress=zstd:3,noatime"})
