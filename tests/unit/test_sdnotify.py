"""sd_notify for Type=notify (machined/sdnotify.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from machined.sdnotify import Notifier


def test_notifies_and_takes_the_variable_out_of_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.fspath(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        notifier = Notifier.from_env()
        assert "NOTIFY_SOCKET" not in os.environ  # helpers and containers never see it
        notifier.notify("READY=1")
        assert listener.recv(100) == b"READY=1"


def test_without_systemd_or_with_a_dead_socket_nothing_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    Notifier.from_env().notify("READY=1")
    Notifier(os.fspath(tmp_path / "gone")).notify("STOPPING=1")  # logged, not raised
