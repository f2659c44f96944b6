"""Autostart and host shutdown against a private machined (stopped and started by the tests):
boot.autostart / last-state, priority and delay order, the parallel group, boot.stop.priority
batches and boot.host_shutdown_timeout then kill, 3 failed attempts -> a warning, the API
during autostart, and a plain SIGTERM that leaves everything running. Order is observed in
the daemon log (timestamps) and in each container's state.json (started_at)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, Daemon, built_image, is_root, spawn_daemon

pytestmark = pytest.mark.skipif(not is_root, reason="needs root")

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")
HANG_INIT = "#!/bin/sh\n# No signal handler: as PID 1 it ignores every halt signal.\n" \
            "while true; do sleep 1; done\n"


@pytest.fixture(scope="module")
def d():
    with spawn_daemon(env={"MACHINED_AUTOSTART_RETRY": "0.3"}) as daemon:
        daemon.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
                  "--alias", "busybox")
        yield daemon


# Helpers


def log_offset(d: Daemon) -> int:
    path = d.root / "logs" / "machined.log"
    return path.stat().st_size if path.exists() else 0


def events(d: Daemon, offset: int) -> list[tuple[float, str]]:
    """(time, message) of the daemon log lines written after `offset`."""
    text = (d.root / "logs" / "machined.log").read_bytes()[offset:].decode(errors="replace")
    found = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append((when, m.group(2)))
    return found


def when(evs: list[tuple[float, str]], message: str) -> float:
    hits = [t for t, m in evs if m == message or m.startswith(message + " (")]
    assert len(hits) == 1, f"{message!r} logged {len(hits)} times"
    return hits[0]


def wait_log(d: Daemon, offset: int, message: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(m.startswith(message) for _, m in events(d, offset)):
        assert time.monotonic() < deadline, f"no {message!r} in the daemon log"
        time.sleep(0.1)


def machined_shutdown(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([d.machined_path, "shutdown", *args], env=d.env,
                          capture_output=True, text=True, timeout=120)


def gone(d: Daemon) -> None:
    """The daemon process has exited by itself: reap it."""
    assert d.proc is not None
    assert d.proc.wait(timeout=10) == 0
    d.proc = None


def ensure_running(d: Daemon) -> None:
    if d.proc is None:
        d.start()


def state_json(d: Daemon, name: str) -> dict:
    return json.loads((d.root / "run" / name / "state.json").read_text())


def init_pids(d: Daemon) -> dict[str, int]:
    return {i["name"]: i["state"]["pid"] for i in d.instances()
            if i["status"] == "Running" and i["name"].startswith("t7a-")}


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def power_states(d: Daemon) -> dict[str, str]:
    """volatile.last_state.power per instance, read from the database file (the daemon may
    be down)."""
    db = sqlite3.connect(f"file:{d.root / 'database/machined.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT i.name, c.value FROM instances i JOIN instances_config c ON "
            "c.instance_id = i.id WHERE c.key = 'volatile.last_state.power'").fetchall()
    finally:
        db.close()
    return dict(rows)


def launch(d: Daemon, name: str, *config: str, start: bool = True) -> None:
    d.ok("init", "busybox", name)
    for item in config:
        key, _, value = item.partition("=")
        d.ok("config", "set", name, key, value)
    if start:
        d.ok("start", name)


def delete_all(d: Daemon) -> None:
    ensure_running(d)
    for inst in d.instances():
        if inst["name"].startswith("t7a-"):
            d.ok("delete", "--force", inst["name"])


# Tests


def test_host_shutdown_batches_then_autostart_order(d, tmp_path):
    """One simulated host reboot: `machined shutdown` stops the running instances in
    boot.stop.priority batches (a hung one killed after its timeout) and records them;
    the next daemon start brings back boot.autostart=true and last-state ones in order."""
    ensure_running(d)
    auto = "boot.autostart=true"
    launch(d, "t7a-fa", auto, "boot.stop.priority=10")
    launch(d, "t7a-fb", auto, "boot.stop.priority=10")
    launch(d, "t7a-p10", auto, "boot.autostart.priority=10", "boot.autostart.delay=1",
           "boot.stop.priority=20")
    launch(d, "t7a-p5a", auto, "boot.autostart.priority=5")
    launch(d, "t7a-p5b", auto, "boot.autostart.priority=5", start=False)  # true: starts
    launch(d, "t7a-ls")  # unset, running: last-state brings it back
    launch(d, "t7a-st")  # unset, stopped by the user: stays stopped
    d.ok("stop", "t7a-st")
    launch(d, "t7a-off", "boot.autostart=false")  # false wins over last-state
    d.ok("launch", "busybox", "t7a-eph", "--ephemeral")  # survives a host shutdown (LXD)
    init = tmp_path / "init"
    init.write_text(HANG_INIT)
    launch(d, "t7a-hang", "boot.host_shutdown_timeout=4", "boot.stop.priority=-5",
           start=False)
    d.ok("file", "push", "--mode", "0755", os.fspath(init), "t7a-hang/sbin/init")
    d.ok("start", "t7a-hang")
    before = init_pids(d)
    running = {"t7a-fa", "t7a-fb", "t7a-p10", "t7a-p5a", "t7a-ls", "t7a-off", "t7a-hang",
               "t7a-eph"}
    assert set(before) == running

    offset = log_offset(d)
    res = machined_shutdown(d)
    assert res.returncode == 0, res.stderr
    gone(d)  # `machined shutdown` returned only once the daemon had exited
    assert not any(alive(pid) for pid in before.values())
    evs = events(d, offset)
    batches = [["t7a-p10"], ["t7a-fa", "t7a-fb"],
               ["t7a-eph", "t7a-ls", "t7a-off", "t7a-p5a"], ["t7a-hang"]]
    begun = {n: when(evs, f"Host shutdown: stopping instance {n}") for n in running}
    ended = {n: when(evs, f"Stopped instance {n}") for n in running}
    for batch in batches:  # a batch stops together: all begin before any has stopped
        assert max(begun[n] for n in batch) <= min(ended[n] for n in batch)
    for first, then in zip(batches, batches[1:], strict=False):  # the next batch waits
        assert max(ended[n] for n in first) <= min(begun[n] for n in then)
    hung = ended["t7a-hang"] - begun["t7a-hang"]
    assert 3.9 <= hung < 15, f"the hung container was killed after {hung:.1f} s"
    took = {n: round(ended[n] - begun[n], 2) for n in running - {"t7a-hang"}}
    assert all(t < 3.5 for t in took.values()), took  # busybox halts in ~2 s
    power = power_states(d)
    assert {n for n, p in power.items() if p == "RUNNING"} == running
    assert power["t7a-st"] == "STOPPED" and power["t7a-p5b"] == "STOPPED"

    # The simulated host boot: the daemon starts and autostarts.
    offset = log_offset(d)
    d.start()
    api_ready = time.time()
    wait_log(d, offset, "Autostart finished")
    evs = events(d, offset)
    expected = {"t7a-fa", "t7a-fb", "t7a-p10", "t7a-p5a", "t7a-p5b", "t7a-ls", "t7a-hang",
                "t7a-eph"}
    assert set(init_pids(d)) == expected
    tries = {n: when(evs, f"Autostarting instance {n}") for n in expected}
    started = {n: when(evs, f"Started instance {n}") for n in expected}
    assert not any(f"Autostarting instance {n}" in m for _, m in evs for n in ("t7a-st",
                                                                                "t7a-off"))
    # Neither priority nor delay: all together (at least 4 at a time), before the rest.
    parallel = ["t7a-eph", "t7a-fa", "t7a-fb", "t7a-hang", "t7a-ls"]
    first4 = parallel[:4]  # by name, 4 at a time
    assert max(tries[n] for n in first4) <= min(started[n] for n in first4)
    assert max(started[n] for n in parallel) <= tries["t7a-p10"]
    # Then priority descending, name ascending, one at a time; the delay after p10.
    assert started["t7a-p10"] + 1.0 <= tries["t7a-p5a"] < started["t7a-p10"] + 2.0
    assert started["t7a-p5a"] <= tries["t7a-p5b"]
    # The API answered while autostart was still starting instances.
    assert state_json(d, "t7a-p5b")["started_at"] > api_ready
    delete_all(d)


def test_failed_autostart_is_retried_then_warned_until_it_succeeds(d, tmp_path):
    ensure_running(d)
    source = Path(tempfile.mkdtemp(prefix="t7a-src-"))
    try:
        for name in ("t7a-bad", "t7a-bad2"):
            launch(d, name, "boot.autostart=true", start=False)
            d.ok("config", "device", "add", name, "data", "disk", f"source={source}",
                 "path=/mnt/data")
        launch(d, "t7a-keep")
        pids = init_pids(d)
        source.rmdir()  # its start now fails

        offset = log_offset(d)
        d.kill()  # SIGTERM: a plain restart
        d.start()
        wait_log(d, offset, "Autostart finished")
        evs = events(d, offset)
        fails = [t for t, m in evs if m.startswith("Autostart of instance t7a-bad failed")]
        assert len(fails) == 3
        assert all(b - a >= 0.3 for a, b in zip(fails, fails[1:], strict=False))
        assert init_pids(d) == pids  # the restart kept t7a-keep as it was
        assert not any("t7a-keep" in m for _, m in evs if "Autostart" in m)

        listed = json.loads(d.ok("warning", "list", "--format", "json"))
        assert sorted((w["type"], w["entity_url"], w["count"], w["status"])
                      for w in listed) == [
            ("instance-autostart-failure", "/1.0/instances/t7a-bad", 1, "new"),
            ("instance-autostart-failure", "/1.0/instances/t7a-bad2", 1, "new")]
        first = next(w for w in listed if w["entity_url"] == "/1.0/instances/t7a-bad")
        uuid = first["uuid"]
        assert "t7a-bad" in first["last_message"] and "data" in first["last_message"]
        table = d.ok("warning", "list")
        assert "instance-autostart-failure" in table and "NEW" in table
        assert "/1.0/instances/t7a-bad" in table and "LAST SEEN" in table
        info = d.ok("info", "t7a-bad")
        assert "\nWarnings:\n  instance-autostart-failure (new, once, last " in info
        assert "Warnings:" not in d.ok("info", "t7a-keep")

        d.ok("warning", "acknowledge", uuid)
        assert uuid not in d.ok("warning", "list")
        assert "ACKNOWLEDGED" in d.ok("warning", "list", "--all")
        assert "status: acknowledged" in d.ok("warning", "show", uuid)
        bad = d.mc("warning", "delete", "no-such-uuid")
        assert bad.code == 1 and "not found" in bad.err
        res = d.mc("warning", "list", "-c", "uX")
        assert res.code == 2 and 'unknown column "X"' in res.err
        d.ok("warning", "delete", uuid)
        left = json.loads(d.ok("warning", "list", "--all", "--format", "json"))
        assert [w["entity_url"] for w in left] == ["/1.0/instances/t7a-bad2"]
        d.ok("delete", "t7a-bad2")

        # Still failing at the next start: warned again (the deleted instance's warning
        # is gone); then fixed: the warning goes.
        offset = log_offset(d)
        d.kill()
        d.start()
        wait_log(d, offset, "Autostart finished")
        again = json.loads(d.ok("warning", "list", "--format", "json"))
        assert [(w["entity_url"], w["count"]) for w in again] == [("/1.0/instances/t7a-bad",
                                                                   1)]
        source.mkdir()
        offset = log_offset(d)
        d.kill()
        d.start()
        wait_log(d, offset, "Autostart finished")
        assert "t7a-bad" in init_pids(d)
        assert json.loads(d.ok("warning", "list", "--all", "--format", "json")) == []
        assert "Warnings:" not in d.ok("info", "t7a-bad")
    finally:
        delete_all(d)
        shutil.rmtree(source, ignore_errors=True)


def test_warning_api_validates_status(d):
    from cli.errors import ApiError

    ensure_running(d)
    with pytest.raises(ApiError) as err:
        d.api("GET", "/1.0/warnings/nope")
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        d.api("GET", "/1.0/warnings?project=other")
    assert err.value.status == 404 and "only 'default'" in err.value.message
    assert d.api("GET", "/1.0/warnings") == []
    # A status for an existing warning is checked before the lookup would matter.
    with pytest.raises(ApiError) as err:
        d.api("PUT", "/1.0/warnings/nope", {"status": "resolved"})
    assert err.value.status == 400
    assert err.value.message == ("Invalid warning status 'resolved': accepted values are "
                                 "new and acknowledged")
    with pytest.raises(ApiError) as err:
        d.api("PATCH", "/1.0/warnings/nope", {"status": "new", "severity": "high"})
    assert err.value.status == 400 and "'severity'" in err.value.message


def test_plain_stop_and_restart_leave_containers_running(d, tmp_path):
    """SIGTERM (a service restart, an upgrade): containers keep running with the same init,
    nothing is recorded that would stop them, and the new daemon starts nothing."""
    ensure_running(d)
    launch(d, "t7a-r1")
    launch(d, "t7a-r2", "boot.autostart=true")
    pids = init_pids(d)
    power = power_states(d)
    offset = log_offset(d)
    d.kill(signal.SIGTERM)
    assert all(alive(pid) for pid in pids.values())
    assert power_states(d) == power
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:  # as systemd would
        notify.bind(os.fspath(tmp_path / "notify"))
        notify.settimeout(30)
        d.env["NOTIFY_SOCKET"] = os.fspath(tmp_path / "notify")
        try:
            d.start()
        finally:
            del d.env["NOTIFY_SOCKET"]
        assert notify.recv(100) == b"READY=1"  # Type=notify
    assert init_pids(d) == pids
    assert not any(m.startswith(("Autostart", "Stopped instance", "Host shutdown"))
                   for _, m in events(d, offset))
    # --if-host-stopping (systemd's ExecStop) on a host that is not powering off: nothing.
    res = machined_shutdown(d, "--if-host-stopping")
    assert res.returncode == 0 and "instances keep running" in res.stdout
    assert d.proc is not None and d.proc.poll() is None
    assert init_pids(d) == pids
    delete_all(d)


def test_sigpwr_is_a_host_shutdown(d):
    ensure_running(d)
    launch(d, "t7a-pwr")
    pid = init_pids(d)["t7a-pwr"]
    offset = log_offset(d)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGPWR)
    gone(d)
    assert not alive(pid)
    assert "Stopped instance t7a-pwr" in [m for _, m in events(d, offset)]
    assert power_states(d)["t7a-pwr"] == "RUNNING"
    res = machined_shutdown(d)  # no daemon now
    assert res.returncode == 1
    assert res.stderr.startswith("Error: machined is not running (nothing answers on ")
    assert len(res.stderr.splitlines()) == 1
    res = machined_shutdown(d, "--timeout", "0")
    assert res.returncode == 1 and res.stderr == (
        "Error: --timeout must be a positive number of seconds, not 0\n")
    d.start()
    deadline = time.monotonic() + 30
    while "t7a-pwr" not in init_pids(d):
        assert time.monotonic() < deadline, "t7a-pwr did not come back"
        time.sleep(0.1)
    delete_all(d)


def test_internal_shutdown_is_refused_over_https(d, tmp_path):
    from cli import tls, trust_join
    from cli.client import Client
    from cli.errors import ApiError
    from tests.daemon.test_https_trust import free_port

    ensure_running(d)
    port = free_port()
    d.ok("config", "set", "core.https_address", f"127.0.0.1:{port}")
    try:
        token = d.ok("config", "trust", "add", "t7a-admin").splitlines()[1]
        crt, key = tls.client_cert_paths(tmp_path / "t7a-admin")
        url, pem = trust_join.find_server(trust_join.parse_token(token))
        assert trust_join.join(url, token, pem, crt, key)["auth"] == "trusted"
        client = Client(url=url, ssl_context=tls.client_context(pem, (crt, key)))
        try:
            assert client.call("GET", "/1.0/warnings") == []  # trusted indeed
            with pytest.raises(ApiError) as err:
                client.call("PUT", "/internal/shutdown")
            assert err.value.status == 403
            assert "only available on the local unix socket" in err.value.message
        finally:
            client.close()
        assert d.proc is not None and d.proc.poll() is None
    finally:
        d.ok("config", "unset", "core.https_address")


def test_systemd_unit_verifies(tmp_path):
    """The unit as shipped (its /usr/local/bin paths pointed at this checkout's machined,
    which setup.sh links there) passes `systemd-analyze verify`; never installed here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (REPO / "packaging/systemd/machined.service").read_text()
    assert "KillMode=process" in text and "Delegate=yes" in text
    assert "ExecStop=/usr/local/bin/machined shutdown --if-host-stopping" in text
    unit = tmp_path / "machined.service"
    unit.write_text(text.replace("/usr/local/bin/machined", os.fspath(BIN / "machined")))
    res = subprocess.run([analyze, "verify", os.fspath(unit)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "machined.service" not in res.stderr, res.stderr
