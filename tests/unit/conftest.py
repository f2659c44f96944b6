"""Unit tests cannot touch the host by accident: starting any program fails them. A test that
really needs one (none does today) would opt in with @pytest.mark.allow_subprocess."""

from __future__ import annotations

import os
import subprocess

import pytest


class UnexpectedSubprocess(BaseException):
    """A BaseException, so that no `except Exception` in the code under test swallows it."""


@pytest.fixture(autouse=True)
def _no_subprocess(request, monkeypatch):
    if request.node.get_closest_marker("allow_subprocess"):
        return

    def refuse(*args, **kwargs):
        raise UnexpectedSubprocess(f"unit test started a program: {args[:1]!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    monkeypatch.setattr(os, "fork", refuse)


@pytest.fixture(autouse=True)
def _own_client_config(tmp_path_factory, monkeypatch):
    """mc's client config (remotes) comes from an empty $MC_CONF, never the user's."""
    monkeypatch.setenv("MC_CONF", str(tmp_path_factory.mktemp("mc-conf")))
