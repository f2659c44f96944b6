"""`mc file push/pull/delete/create/edit` against real busybox containers (unprivileged), and
the escape attempts: whatever links the container plants, nothing outside its rootfs is read
or written."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from cli.client import Client, connect_unix, read_head
from machined.runtime import rootfs as inroot
from tests.conftest import Daemon

pytestmark = pytest.mark.system

RUNNING = "f-files"
STOPPED = "f-stopped"
ESCAPE = "f-escape"


@pytest.fixture(scope="module")
def running(daemon: Daemon, busybox_image: str):
    daemon.ok("launch", busybox_image, RUNNING)
    yield RUNNING
    daemon.mc("delete", "--force", RUNNING)


@pytest.fixture(scope="module")
def stopped(daemon: Daemon, busybox_image: str):
    daemon.ok("init", busybox_image, STOPPED)
    yield STOPPED
    daemon.mc("delete", "--force", STOPPED)


@pytest.fixture(scope="module")
def escape(daemon: Daemon, busybox_image: str):
    daemon.ok("launch", busybox_image, ESCAPE)
    yield ESCAPE
    daemon.mc("delete", "--force", ESCAPE)


def rootfs(daemon: Daemon, name: str) -> Path:
    return daemon.instance_dir(name) / "rootfs"


def inside(daemon: Daemon, name: str, *argv: str) -> str:
    return daemon.ok("exec", name, "--", *argv)


def stat_inside(daemon: Daemon, name: str, path: str) -> str:
    return inside(daemon, name, "stat", "-c", "%u:%g:%a", path).strip()


def fail(daemon: Daemon, *args: str, input: str | None = None) -> str:
    res = daemon.mc(*args, input=input)
    assert res.code != 0, f"mc {' '.join(args)} should have failed: {res.out}"
    assert res.err.startswith("Error: "), res.err
    assert len(res.err.strip().splitlines()) == 1, res.err
    return res.err.strip()


def local_file(path: Path, data: bytes, mode: int, uid: int = 0, gid: int = 0) -> Path:
    path.write_bytes(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


# -- push / pull ------------------------------------------------------------------------------
def test_push_keeps_source_mode_and_owner_as_seen_inside(daemon, running, tmp_path):
    src = local_file(tmp_path / "app.conf", b"key=1\n", 0o640, 1000, 1001)
    daemon.ok("file", "push", os.fspath(src), f"{running}/etc/app.conf")
    # The rootfs stores container ids unshifted and the runtime maps them: on-disk 1000 is
    # 1000 inside the unprivileged container.
    assert stat_inside(daemon, running, "/etc/app.conf") == "1000:1001:640"
    assert inside(daemon, running, "cat", "/etc/app.conf") == "key=1\n"
    st = os.lstat(rootfs(daemon, running) / "etc/app.conf")
    assert (st.st_uid, st.st_gid) == (1000, 1001)


def test_push_overrides_and_existing_files(daemon, running, tmp_path):
    src = local_file(tmp_path / "key", b"secret\n", 0o644)
    dest = f"{running}/root/key"
    daemon.ok("file", "push", "--mode", "600", "--uid", "1000", "--gid", "1000",
              os.fspath(src), dest)
    assert stat_inside(daemon, running, "/root/key") == "1000:1000:600"
    # An existing file keeps its owner and mode unless they are given explicitly (LXD).
    src.write_bytes(b"rotated\n")
    daemon.ok("file", "push", os.fspath(src), dest)
    assert stat_inside(daemon, running, "/root/key") == "1000:1000:600"
    assert inside(daemon, running, "cat", "/root/key") == "rotated\n"
    daemon.ok("file", "push", "--mode", "0640", os.fspath(src), dest)
    assert stat_inside(daemon, running, "/root/key") == "1000:1000:640"


def test_push_create_dirs(daemon, running, tmp_path):
    src = local_file(tmp_path / "f", b"deep\n", 0o600)
    err = fail(daemon, "file", "push", os.fspath(src), f"{running}/tmp/p1/p2/f")
    assert "/tmp/p1/p2/f" in err and "no such file or directory" in err
    daemon.ok("file", "push", "-p", "--mode", "0600", os.fspath(src), f"{running}/tmp/p1/p2/f")
    assert inside(daemon, running, "cat", "/tmp/p1/p2/f") == "deep\n"
    # Parents: 0755 (the --mode is the file's, not theirs), owned like the file.
    assert stat_inside(daemon, running, "/tmp/p1") == "0:0:755"
    assert stat_inside(daemon, running, "/tmp/p1/p2/f") == "0:0:600"


def test_push_into_directory_and_several_sources(daemon, running, tmp_path):
    a = local_file(tmp_path / "a.txt", b"A", 0o644)
    b = local_file(tmp_path / "b.txt", b"B", 0o644)
    inside(daemon, running, "mkdir", "-p", "/tmp/multi")
    daemon.ok("file", "push", os.fspath(a), os.fspath(b), f"{running}/tmp/multi")
    assert inside(daemon, running, "cat", "/tmp/multi/a.txt", "/tmp/multi/b.txt") == "AB"
    err = fail(daemon, "file", "push", os.fspath(a), os.fspath(b), f"{running}/tmp/none")
    assert err == (f"Error: Missing target directory {running}/tmp/none (use --create-dirs/-p"
                   " to create it)")
    err = fail(daemon, "file", "push", os.fspath(a), os.fspath(b), f"{running}/tmp/multi/a.txt")
    assert err == f"Error: Target {running}/tmp/multi/a.txt is not a directory"
    err = fail(daemon, "file", "push", os.fspath(tmp_path), f"{running}/tmp/x")
    assert "use --recursive/-r" in err


def test_stdin_and_stdout(daemon, running):
    daemon.ok("file", "push", "-", f"{running}/tmp/from-stdin", input="piped data\n")
    assert stat_inside(daemon, running, "/tmp/from-stdin") == "0:0:644"
    out = daemon.ok("file", "pull", f"{running}/tmp/from-stdin", "-")
    assert out == "piped data\n"
    err = fail(daemon, "file", "push", "-", f"{running}/tmp/", input="x")
    assert err == "Error: Pushing standard input (-) needs a target file name"


def test_pull_file_modes_and_naming(daemon, running, tmp_path):
    inside(daemon, running, "sh", "-c", "echo pulled > /tmp/pull.txt; chmod 4750 /tmp/pull.txt")
    daemon.ok("file", "pull", f"{running}/tmp/pull.txt", os.fspath(tmp_path))
    got = tmp_path / "pull.txt"
    assert got.read_text() == "pulled\n"
    # Permission bits only: a container's setuid file never becomes setuid on the host.
    assert stat.S_IMODE(got.stat().st_mode) == 0o750
    daemon.ok("file", "pull", f"{running}/tmp/pull.txt", os.fspath(tmp_path / "renamed"))
    assert (tmp_path / "renamed").read_text() == "pulled\n"
    err = fail(daemon, "file", "pull", f"{running}/tmp", os.fspath(tmp_path))
    assert err == "Error: --recursive/-r is required when pulling directories"
    err = fail(daemon, "file", "pull", f"{running}/tmp/nothing-here", os.fspath(tmp_path))
    assert err == f"Error: {running}/tmp/nothing-here: no such file or directory"
    err = fail(daemon, "file", "pull", "f-no-such-instance/etc/hosts", os.fspath(tmp_path))
    assert err == "Error: Instance 'f-no-such-instance' not found"


def make_tree(base: Path) -> Path:
    top = base / "site"
    (top / "css").mkdir(parents=True)
    (top / "index.html").write_text("<h1>hi</h1>\n")
    (top / "css" / "main.css").write_text("body{}\n")
    (top / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(top / "run.sh", 0o700)
    os.chmod(top / "css", 0o750)
    os.chown(top / "index.html", 33, 33)
    os.symlink("index.html", top / "home.html")
    os.symlink("/etc/hostname", top / "abs-link")
    os.symlink("../nowhere", top / "css" / "dangling")
    return top


def test_recursive_push_recreates_symlinks(daemon, running, tmp_path):
    top = make_tree(tmp_path)
    # Missing target: the target itself becomes the copy (cp-like).
    daemon.ok("file", "push", "-r", "-p", os.fspath(top), f"{running}/srv/www")
    assert inside(daemon, running, "cat", "/srv/www/css/main.css") == "body{}\n"
    assert inside(daemon, running, "readlink", "/srv/www/home.html").strip() == "index.html"
    assert inside(daemon, running, "readlink", "/srv/www/abs-link").strip() == "/etc/hostname"
    assert inside(daemon, running, "readlink", "/srv/www/css/dangling").strip() == "../nowhere"
    assert stat_inside(daemon, running, "/srv/www/run.sh") == "0:0:700"
    assert stat_inside(daemon, running, "/srv/www/css") == "0:0:750"
    assert stat_inside(daemon, running, "/srv/www/index.html") == "33:33:644"
    # Existing target: the source lands inside it, by its name.
    daemon.ok("file", "push", "-r", os.fspath(top), f"{running}/srv/www")
    assert inside(daemon, running, "cat", "/srv/www/site/index.html") == "<h1>hi</h1>\n"
    # --uid/--gid apply to every entry, --mode to the top directory only (incus).
    daemon.ok("file", "push", "-r", "--uid", "7", "--gid", "8", "--mode", "0711",
              os.fspath(top), f"{running}/srv/owned")
    assert stat_inside(daemon, running, "/srv/owned") == "7:8:711"
    assert stat_inside(daemon, running, "/srv/owned/css/main.css") == "7:8:644"
    assert inside(daemon, running, "stat", "-c", "%u:%g", "/srv/owned/home.html").strip() \
        == "7:8"


def test_recursive_push_refuses_unsupported_types(daemon, running, tmp_path):
    top = tmp_path / "with-fifo"
    top.mkdir()
    (top / "ok").write_text("x")
    os.mkfifo(top / "pipe")
    err = fail(daemon, "file", "push", "-r", os.fspath(top), f"{running}/tmp/fifo-tree")
    assert "isn't a supported file type" in err
    # Refused before anything was sent.
    assert daemon.mc("file", "pull", f"{running}/tmp/fifo-tree/ok", "-").code != 0


def _push_tar(daemon: Daemon, name: str, path: str, *members: tarfile.TarInfo) -> dict:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"x" * info.size))
    client = Client(os.fspath(daemon.socket))
    try:
        resp = client.raw("POST", f"/1.0/instances/{name}/files?path={path}",
                          body=out.getvalue(), headers={"X-LXD-type": "directory",
                                                        "Content-Type": "application/x-tar"})
    finally:
        client.close()
    return json.loads(resp.body)


def _member(name: str, kind: bytes, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def test_archive_link_then_directory_of_the_same_name_stays_a_link(daemon, running):
    """A directory member over a symlink member leaves the link (mkdir -p semantics), so
    what follows below it still goes through a link the archive made: refused."""
    inside(daemon, running, "rm", "-rf", "/tmp/tl", "/tmp/tl-target")
    inside(daemon, running, "mkdir", "/tmp/tl-target")
    body = _push_tar(daemon, running, "/tmp/tl",
                     _member("a", tarfile.SYMTYPE, link="/tmp/tl-target"),
                     _member("a", tarfile.DIRTYPE), _member("a/x", tarfile.REGTYPE, 1))
    assert body["error"] == ("Archive member 'a/x' is below a symlink the archive made, "
                             "which is never followed")
    assert inside(daemon, running, "ls", "-A", "/tmp/tl-target") == ""


def test_pull_recursive(daemon, running, tmp_path):
    top = make_tree(tmp_path / "src")
    daemon.ok("file", "push", "-r", "-p", os.fspath(top), f"{running}/srv/pullme")
    out = tmp_path / "out"
    daemon.ok("file", "pull", "-r", f"{running}/srv/pullme", os.fspath(out))
    assert (out / "css" / "main.css").read_text() == "body{}\n"
    assert os.readlink(out / "home.html") == "index.html"
    assert os.readlink(out / "abs-link") == "/etc/hostname"
    assert stat.S_IMODE((out / "run.sh").stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "css").stat().st_mode) == 0o750
    # An existing target receives the source by its name.
    daemon.ok("file", "pull", "-r", f"{running}/srv/pullme", os.fspath(out))
    assert (out / "pullme" / "index.html").read_text() == "<h1>hi</h1>\n"


def test_stopped_instance(daemon, stopped, tmp_path):
    src = local_file(tmp_path / "cfg", b"offline\n", 0o600, 1000, 1000)
    daemon.ok("file", "push", "-p", os.fspath(src), f"{stopped}/etc/app/cfg")
    assert daemon.ok("file", "pull", f"{stopped}/etc/app/cfg", "-") == "offline\n"
    daemon.ok("file", "create", f"{stopped}/etc/app/d/")
    daemon.ok("file", "delete", "-f", f"{stopped}/etc/app")
    assert not (rootfs(daemon, stopped) / "etc/app").exists()
    # Pushed while stopped, seen with the same owner once it runs.
    daemon.ok("file", "push", os.fspath(src), f"{stopped}/root/cfg")
    daemon.ok("start", stopped)
    try:
        assert stat_inside(daemon, stopped, "/root/cfg") == "1000:1000:600"
    finally:
        daemon.ok("stop", "--force", stopped)


def test_delete(daemon, running):
    inside(daemon, running, "sh", "-c", "mkdir -p /tmp/del/sub && touch /tmp/del/sub/f /tmp/x1")
    daemon.ok("file", "delete", f"{running}/tmp/x1")
    err = fail(daemon, "file", "delete", f"{running}/tmp/del")
    assert err == "Error: Directory /tmp/del is not empty (delete it recursively with -f)"
    daemon.ok("file", "rm", "-f", f"{running}/tmp/del")
    assert inside(daemon, running, "ls", "/tmp").split().count("del") == 0
    err = fail(daemon, "file", "delete", f"{running}/tmp/del")
    assert err == f"Error: /tmp/del: no such file or directory in instance '{running}'"
    err = fail(daemon, "file", "delete", "-f", f"{running}/")
    assert err == "Error: Refusing to delete the instance's root directory"


def test_create(daemon, running):
    daemon.ok("file", "create", f"{running}/tmp/c/empty", "-p", "--mode", "0600")
    assert stat_inside(daemon, running, "/tmp/c/empty") == "0:0:600"
    daemon.ok("file", "create", f"{running}/tmp/c/dir/", "--uid", "5", "--gid", "6")
    assert stat_inside(daemon, running, "/tmp/c/dir") == "5:6:750"
    daemon.ok("file", "create", "--type", "symlink", f"{running}/tmp/c/link", "empty")
    assert inside(daemon, running, "readlink", "/tmp/c/link").strip() == "empty"
    err = fail(daemon, "file", "create", f"{running}/tmp/c/empty")
    assert err == f"Error: {running}/tmp/c/empty already exists (use --force/-f to replace it)"
    daemon.ok("file", "create", "-f", "--type", "symlink", f"{running}/tmp/c/link", "dir")
    assert inside(daemon, running, "readlink", "/tmp/c/link").strip() == "dir"
    err = fail(daemon, "file", "create", "--type", "symlink", f"{running}/tmp/c/l2")
    assert err == "Error: --type symlink needs the symlink target as second argument"


def test_edit_keeps_mode_and_owner(daemon, running):
    inside(daemon, running, "sh", "-c", "echo old > /etc/motd; chown 1000:1000 /etc/motd;"
           " chmod 0600 /etc/motd")
    daemon.ok("file", "edit", f"{running}/etc/motd", input="new motd\n")
    assert inside(daemon, running, "cat", "/etc/motd") == "new motd\n"
    assert stat_inside(daemon, running, "/etc/motd") == "1000:1000:600"


def test_edit_with_editor(daemon, running, tmp_path):
    """$EDITOR on a terminal: a pty as stdin, an editor script that appends a line."""
    inside(daemon, running, "sh", "-c", "echo first > /tmp/ed.txt; chmod 0640 /tmp/ed.txt")
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\necho second >> \"$1\"\n")
    editor.chmod(0o755)
    import pty

    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([daemon.mc_path, "file", "edit", f"{running}/tmp/ed.txt"],
                              env={**daemon.env, "EDITOR": os.fspath(editor)},
                              stdin=secondary, capture_output=True, timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 0, proc.stderr
    assert inside(daemon, running, "cat", "/tmp/ed.txt") == "first\nsecond\n"
    assert stat_inside(daemon, running, "/tmp/ed.txt") == "0:0:640"


def test_id_range_is_validated(daemon, running, tmp_path):
    src = local_file(tmp_path / "f", b"x", 0o644)
    err = fail(daemon, "file", "push", "--uid", "1000000000", os.fspath(src),
               f"{running}/tmp/id")
    assert "X-LXD-uid 1000000000 is outside the ids the instance maps" in err
    res = daemon.mc("file", "push", "--mode", "9999", os.fspath(src), f"{running}/tmp/id")
    assert res.code == 2 and 'Invalid mode "9999": expected an octal mode' in res.err


def test_api_headers_and_listing(daemon, running):
    client = Client(os.fspath(daemon.socket))
    try:
        inside(daemon, running, "sh", "-c", "mkdir -p /tmp/api && echo hi > /tmp/api/f;"
               " chown 12:34 /tmp/api/f; chmod 0604 /tmp/api/f; ln -sf f /tmp/api/l")
        base = f"/1.0/instances/{running}/files?path="
        resp = client.raw("GET", base + "/tmp/api/f")
        assert resp.status == 200 and resp.body == b"hi\n"
        assert (resp.headers["x-lxd-uid"], resp.headers["x-lxd-gid"],
                resp.headers["x-lxd-mode"], resp.headers["x-lxd-type"]) == ("12", "34", "0604",
                                                                            "file")
        resp = client.raw("HEAD", base + "/tmp/api/f")
        assert resp.status == 200 and resp.body == b"" and resp.headers["content-length"] == "3"
        resp = client.raw("GET", base + "/tmp/api")
        assert resp.headers["x-lxd-type"] == "directory"
        assert json.loads(resp.body)["metadata"] == ["f", "l"]
        resp = client.raw("GET", base + "/tmp/api/l")
        assert (resp.headers["x-lxd-type"], resp.body) == ("symlink", b"f")
        assert client.raw("GET", base + "/tmp/api/none").status == 404
        resp = client.raw("POST", base + "/tmp/api/bad", body=b"x",
                          headers={"X-LXD-type": "fifo"})
        assert resp.status == 400
        assert json.loads(resp.body)["error"] == ("Invalid X-LXD-type 'fifo': accepted are "
                                                  "file, directory, symlink")
        # append mode, and modify-perm on an existing file
        client.raw("POST", base + "/tmp/api/f", body=b"more\n",
                   headers={"X-LXD-write": "append", "X-LXD-mode": "0600",
                            "X-LXD-modify-perm": "mode"})
        assert inside(daemon, running, "cat", "/tmp/api/f") == "hi\nmore\n"
        assert stat_inside(daemon, running, "/tmp/api/f") == "12:34:600"
    finally:
        client.close()


def test_large_push_streams(daemon, running, tmp_path):
    """A 256 MiB push and pull: the daemon's peak memory does not grow with the file."""
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(256 << 20)
        f.seek(100 << 20)
        f.write(b"marker")
    hwm = _daemon_hwm(daemon)
    daemon.ok("file", "push", os.fspath(big), f"{running}/root/big")
    daemon.ok("file", "pull", f"{running}/root/big", os.fspath(tmp_path / "back"))
    assert _daemon_hwm(daemon) - hwm < 64 << 20
    assert (tmp_path / "back").stat().st_size == 256 << 20
    with open(tmp_path / "back", "rb") as f:
        f.seek(100 << 20)
        assert f.read(6) == b"marker"
    daemon.ok("file", "delete", f"{running}/root/big")


def test_archive_push_refuses_huge_headers_without_reading_them(daemon, running):
    """tarfile would read a GNU long-name header of 256 MiB whole into the daemon's memory."""
    size = 256 << 20
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, size
    head = (f"POST /1.0/instances/{running}/files?path=/tmp/huge HTTP/1.1\r\nHost: x\r\n"
            "X-LXD-type: directory\r\nContent-Type: application/x-tar\r\n"
            f"Content-Length: {512 + size + 1024}\r\nConnection: close\r\n\r\n")
    hwm = _daemon_hwm(daemon)
    sock = connect_unix(os.fspath(daemon.socket))
    try:
        sock.sendall(head.encode() + info.tobuf(tarfile.GNU_FORMAT))
        chunk = b"a" * (1 << 20)
        try:
            for _ in range(size >> 20):
                sock.sendall(chunk)
            sock.sendall(bytes(1024))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early, as it should be
        status, _reason, headers = read_head(sock.makefile("rb"))
    finally:
        sock.close()
    assert status == 400
    assert _daemon_hwm(daemon) - hwm < 64 << 20


def test_huge_directory_listing_does_not_stall_the_daemon(daemon, running, rm_rf):
    """A container can fill a directory with hundreds of thousands of entries: listing it
    must not freeze every other API request meanwhile."""
    big = rootfs(daemon, running) / "tmp/big"
    big.mkdir()
    fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(100_000):  # made host-side: much faster than from inside
            os.symlink("x", f"l{i:0200d}", dir_fd=fd)
    finally:
        os.close(fd)
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        probe_client = Client(os.fspath(daemon.socket))
        try:
            while not done.is_set():
                start = time.monotonic()
                assert probe_client.raw("GET", "/1.0").status == 200
                latencies.append(time.monotonic() - start)
                time.sleep(0.005)
        finally:
            probe_client.close()

    client = Client(os.fspath(daemon.socket))
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        time.sleep(0.2)
        start = time.monotonic()
        resp = client.raw("GET", f"/1.0/instances/{running}/files?path=/tmp/big")
        took = time.monotonic() - start
        time.sleep(0.1)
    finally:
        done.set()
        prober.join()
        client.close()
        daemon.ok("file", "delete", "-f", f"{running}/tmp/big")
    body = json.loads(resp.body)
    assert (body["type"], body["status_code"], resp.headers["x-lxd-type"]) == (
        "sync", 200, "directory")
    names = body["metadata"]
    assert len(names) == 100_000 and names[0] == f"l{0:0200d}" and names == sorted(names)
    # Inline, a probe waited for the whole listing (0.33 s of 0.36 s here); now ~0.07 s.
    assert max(latencies) < max(0.15, took / 2), (max(latencies), took)


def test_a_lease_in_the_container_does_not_stall_the_daemon(daemon, debian_image):
    """Container root owns its files, so it may take a write lease on one (F_SETLEASE): an
    open(2) by the daemon would then wait out /proc/sys/fs/lease-break-time (45 s), with the
    whole API frozen. The daemon opens without waiting and says the file is busy."""
    name = "s-lease"
    daemon.ok("launch", debian_image, name)
    holder = None
    try:
        script = ('open(F, ">", "/root/f"); print F "data"; close F; open(F, "<", "/root/f");'
                  ' $SIG{IO} = "IGNORE"; fcntl(F, 1024, 1) or die "F_SETLEASE: $!";'
                  ' $| = 1; print "leased\\n"; sleep 120')
        holder = subprocess.Popen([daemon.mc_path, "exec", name, "--", "perl", "-e", script],
                                  env=daemon.env, stdout=subprocess.PIPE)
        assert holder.stdout is not None and holder.stdout.readline() == b"leased\n"
        busy = ("/root/f: in use: a process of the instance holds a lease on it, which is "
                "being broken now; try again")
        start = time.monotonic()
        assert fail(daemon, "file", "pull", f"{name}/root/f", "-") == f"Error: {busy}"
        client = Client(os.fspath(daemon.socket))
        try:  # appending opens the file too
            resp = client.raw("POST", f"/1.0/instances/{name}/files?path=/root/f",
                              body=b"more", headers={"X-LXD-write": "append"})
        finally:
            client.close()
        assert resp.status == 400 and json.loads(resp.body)["error"] == busy
        assert time.monotonic() - start < 10
    finally:
        if holder is not None:
            holder.kill()
            holder.communicate()
        daemon.mc("delete", "--force", name)


def _daemon_hwm(daemon: Daemon) -> int:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# -- escape attempts --------------------------------------------------------------------------
@pytest.fixture
def canary(tmp_path):
    """A host directory with a file that must stay untouched and unread."""
    where = tmp_path / "canary-dir"
    where.mkdir()
    (where / "canary.txt").write_text("CANARY\n")
    os.chmod(where / "canary.txt", 0o644)
    yield where
    assert sorted(p.name for p in where.iterdir()) == ["canary.txt"]
    assert (where / "canary.txt").read_text() == "CANARY\n"
    st = (where / "canary.txt").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)


def plant(daemon: Daemon, name: str, canary: Path) -> None:
    inside(daemon, name, "sh", "-c",
           f"rm -rf /tmp/out /tmp/up /tmp/abs /tmp/absfile {canary}; "
           "ln -s / /tmp/out; ln -s ../../../.. /tmp/up; "
           f"ln -s {canary} /tmp/abs; ln -s {canary}/canary.txt /tmp/absfile")


def test_push_through_planted_links_stays_inside(daemon, escape, canary, tmp_path):
    plant(daemon, escape, canary)
    root = rootfs(daemon, escape)
    src = local_file(tmp_path / "payload", b"PAYLOAD\n", 0o644)
    daemon.ok("file", "push", os.fspath(src), f"{escape}/tmp/out/")
    assert (root / "payload").read_bytes() == b"PAYLOAD\n"
    daemon.ok("file", "push", "-p", os.fspath(src), f"{escape}/tmp/up{canary}/canary.txt")
    assert (root / canary.relative_to("/") / "canary.txt").read_bytes() == b"PAYLOAD\n"
    inside(daemon, escape, "rm", "-rf", os.fspath(canary))
    # The absolute link resolves inside the container, where that directory is missing.
    fail(daemon, "file", "push", os.fspath(src), f"{escape}/tmp/abs/canary.txt")
    fail(daemon, "file", "push", os.fspath(src), f"{escape}/tmp/abs/")
    fail(daemon, "file", "create", f"{escape}/tmp/abs/new")
    fail(daemon, "file", "push", os.fspath(src), f"{escape}/../../../..{canary}/canary.txt")
    # A link as the target itself is replaced, not followed.
    daemon.ok("file", "push", os.fspath(src), f"{escape}/tmp/absfile")
    assert not (root / "tmp/absfile").is_symlink()
    assert (root / "tmp/absfile").read_bytes() == b"PAYLOAD\n"
    # Recursive push and its tar extraction go through the same resolution.
    tree = make_tree(tmp_path / "tree")
    daemon.ok("file", "push", "-r", os.fspath(tree), f"{escape}/tmp/out/srv")
    assert (root / "srv/index.html").exists()
    fail(daemon, "file", "push", "-r", os.fspath(tree), f"{escape}/tmp/abs/srv")


def test_pull_through_planted_links_reads_nothing_outside(daemon, escape, canary, tmp_path):
    plant(daemon, escape, canary)
    for path in ("/tmp/abs/canary.txt", "/tmp/absfile", f"/tmp/up{canary}/canary.txt",
                 f"/../../../..{canary}/canary.txt", f"/tmp/out{canary}/canary.txt"):
        res = daemon.mc("file", "pull", f"{escape}{path}", "-")
        assert res.code != 0 and "CANARY" not in res.out, path
    res = daemon.mc("file", "pull", "-r", f"{escape}/tmp/abs", os.fspath(tmp_path / "o1"))
    assert "CANARY" not in res.out
    # Pulled recursively, the links are recreated as links, never followed.
    inside(daemon, escape, "sh", "-c", f"mkdir -p /tmp/tree && ln -sf {canary} /tmp/tree/d &&"
           f" ln -sf {canary}/canary.txt /tmp/tree/f")
    daemon.ok("file", "pull", "-r", f"{escape}/tmp/tree", os.fspath(tmp_path / "o2"))
    assert os.readlink(tmp_path / "o2" / "f") == f"{canary}/canary.txt"
    assert sorted(os.listdir(tmp_path / "o2")) == ["d", "f"]


def test_delete_through_planted_links_stays_inside(daemon, escape, canary):
    plant(daemon, escape, canary)
    fail(daemon, "file", "delete", f"{escape}/tmp/abs/canary.txt")
    fail(daemon, "file", "delete", "-f", f"{escape}/tmp/up{canary}")
    daemon.ok("file", "delete", "-f", f"{escape}/tmp/abs")  # the link, not its target
    inside(daemon, escape, "sh", "-c", f"mkdir -p /tmp/rmtree && ln -s {canary} /tmp/rmtree/l"
           " && ln -s / /tmp/rmtree/root")
    daemon.ok("file", "delete", "-f", f"{escape}/tmp/rmtree")
    assert (rootfs(daemon, escape) / "bin/busybox").exists()


def test_deep_trees_are_deleted(daemon, busybox_image):
    """A container nests directories deeper than Python's recursion limit: `file delete -f`
    and deleting the instance still work, and nothing is left in tmp/ (which the daemon
    empties at start: a tree it cannot remove there would stop it from starting)."""
    name = "s-deep"
    daemon.ok("launch", busybox_image, name)
    try:
        deep = "cd /root && i=0; while [ $i -lt 1500 ]; do mkdir d && cd d; i=$((i+1)); done"
        inside(daemon, name, "sh", "-c", deep)
        daemon.ok("file", "delete", "-f", f"{name}/root/d")
        inside(daemon, name, "sh", "-c", "test ! -e /root/d && " + deep)
    finally:
        res = daemon.mc("delete", "--force", name)
    assert res.code == 0, res.err
    assert not [p for p in os.listdir(daemon.root / "tmp") if name in p]


def test_symlink_swapped_in_mid_transfer(daemon, escape, canary):
    """A push whose target directory is replaced by a link to the host directory (and to /)
    while the body streams in: the data lands in the directory that was resolved."""
    inside(daemon, escape, "sh", "-c", "rm -rf /tmp/race && mkdir -p /tmp/race/dir")
    proc = subprocess.Popen([daemon.mc_path, "file", "push", "-", f"{escape}/tmp/race/dir/big"],
                            env=daemon.env, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    chunk = b"x" * (1 << 20)
    for _ in range(4):
        proc.stdin.write(chunk)
    proc.stdin.flush()
    time.sleep(0.5)
    inside(daemon, escape, "sh", "-c",
           f"mv /tmp/race/dir /tmp/race/old && ln -s {canary} /tmp/race/dir")
    for _ in range(4):
        proc.stdin.write(chunk)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    root = rootfs(daemon, escape)
    assert (root / "tmp/race/old/big").stat().st_size == 8 << 20
    assert [p.name for p in (root / "tmp/race/old").iterdir()] == ["big"]


def test_symlink_flipping_race(daemon, escape, canary):
    """The container flips a directory and links to the host directory and to / in a loop
    while small files are pushed through it: nothing lands outside the rootfs."""
    inside(daemon, escape, "sh", "-c", "rm -rf /tmp/flip /tmp/flipdir; mkdir -p /tmp/flipdir")
    script = (f"i=0; while [ $i -lt 3000 ]; do ln -sfn {canary} /tmp/flip; ln -sfn / /tmp/flip;"
              " rm -f /tmp/flip; ln -s /tmp/flipdir /tmp/flip; i=$((i+1)); done")
    flipper = subprocess.Popen([daemon.mc_path, "exec", escape, "--", "sh", "-c", script],
                               env=daemon.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    client = Client(os.fspath(daemon.socket))
    try:
        deadline = time.monotonic() + 5
        n = 0
        while time.monotonic() < deadline and flipper.poll() is None:
            client.raw("POST", f"/1.0/instances/{escape}/files?path=/tmp/flip/f{n % 20}",
                       body=b"race\n")
            client.raw("DELETE", f"/1.0/instances/{escape}/files?path=/tmp/flip/f{(n + 7) % 20}"
                       "&recursive=1")
            n += 1
        assert n > 50
    finally:
        client.close()
        flipper.kill()
        flipper.wait()


# -- rootfs primitives on a plain tree (no container) ------------------------------------------
@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "rootfs"
    outside = tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    outside.mkdir()
    (outside / "victim").write_text("host\n")
    return root, outside


def test_rootfs_refuses_special_files(tree):
    root, _ = tree
    os.mkfifo(root / "etc/fifo")
    with inroot.Root(os.fspath(root)) as r:
        entry, what = r.open_read("/etc/fifo")  # would block if it were ever opened
        assert (entry.kind, what) == ("other", None)
        with pytest.raises(OSError):
            r.begin_file("/etc/fifo", append=True)


def test_rootfs_remove_tree_never_follows_links(tree):
    root, outside = tree
    (root / "d/e").mkdir(parents=True)
    (root / "d/e/f").write_text("x")
    (root / "d/host").symlink_to(outside)
    (root / "d/hostfile").symlink_to(outside / "victim")
    with inroot.Root(os.fspath(root)) as r:
        r.remove("/d", recursive=True)
    assert not (root / "d").exists()
    assert (outside / "victim").read_text() == "host\n"


def deep_chain(top: Path, depth: int) -> None:
    """top/d/d/d/... `depth` levels, with a file and a link at the bottom (deeper than
    PATH_MAX allows naming from the top, and than Python's recursion limit)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.symlink("/", "l", dir_fd=fd)
    os.close(fd)


@pytest.fixture
def rm_rf(tmp_path):
    """pytest's own tmp_path cleanup recurses: a deep tree left by a failure would break it."""
    yield
    subprocess.run(["rm", "-rf", os.fspath(tmp_path)], check=True)


def test_rootfs_remove_tree_of_any_depth(tree, rm_rf):
    root, outside = tree
    deep_chain(root / "etc", 3000)
    with inroot.Root(os.fspath(root)) as r:
        r.remove("/etc/d", recursive=True)
    assert os.listdir(root / "etc") == []
    assert (outside / "victim").read_text() == "host\n"


def test_storage_remove_tree_of_any_depth(tmp_path, rm_rf):
    """Deleting an instance removes whatever tree its container left, however deep (a
    RecursionError there also stopped the daemon from starting: tmp/ is emptied at start)."""
    from machined.storage.dir import remove_tree

    (tmp_path / "vol").mkdir()
    deep_chain(tmp_path / "vol", 3000)
    remove_tree(tmp_path / "vol")
    assert os.listdir(tmp_path) == []


def test_rootfs_root_itself_must_not_be_a_link(tmp_path, tree):
    root, _ = tree
    (tmp_path / "link").symlink_to(root)
    with pytest.raises(OSError):
        inroot.Root(os.fspath(tmp_path / "link"))


def test_rootfs_writer_abort_leaves_nothing(tree):
    root, _ = tree
    (root / "etc/keep").write_text("old\n")
    with inroot.Root(os.fspath(root)) as r:
        w = r.begin_file("/etc/keep")
        w.write(b"half")
        w.abort()
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["keep"]
    assert (root / "etc/keep").read_text() == "old\n"


def test_an_upload_cut_short_leaves_nothing_and_the_daemon_answers(daemon: Daemon,
                                                                    stopped: str):
    """A client that dies mid-push: no target, no temporary file, no 500 in the log."""
    sock = connect_unix(os.fspath(daemon.socket))
    head = (f"POST /1.0/instances/{stopped}/files?path=/root/cut HTTP/1.1\r\n"
            "Host: machined\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {64 << 20}\r\n\r\n").encode()
    sock.sendall(head + b"x" * (8 << 20))
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    root = rootfs(daemon, stopped) / "root"
    assert not (root / "cut").exists()
    assert not [p for p in os.listdir(root) if "cut" in p]
    assert daemon.ok("file", "pull", f"{stopped}/etc/inittab", "-") != ""
    logs = [daemon.root / "logs/machined.log", daemon.root.parent / "machined.stderr"]
    text = "".join(p.read_text(errors="replace") for p in logs if p.exists())
    assert "Client disconnected during POST" in text
    assert "Unhandled error in POST" not in text
