"""Figures for issue targets, printed (not asserted). Runs its own machined on a temporary
MACHINED_DIR, uses the cached test images, and removes everything it made.

    sudo .venv/bin/python bench/bench.py [--runs 5] [--files | --images | --storage | --network |
                                          --boot]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.fspath(REPO))

from tests.conftest import Daemon, built_image  # noqa: E402


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wait_booted(daemon: Daemon, name: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = daemon.mc("exec", name, "--", "systemctl", "is-system-running").out.strip()
        if out in ("running", "degraded"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not boot")


def report(label: str, samples: list[float], target: str) -> None:
    ms = sorted(s * 1000 for s in samples)
    print(f"{label:<52} median {statistics.median(ms):8.1f} ms   min {ms[0]:8.1f}   "
          f"max {ms[-1]:8.1f}   (n={len(ms)}, target {target})", flush=True)


def report_rate(label: str, size: int, samples: list[float], target: str) -> None:
    rates = sorted(size / s / 1e6 for s in samples)
    print(f"{label:<52} median {statistics.median(rates):8.1f} MB/s min {rates[0]:6.1f}   "
          f"max {rates[-1]:6.1f}   (n={len(rates)}, target {target})", flush=True)


def bench_files(daemon: Daemon, base: Path, runs: int) -> None:
    """mc file push/pull of a 100 MB file, and a recursive push of 1000 small files; each
    figure is a whole `mc` process. `cp` of the same file shows what the disk allows."""
    box = built_image("busybox", "unified")
    if daemon.mc("image", "info", "busybox").code != 0:
        daemon.ok("image", "import", *map(os.fspath, box), "--alias", "busybox")
    daemon.ok("launch", "busybox", "bf")
    big = base / "big.bin"
    size = 100 * 1000 * 1000
    with open(big, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(size // 100))
    samples = [timed(lambda: daemon.ok("file", "push", os.fspath(big), "bf/root/big"))
               for _ in range(runs)]
    report_rate("mc file push (100 MB file)", size, samples, ">= 200 MB/s")
    out = base / "big.out"
    samples = []
    for _ in range(runs):
        samples.append(timed(lambda: daemon.ok("file", "pull", "bf/root/big", os.fspath(out))))
        out.unlink()
    report_rate("mc file pull (100 MB file)", size, samples, ">= 200 MB/s")
    samples = []
    for _ in range(runs):
        samples.append(timed(lambda: subprocess.run(["cp", big, out], check=True)))
        out.unlink()
    report_rate("reference: cp of the same file on this disk", size, samples, "-")
    tree = base / "tree"
    for d in range(10):
        (tree / f"d{d}").mkdir(parents=True)
        for i in range(100):
            (tree / f"d{d}" / f"f{i}.txt").write_bytes(os.urandom(100 + i * 10))
    samples = [timed(lambda i=i: daemon.ok("file", "push", "-r", os.fspath(tree),
                                           f"bf/root/tree{i}")) for i in range(runs)]
    report("mc file push -r (1000 small files, 10 dirs)", samples, "< 2000 ms")
    samples = [timed(lambda i=i: daemon.ok("file", "pull", "-r", f"bf/root/tree{i}",
                                           os.fspath(base / f"pulled{i}")))
               for i in range(runs)]
    report("mc file pull -r (1000 small files, 10 dirs)", samples, "-")
    daemon.ok("delete", "--force", "bf")


def bench_images(daemon: Daemon, base: Path, runs: int) -> None:
    """Images from an image server: the Debian 12 image written into a simplestreams tree by
    `mc simplestreams add`, served over http on 127.0.0.1, launched by a second daemon that
    has never seen it (download + verify + unpack + copy + boot), then from its cache; image
    copy; publish."""
    from tests.streamserver import StreamServer

    deb = built_image("debian-12", "split")
    if daemon.mc("image", "info", "debian/12").code != 0:
        daemon.ok("image", "import", *map(os.fspath, deb), "--alias", "debian/12", timeout=900)
    tree = base / "tree"
    daemon.ok("simplestreams", "add", os.fspath(tree), "debian/12", timeout=900)
    size = sum(f.stat().st_size for f in deb)
    client = Daemon(base / "client" / "state")
    client.root.parent.mkdir(parents=True)
    client.start()
    try:
        with StreamServer(tree) as server:
            client.ok("remote", "add", "bench", server.url, "--protocol", "simplestreams")
            samples = []
            for i in range(min(runs, 3)):
                samples.append(timed(lambda i=i: (client.ok("launch", "bench:debian/12",
                                                            f"r{i}", timeout=900),
                                                  wait_booted(client, f"r{i}"))))
                client.ok("delete", "--force", f"r{i}")
                fp = json.loads(client.ok("image", "list", "--format", "json"))[0]["fingerprint"]
                client.ok("image", "delete", fp)
            report(f"mc launch bench:debian/12 -> booted, not cached ({size / 1e6:.0f} MB)",
                   samples, "-")
            client.ok("launch", "bench:debian/12", "warm", timeout=900)
            client.ok("delete", "--force", "warm")
            samples = []
            for i in range(runs):
                samples.append(timed(lambda i=i: (client.ok("launch", "bench:debian/12",
                                                            f"c{i}"),
                                                  wait_booted(client, f"c{i}"))))
                client.ok("delete", "--force", f"c{i}")
            report("mc launch bench:debian/12 -> booted, cached", samples, "no download")
            samples = []
            for i in range(min(runs, 3)):
                samples.append(timed(lambda i=i: client.ok(
                    "image", "copy", "bench:debian/12", "local:", "--alias", f"copy{i}",
                    timeout=900)))
                client.ok("image", "delete", f"copy{i}")
            report_rate("mc image copy bench:debian/12 local: (download, verify, unpack)",
                        size, samples, "-")
        daemon.ok("init", "debian/12", "pub")
        for algo in ("zstd", "gzip"):
            samples = [timed(lambda algo=algo, i=i: daemon.ok(
                "publish", "pub", "--alias", f"pub-{algo}{i}", "--compression", algo,
                f"serial={i}", timeout=900)) for i in range(min(runs, 2))]
            report(f"mc publish (Debian 12, {algo})", samples, "-")
        daemon.ok("delete", "--force", "pub")
    finally:
        for inst in client.instances() if client.proc else []:
            client.mc("delete", "--force", inst["name"])
        client.kill()


def debian_fingerprint(daemon: Daemon) -> str:
    deb = built_image("debian-12", "split")
    if daemon.mc("image", "info", "debian/12").code != 0:
        daemon.ok("image", "import", *map(os.fspath, deb), "--alias", "debian/12", timeout=900)
    images = json.loads(daemon.ok("image", "list", "--format", "json"))
    return next(i["fingerprint"] for i in images
                if any(a["name"] == "debian/12" for a in i["aliases"]))


def bench_storage(daemon: Daemon, base: Path, runs: int) -> None:
    """Snapshots, restores and copies of the Debian 12 container (~250 MB, ~8300 files) on
    the default dir pool (ext4 here: full copies, compared with `cp -a` of the same tree)
    and on a btrfs pool on a loop file (subvolume snapshots); launch from the cached image
    on btrfs to a booted systemd."""
    fingerprint = debian_fingerprint(daemon)
    volume = daemon.root / "storage-pools/default/images" / fingerprint
    files = sum(len(f) + len(d) for _, d, f in os.walk(volume))
    target = base / "cp-test"
    samples = []
    for _ in range(runs):
        samples.append(timed(lambda: subprocess.run(["cp", "-a", volume, target], check=True)))
        shutil.rmtree(target)
    ref = statistics.median(samples)
    report(f"reference: cp -a of the Debian tree ({files} entries)", samples, "-")
    pool = "bench-btrfs"
    daemon.ok("storage", "create", pool, "btrfs", "size=8GiB")
    try:
        for label, extra in (("dir", []), ("btrfs", ["-s", pool])):
            bench_pool(daemon, label, extra, runs, ref)
        daemon.ok("launch", "debian/12", "warm", "-s", pool, timeout=900)  # image volume
        daemon.ok("delete", "--force", "warm")
        samples = []
        for i in range(runs):
            samples.append(timed(lambda i=i: (daemon.ok("launch", "debian/12", f"b{i}", "-s",
                                                        pool),
                                              wait_booted(daemon, f"b{i}"))))
            daemon.ok("delete", "--force", f"b{i}")
        report("mc launch debian/12 -s btrfs -> booted (cached)", samples, "< 1000 ms")
    finally:
        for inst in daemon.instances():
            daemon.mc("delete", "--force", inst["name"])
        daemon.mc("storage", "delete", pool)


def bench_pool(daemon: Daemon, label: str, extra: list[str], runs: int, ref: float) -> None:
    name = f"s-{label}"
    daemon.ok("init", "debian/12", name, *extra, timeout=900)
    dir_pool = label == "dir"
    target = f"< {1.5 * ref * 1000:.0f} ms (1.5x cp -a)" if dir_pool else "< 300 ms"
    samples = [timed(lambda i=i: daemon.ok("snapshot", name, f"s{i}", timeout=900))
               for i in range(runs)]
    report(f"mc snapshot (Debian 12, stopped, {label})", samples, target)
    samples = [timed(lambda i=i: daemon.ok("restore", name, f"s{i}", timeout=900))
               for i in range(runs)]
    report(f"mc restore (Debian 12, stopped, {label})", samples, target)
    samples = []
    for i in range(runs):
        samples.append(timed(lambda i=i: daemon.ok("copy", name, f"{name}-c{i}",
                                                   "--instance-only", timeout=900)))
        daemon.ok("delete", f"{name}-c{i}")
    report(f"mc copy --instance-only (Debian 12, {label})", samples,
           "-" if dir_pool else "< 300 ms")
    daemon.ok("start", name)
    wait_booted(daemon, name)
    samples = [timed(lambda i=i: daemon.ok("snapshot", name, f"r{i}", timeout=900))
               for i in range(runs)]
    report(f"mc snapshot (Debian 12, running, {label})", samples,
           "frozen while copied" if dir_pool else "< 300 ms")
    daemon.ok("delete", "--force", name)


def bench_network(daemon: Daemon, base: Path, runs: int) -> None:
    """A managed bridge (NAT off, private subnet): network create, busybox launch to its
    DHCP address, with and without a nic, `mc list` of 10 containers with addresses, and a
    proxy device's connection latency and throughput against plain loopback."""
    import socket

    box = built_image("busybox", "unified")
    if daemon.mc("image", "info", "busybox").code != 0:
        daemon.ok("image", "import", *map(os.fspath, box), "--alias", "busybox")
    net = "benchbr0"
    samples = []
    for _ in range(runs):
        samples.append(timed(lambda: daemon.ok(
            "network", "create", net, "ipv4.address=10.211.0.1/24", "ipv4.nat=false",
            "ipv6.address=none")))
        daemon.ok("network", "delete", net)
    report("mc network create (bridge + dnsmasq)", samples, "-")
    daemon.ok("network", "create", net, "ipv4.address=10.211.0.1/24", "ipv4.nat=false",
              "ipv6.address=none")
    try:
        def address(name: str) -> str:
            state = daemon.api("GET", f"/1.0/instances/{name}/state")
            for addr in ((state.get("network") or {}).get("eth0") or {}).get("addresses", []):
                if addr["family"] == "inet":
                    return str(addr["address"])
            return ""

        def launch_to_address(name: str) -> None:
            daemon.ok("launch", "busybox", name, "--network", net)
            deadline = time.monotonic() + 60
            while not address(name):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} got no address")
                time.sleep(0.01)

        samples = []
        for i in range(runs):
            samples.append(timed(lambda i=i: launch_to_address(f"n{i}")))
            daemon.ok("delete", "--force", f"n{i}")
        report("mc launch busybox --network -> DHCP address", samples, "-")
        for label, extra in (("no nic", ["--no-profiles", "-s", "default"]),
                             ("one nic", ["--network", net])):
            samples = []
            for i in range(runs):
                samples.append(timed(lambda i=i, extra=extra: daemon.ok("launch", "busybox",
                                                                        f"m{i}", *extra)))
                daemon.ok("delete", "--force", f"m{i}")
            report(f"mc launch busybox ({label})", samples, "-")
        for i in range(10):
            launch_to_address(f"l{i}")
        samples = [timed(lambda: daemon.ok("list")) for _ in range(20)]
        report("mc list (10 containers with addresses)", samples, "< 150 ms")

        daemon.ok("config", "device", "add", "l0", "web", "proxy",
                  "listen=tcp:127.0.0.1:18990", "connect=tcp:127.0.0.1:8080")
        daemon.ok("restart", "l0")
        daemon.ok("exec", "l0", "--", "sh", "-c",
                  "setsid nc -ll -p 8080 -e cat >/dev/null 2>&1 </dev/null &")
        deadline = time.monotonic() + 10
        while True:  # until the echo server inside listens
            try:
                with socket.create_connection(("127.0.0.1", 18990), timeout=2) as conn:
                    conn.sendall(b"x")
                    if conn.recv(1) == b"x":
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

        def roundtrip() -> None:
            with socket.create_connection(("127.0.0.1", 18990), timeout=10) as conn:
                conn.sendall(b"x")
                conn.recv(1)

        samples = [timed(roundtrip) for _ in range(30)]
        report("proxy: connect + 1-byte echo through the container", samples, "-")
    finally:
        for inst in daemon.instances():
            daemon.mc("delete", "--force", inst["name"])
        daemon.mc("network", "delete", net)


BOOT_FLEET = [f"boot{i:02d}" for i in range(20)]
# 12 autostart: 6 with neither priority nor delay (the parallel group), 6 with priorities.
BOOT_AUTO = {name: ({"boot.autostart.priority": str(10 - 3 * (i % 3))} if i >= 6 else {})
             for i, name in enumerate(BOOT_FLEET[:12])}


def start_daemon_timed(daemon: Daemon) -> float:
    """Start machined and return the seconds until its API answers GET /1.0."""
    from cli.client import Client
    from cli.errors import CliError

    start = time.time()
    with open(daemon.root.parent / "machined.stderr", "ab") as log:
        daemon.proc = subprocess.Popen([daemon.machined_path], env=daemon.env, stdout=log,
                                       stderr=log, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
    while True:
        if daemon.proc.poll() is not None:
            raise RuntimeError("machined exited at start")
        if daemon.socket.exists():
            client = Client(os.fspath(daemon.socket))
            try:
                client.get("/1.0")
                return time.time() - start
            except (CliError, OSError):
                pass
            finally:
                client.close()
        if time.time() - start > 60:
            raise RuntimeError("machined did not answer within 60 s")
        time.sleep(0.005)


def init_pids(daemon: Daemon, names: list[str]) -> dict[str, int]:
    """Init PID of each running container, from its state.json (the monitor writes it)."""
    pids = {}
    for name in names:
        try:
            st = json.loads((daemon.root / "run" / name / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if st.get("status") == "running" and os.path.exists(f"/proc/{st['init_pid']}"):
            pids[name] = st["init_pid"]
    return pids


def bench_boot(daemon: Daemon, runs: int) -> None:
    """A simulated host reboot with 20 busybox containers of which 12 autostart (6 in the
    parallel group, 6 by priority, no delays): `machined shutdown`, then the time from
    daemon start until all 12 inits run. Then daemon restarts (SIGTERM) with 20 running:
    time until the API answers, and whether every init PID survived."""
    box = built_image("busybox", "unified")
    if daemon.mc("image", "info", "busybox").code != 0:
        daemon.ok("image", "import", *map(os.fspath, box), "--alias", "busybox")
    # An installed machined keeps its bytecode cache; with PYTHONDONTWRITEBYTECODE set (as
    # in some shells) every start compiles ~100 modules first (~0.5 s on this VM).
    daemon.env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        for name in BOOT_FLEET:
            daemon.ok("launch", "busybox", name)
            auto = BOOT_AUTO.get(name)
            config = {"boot.autostart": "true", **auto} if auto is not None else {
                "boot.autostart": "false"}
            daemon.api("PATCH", f"/1.0/instances/{name}", {"config": config})
        boot, api, down = [], [], []
        for _ in range(runs):
            start = time.time()
            res = subprocess.run([daemon.machined_path, "shutdown"], env=daemon.env,
                                 capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                raise RuntimeError(f"machined shutdown failed: {res.stderr}")
            down.append(time.time() - start)
            daemon.proc.wait(timeout=30)
            if init_pids(daemon, BOOT_FLEET):
                raise RuntimeError("containers still run after machined shutdown")
            start = time.time()
            api.append(start_daemon_timed(daemon))
            deadline = start + 120
            while len(init_pids(daemon, list(BOOT_AUTO))) < len(BOOT_AUTO):
                if time.time() > deadline:
                    raise RuntimeError("the autostart containers did not all start")
                time.sleep(0.01)
            boot.append(time.time() - start)
            if set(init_pids(daemon, BOOT_FLEET)) != set(BOOT_AUTO):
                raise RuntimeError("autostart started the wrong containers")
        report("machined shutdown (20 running, 1 batch)", down, "-")
        report("host boot: daemon start -> API answers", api, "-")
        report("host boot: daemon start -> 12 autostart inits running", boot, "< 20000 ms")

        for name in BOOT_FLEET:
            if name not in BOOT_AUTO:
                daemon.ok("start", name)
        samples = []
        for _ in range(runs):
            before = init_pids(daemon, BOOT_FLEET)
            if len(before) != len(BOOT_FLEET):
                raise RuntimeError("not all 20 containers run")
            daemon.kill()
            samples.append(start_daemon_timed(daemon))
            after = init_pids(daemon, BOOT_FLEET)
            if after != before:
                raise RuntimeError(f"init PIDs changed across a restart: {before} -> {after}")
        report("daemon restart (20 running) -> API answers", samples, "< 2000 ms")
        print(f"{'init PIDs unchanged across every restart':<52} yes (20 of 20, "
              f"{runs} restarts)", flush=True)
    finally:
        for name in BOOT_FLEET:
            daemon.mc("delete", "--force", name)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", action="store_true",
                        help="only the file transfer figures (mc file push/pull)")
    parser.add_argument("--images", action="store_true",
                        help="only the image server figures (remote launch, copy, publish)")
    parser.add_argument("--network", action="store_true",
                        help="only the network figures (bridge, DHCP, proxy)")
    parser.add_argument("--storage", action="store_true",
                        help="only the snapshot/restore/copy figures (dir and btrfs pools)")
    parser.add_argument("--boot", action="store_true",
                        help="only the autostart/host shutdown/daemon restart figures")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="machined-bench-"))
    os.chmod(base, 0o711)
    daemon = Daemon(base / "state")
    daemon.start()
    try:
        if args.files:
            bench_files(daemon, base, args.runs)
            return 0
        if args.images:
            bench_images(daemon, base, args.runs)
            return 0
        if args.storage:
            bench_storage(daemon, base, args.runs)
            return 0
        if args.network:
            bench_network(daemon, base, args.runs)
            return 0
        if args.boot:
            bench_boot(daemon, args.runs)
            return 0
        fingerprint = debian_fingerprint(daemon)

        def launch(name: str) -> None:
            daemon.ok("launch", "debian/12", name)
            wait_booted(daemon, name)

        spares = daemon.root / "storage-pools/default/spares"

        def spare_ready() -> None:
            deadline = time.monotonic() + 300
            while not any(spares.glob(f"{fingerprint}.*")) and time.monotonic() < deadline:
                time.sleep(0.1)

        samples = []
        for i in range(args.runs):
            spare_ready()
            samples.append(timed(lambda i=i: launch(f"l{i}")))
            daemon.ok("delete", "--force", f"l{i}")
        report("mc launch debian/12 -> booted (spare copy ready)", samples, "< 2500 ms")

        samples = []
        for i in range(args.runs):
            # Right after another launch took the spare: the full copy is on the critical path.
            samples.append(timed(lambda i=i: launch(f"l{i}")))
            if i < args.runs - 1:
                daemon.ok("delete", "--force", f"l{i}")
        report("mc launch debian/12 -> booted (back to back)", samples, "< 2500 ms")

        name = f"l{args.runs - 1}"
        samples = []
        for _ in range(args.runs):
            daemon.ok("stop", name)
            samples.append(timed(lambda: (daemon.ok("start", name), wait_booted(daemon, name))))
        report("mc start (stopped -> booted)", samples, "< 1500 ms")

        samples = [timed(lambda: daemon.ok("exec", name, "--", "true")) for _ in range(30)]
        report("mc exec c -- true (whole CLI process)", samples, "< 60 ms")

        box = built_image("busybox", "unified")
        daemon.ok("image", "import", *map(os.fspath, box), "--alias", "busybox")
        for i in range(9):
            daemon.ok("launch", "busybox", f"b{i}")
        samples = [timed(lambda: daemon.ok("list")) for _ in range(20)]
        report(f"mc list ({len(daemon.instances())} containers)", samples, "< 150 ms")

        bench_files(daemon, base, args.runs)
        bench_images(daemon, base, args.runs)
        bench_storage(daemon, base, args.runs)
        bench_network(daemon, base, args.runs)
        bench_boot(daemon, args.runs)
    finally:
        for inst in daemon.instances() if daemon.proc else []:
            daemon.mc("delete", "--force", inst["name"])
        daemon.kill()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
