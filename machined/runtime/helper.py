"""Container launcher and monitor, run as `python3 -I -S helper.py start <spec.json> <ready-fd>`.

Never imported by the daemon: it is exec'd, then forks off the monitor (which outlives the
daemon) and exits. Process tree while starting:

  monitor  host namespaces, session leader, child subreaper, owns the console pty master
   └─ setup   private mount namespace (nothing reaches the host's), writes the id maps,
      │       makes the idmapped (or bind) mount of the rootfs at <run_dir>/rootfs
      └─ child   new user namespace; unshares mnt/uts/ipc/net/pid, then cgroup (last, after
          │      the monitor moved it into the container cgroups)
          └─ init   PID 1: mounts, pivot_root, exec of the container's init
setup and child exit once init is forked; init is re-parented to the monitor (subreaper),
which waits for it, removes the cgroups and writes run_dir/state.json.

Nics (sp.nics): the daemon made each interface on the host (a veth peer or a macvlan, named
`host_peer`); once the child has its network namespace, setup moves each one in under its
name inside (iproute2's `ip`), and the child brings lo and the nics up before init runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cgroups  # noqa: E402
import linux  # noqa: E402
import spec as specmod  # noqa: E402

LOG_CAP = 1 << 20
CONTAINER_NOFILE = 1024
LOG_KEEP = 256 << 10
SETUP_TIMEOUT = 60
NS_FLAGS = (linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWNET
            | linux.CLONE_NEWPID)
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IP_TOOLS = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")
IP_TIMEOUT = 20


class SetupError(Exception):
    pass


def write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def open_console(uid: int, gid: int) -> tuple[int, int, str]:
    """A host pty pair opened without becoming anyone's controlling terminal; the slave is
    owned by container root so its getty can use it."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
    num = int.from_bytes(fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"), sys.byteorder)
    slave = os.open(f"/dev/pts/{num}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    os.fchown(slave, uid, gid)
    os.set_blocking(master, False)
    return master, slave, f"/dev/pts/{num}"


# ---------------------------------------------------------------- init (PID 1) side


def resolve(rootfd: int, path: str, create: str = "") -> int:
    """O_PATH fd for a container path, resolved as if rootfd were / (the rootfs is hostile:
    its symlinks must not lead us to host paths). Creates a missing dir or file."""
    rel = path.lstrip("/")
    how = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
    try:
        return linux.openat2(rootfd, rel, os.O_PATH | os.O_CLOEXEC, how)
    except FileNotFoundError:
        if not create:
            raise
    parent, _, name = rel.rpartition("/")
    pfd = resolve(rootfd, parent, "dir") if parent else os.dup(rootfd)
    try:
        if create == "dir":
            os.mkdir(name, 0o755, dir_fd=pfd)
        else:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                             dir_fd=pfd))
    except FileExistsError:
        pass
    finally:
        os.close(pfd)
    return linux.openat2(rootfd, rel, os.O_PATH | os.O_CLOEXEC, how)


def apply_mounts(rootfd: int, ops: list[specmod.MountOp], console: str) -> None:
    for op in ops:
        if op.kind == "symlink":
            parent, _, name = op.target.rpartition("/")
            pfd = resolve(rootfd, parent)
            try:
                os.symlink(op.source or "", name, dir_fd=pfd)
            finally:
                os.close(pfd)
            continue
        fd = resolve(rootfd, op.target, op.kind if op.kind in ("dir", "file") else "")
        try:
            target = f"/proc/self/fd/{fd}"
            flags = linux.mount_flags(op.flags)
            if op.kind == "mount":
                linux.mount(op.source, target, op.fstype, flags, op.data)
            elif op.kind == "bind":
                # By path: a bind source must be a mount of our own namespace, which the
                # monitor's fd for the pty is not.
                src = console if op.source == "@console" else op.source
                linux.mount(src, target, None, linux.MS["bind"])
            elif op.kind == "remount":
                linux.mount(None, target, None, flags | linux.MS["remount"], op.data)
        finally:
            os.close(fd)


def bind_devices(rootfd: int, stagefd: int, devs: list[dict]) -> None:
    """Bind each device staged by setup onto its path, resolved inside the new root (a
    symlink in the rootfs cannot send it to a host path). The binds copy the staged mounts,
    whose read-only flag was locked when the mount namespace changed user namespace."""
    stage = f"/proc/self/fd/{stagefd}"
    for index, dev in enumerate(devs):
        try:
            st = os.stat(str(index), dir_fd=stagefd)
        except FileNotFoundError:
            continue  # an optional device whose source is missing
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        try:
            fd = resolve(rootfd, dev["path"], kind)
        except OSError as e:
            raise SetupError(f"Device {dev['name']!r}: path {dev['path']} cannot be made inside "
                             f"the container: {os.strerror(e.errno or 0)} (symlinks on the way "
                             "are resolved inside the container)") from None
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode) != (kind == "dir"):
                have = "a directory" if kind == "file" else "not a directory"
                raise SetupError(f"Device {dev['name']!r}: {dev['path']} inside the container "
                                 f"is {have}, unlike its source {dev['source']}")
            linux.mount(f"{stage}/{index}", f"/proc/self/fd/{fd}", None,
                        linux.MS["bind"] | linux.MS["rec"])
        finally:
            os.close(fd)


def write_hostname(name: str) -> None:
    """/etc/hostname inside the container, after pivot_root, refusing symlinks and other
    filesystems (a privileged container's /etc/hostname -> /proc/... must not be written)."""
    how = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_XDEV
    try:
        # O_NONBLOCK: the container may have made it a FIFO, which would block until read.
        fd = linux.openat2(linux.AT_FDCWD, "/etc/hostname", os.O_WRONLY | os.O_CREAT
                           | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, how, 0o644)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, 0)
            os.write(fd, name.encode() + b"\n")
    finally:
        os.close(fd)


def run_init(sp: specmod.LaunchSpec, rootfd: int, console: int, console_path: str,
             report: int, ops: list[specmod.MountOp], stagefd: int, devs: list[dict]) -> None:
    os.setsid()
    apply_mounts(rootfd, ops, console_path)
    if devs:
        bind_devices(rootfd, stagefd, devs)
    os.fchdir(rootfd)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)  # the old root, stacked on top by pivot_root(".", ".")
    os.chdir("/")
    linux.sethostname(sp.hostname)
    write_hostname(sp.hostname)
    for n in (0, 1, 2):
        os.dup2(console, n)
    keep = {0, 1, 2, report}
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # ignored by Python or the monitor; survives exec
    env = {"container": "lxc", **sp.environment}
    os.execve(sp.init[0], sp.init, env)


# ---------------------------------------------------------------- setup side


def write_idmaps(pid: int, sp: specmod.LaunchSpec) -> None:
    for fname, idmap in (("uid_map", sp.uid_map), ("gid_map", sp.gid_map)):
        with open(f"/proc/{pid}/{fname}", "w") as f:
            f.write("".join(f"{i} {o} {c}\n" for i, o, c in idmap))


def resolve_devices(sp: specmod.LaunchSpec) -> list[dict]:
    """The devices to set up at this boot. unix-char/unix-block nodes take their numbers
    from the host node unless major/minor are set; a missing node that is not required is
    left out (a missing disk source is found by setup)."""
    out = []
    for dev in sp.devices:
        dev = dict(dev)
        if dev["type"] in ("unix-char", "unix-block") and dev.get("major") is None:
            try:
                st = os.stat(dev["source"])
            except FileNotFoundError:
                if not dev["required"]:
                    continue
                raise SetupError(f"Device {dev['name']!r}: host device node {dev['source']} "
                                 "does not exist (set required=false to start without it)"
                                 ) from None
            char = dev["type"] == "unix-char"
            if not (stat.S_ISCHR if char else stat.S_ISBLK)(st.st_mode):
                raise SetupError(f"Device {dev['name']!r}: {dev['source']} is not a "
                                 f"{'character' if char else 'block'} device node")
            dev["major"], dev["minor"] = os.major(st.st_rdev), os.minor(st.st_rdev)
        out.append(dev)
    return out


def stage_devices(sp: specmod.LaunchSpec, devs: list[dict], stage: str, userns: int) -> None:
    """In setup (host user namespace, private mount namespace), before the container's
    mount namespace is made: one entry per device under a private tmpfs at `stage`, named
    by its index. Disk sources become detached clones (open_tree, as host root, so any host
    path works) made read-only and/or idmapped (shift), then mounted there; unix nodes are
    made with mknod, owned by the mapped uid/gid. init binds them into place later."""
    linux.mount("tmpfs", stage, "tmpfs", linux.MS["nosuid"] | linux.MS["noexec"],
                "mode=0711,size=64k")
    for index, dev in enumerate(devs):
        item = os.path.join(stage, str(index))
        if dev["type"] == "disk":
            stage_disk(sp, dev, item, userns)
            continue
        kind = stat.S_IFCHR if dev["type"] == "unix-char" else stat.S_IFBLK
        os.mknod(item, kind | 0o600, os.makedev(dev["major"], dev["minor"]))
        try:
            os.chown(item, specmod.map_id(sp.uid_map, dev["uid"]),
                     specmod.map_id(sp.gid_map, dev["gid"]))
        except ValueError as e:
            raise SetupError(f"Device {dev['name']!r}: {e}") from None
        os.chmod(item, dev["mode"])


def stage_disk(sp: specmod.LaunchSpec, dev: dict, item: str, userns: int) -> None:
    flags = linux.OPEN_TREE_CLONE | linux.OPEN_TREE_CLOEXEC
    if dev["recursive"]:
        flags |= linux.AT_RECURSIVE
    try:
        tree = linux.open_tree(linux.AT_FDCWD, dev["source"], flags)
    except FileNotFoundError:
        if not dev["required"]:
            return
        raise SetupError(f"Disk device {dev['name']!r}: source {dev['source']} does not exist "
                         "(set required=false to start without it)") from None
    try:
        st = os.fstat(tree)
        if stat.S_ISBLK(st.st_mode):
            raise SetupError(f"Disk device {dev['name']!r}: source {dev['source']} is a block "
                             "device; mounting filesystems is not supported (pass the node "
                             "with a unix-block device)")
        attrs, owner = 0, 0
        if dev["readonly"]:
            attrs |= linux.MOUNT_ATTR_RDONLY
        if dev["shift"] and not sp.privileged:
            attrs, owner = attrs | linux.MOUNT_ATTR_IDMAP, userns
        if attrs:
            try:
                linux.mount_setattr(tree, attrs, owner, dev["recursive"], dev["source"])
            except OSError as e:
                what = "an idmapped (shift=true)" if owner else "a read-only"
                raise SetupError(f"Disk device {dev['name']!r}: cannot make {what} mount of "
                                 f"{dev['source']} ({e})") from None
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(item, 0o755)
        else:
            os.close(os.open(item, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        linux.move_mount(tree, item)
    finally:
        os.close(tree)


def ip_tool() -> str:
    for path in IP_TOOLS:
        if os.access(path, os.X_OK):
            return path
    raise SetupError(f"Nics need iproute2's ip, which is not installed (looked for "
                     f"{', '.join(IP_TOOLS)})")


def run_ip(nic: dict, what: str, *args: str, pass_fds: tuple[int, ...] = ()) -> None:
    """One `ip` command about nic `nic`; SetupError naming the nic and what failed."""
    import subprocess

    argv = [ip_tool(), *args]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=IP_TIMEOUT, pass_fds=pass_fds, env={"LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise SetupError(f"Nic {nic['device']!r}: {what}: ip did not answer in "
                         f"{IP_TIMEOUT} seconds") from None
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().replace("\n", " ")
        raise SetupError(f"Nic {nic['device']!r}: {what}: {reason or 'ip failed'}")


def move_nics_in(sp: specmod.LaunchSpec, pid: int) -> None:
    """In setup (host network namespace): each nic the daemon made on the host goes into
    the child's new network namespace under its name inside. Its tag (ifalias) stays on the
    host: the container does not see machined's link tags."""
    for nic in sp.nics:
        run_ip(nic, f"cannot move host interface {nic['host_peer']} into the container",
               "link", "set", "dev", nic["host_peer"], "netns", str(pid), "name", nic["name"],
               "alias", "")


def setup(sp: specmod.LaunchSpec, layout: cgroups.Layout, paths: cgroups.Paths,
          target: str, console: int, console_path: str, report: int, devs: list[dict]) -> None:
    """Runs in the 'setup' process; reports 'pid <init>' or raises."""
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS["rec"] | linux.MS["private"])
    if sp.privileged:
        linux.mount(sp.rootfs, target, None, linux.MS["bind"] | linux.MS["rec"])
    ops = specmod.plan_mounts(layout.mode, layout.named_systemd)
    stage = os.path.join(sp.run_dir, "devices")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            child(sp, theirs, target, console, console_path, report, ops, stage, devs)
        except BaseException as e:
            os.write(report, f"error {describe(e)}\n".encode())
        os._exit(1)
    theirs.close()
    try:
        userns = -1
        if not sp.privileged:
            if ours.recv(16) != b"userns":
                raise SetupError("The container process died before its user namespace was set up.")
            write_idmaps(pid, sp)
            userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            tree = linux.open_tree(linux.AT_FDCWD, sp.rootfs, linux.OPEN_TREE_CLONE
                                   | linux.OPEN_TREE_CLOEXEC | linux.AT_RECURSIVE)
            try:
                linux.mount_setattr_idmap(tree, userns, sp.rootfs)
            except OSError as e:
                raise SetupError(f"Idmapped mounts are not supported for {sp.rootfs} ({e}); "
                                 "unprivileged containers need them.") from e
            # nodev (locked once the mount namespace changes owner): on-disk uid 0 is
            # container root here and unprivileged containers get no devices cgroup, so a
            # node left in the rootfs (made while privileged, say `b 8:0`) would be the host's
            # raw disk. The container's own nodes are bind mounts (/dev, unix-* devices).
            linux.mount_setattr(tree, linux.MOUNT_ATTR_NODEV, recursive=True, path=sp.rootfs)
            linux.move_mount(tree, target)
            os.close(tree)
        if devs:
            stage_devices(sp, devs, stage, userns)
        if userns >= 0:
            os.close(userns)
        cgroups.attach(paths, pid)
        ours.send(b"go")
        msg = ours.recv(64)
        if msg == b"net":  # the child has its network namespace: hand it the nics
            move_nics_in(sp, pid)
            ours.send(b"go2")
            msg = ours.recv(64)
        if msg.startswith(b"pid "):
            os.write(report, msg + b"\n")
    finally:
        ours.close()  # a child still waiting for "go" reads EOF and exits
        os.waitpid(pid, 0)


def child(sp: specmod.LaunchSpec, sock: socket.socket, target: str, console: int,
          console_path: str, report: int, ops: list[specmod.MountOp], stage: str,
          devs: list[dict]) -> None:
    if not sp.privileged:
        linux.unshare(linux.CLONE_NEWUSER)
        sock.send(b"userns")
    if sock.recv(16) != b"go":
        os._exit(1)
    linux.unshare(NS_FLAGS)
    if sp.nics:
        sock.send(b"net")
        if sock.recv(16) != b"go2":
            os._exit(1)  # setup failed (and reports why)
    for index, ifindex in enumerate(bring_up(sp.nics)):
        # Names inside can change (the container may rename its eth0): the monitor finds
        # each nic by its index at a reboot.
        os.write(report, f"nic {index} {ifindex}\n".encode())
    # Cgroup namespace last: its root is the cgroup the monitor just moved us into.
    linux.unshare(linux.CLONE_NEWCGROUP)
    if not sp.privileged:
        # pivot_root refuses a new root that is locked, as every mount copied into a
        # namespace owned by a new user namespace is: bind it onto itself to get our own.
        linux.mount(target, target, None, linux.MS["bind"] | linux.MS["rec"])
    # Opened while still host uid 0: the path may cross root-only directories.
    rootfd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stagefd = os.open(stage, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if devs else -1
    if not sp.privileged:
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    pid = os.fork()
    if pid == 0:
        sock.close()
        try:
            run_init(sp, rootfd, console, console_path, report, ops, stagefd, devs)
            raise SetupError(f"exec of {sp.init[0]} returned")
        except BaseException as e:
            os.write(report, f"error {describe(e)}\n".encode())
        os._exit(1)
    sock.send(f"pid {pid}".encode())
    os._exit(0)


def bring_up(nics: list[dict]) -> list[int]:
    """In the child, inside the new network namespace (it holds CAP_NET_ADMIN over it): lo
    and every nic up, so that init finds them ready; returns each nic's ifindex."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in ("lo", *(nic["name"] for nic in nics)):
            raw = name.encode()
            req = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", raw, 0))
            flags = struct.unpack_from("H", req, 16)[0]
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", raw, flags | IFF_UP))
    return [socket.if_nametoindex(nic["name"]) for nic in nics]


def describe(e: BaseException) -> str:
    if isinstance(e, OSError) and not isinstance(e, SetupError) and e.strerror:
        # "[Errno 22] ..." is Python's spelling, not a sentence for users.
        where = f": {e.filename}" if e.filename else ""
        return (e.strerror + where).replace("\n", " ")
    if isinstance(e, (SetupError, OSError)):
        return str(e).replace("\n", " ")
    return "".join(traceback.format_exception_only(type(e), e)).strip().replace("\n", " ")


# ---------------------------------------------------------------- monitor side


class Monitor:
    def __init__(self, sp: specmod.LaunchSpec) -> None:
        self.sp = sp
        self.layout = cgroups.detect()
        self.target = os.path.join(sp.run_dir, "rootfs")
        self.state_path = os.path.join(sp.run_dir, "state.json")
        self.paths: cgroups.Paths = {}
        self.init_pid = 0
        self.log_fd = -1
        self.master, self.slave, self.console_path = open_console(*sp.root_ids())
        # With nics: the container's network namespace, held so that its nics survive a
        # reboot from inside, and each nic's ifindex in it.
        self.netns = -1
        self.nic_ifindex: dict[int, int] = {}

    def launch(self) -> None:
        """Create cgroups and boot init; raises SetupError with everything cleaned up."""
        sp = self.sp
        os.makedirs(self.target, exist_ok=True)
        devs = resolve_devices(sp)
        if devs:
            os.makedirs(os.path.join(sp.run_dir, "devices"), mode=0o700, exist_ok=True)
        uid, gid = sp.root_ids()
        self.paths = cgroups.create(self.layout, sp.name, sp.limits, uid, gid,
                                    restrict_devices=sp.privileged,
                                    device_rules=specmod.device_rules(devs))
        rd, wr = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(rd)
            try:
                setup(sp, self.layout, self.paths, self.target, self.slave, self.console_path,
                      wr, devs)
                os._exit(0)
            except BaseException as e:
                os.write(wr, f"error {describe(e)}\n".encode())
            os._exit(1)
        os.close(wr)
        out = b""
        try:
            while chunk := os.read(rd, 4096):  # EOF once init exec'd (cloexec) or all died
                out += chunk
        except BaseException:  # SETUP_TIMEOUT: init (if forked) is stuck somewhere
            cgroups.remove(self.paths)  # kills it: it was attached before it was forked
            raise
        finally:
            os.close(rd)
        os.waitpid(pid, 0)
        init_pid, errors, ifindex = 0, [], {}
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("pid "):
                init_pid = int(line[4:])
            elif line.startswith("error "):
                errors.append(line[6:])
            elif line.startswith("nic "):
                index, value = line[4:].split()
                ifindex[int(index)] = int(value)
        if init_pid and not errors:
            done, status = os.waitpid(init_pid, os.WNOHANG)
            if done:
                errors.append(f"{sp.init[0]} exited at once (status {status}).")
        if errors or not init_pid:
            if init_pid:
                try:
                    os.kill(init_pid, signal.SIGKILL)
                    os.waitpid(init_pid, 0)
                except OSError:
                    pass
            cgroups.remove(self.paths)
            raise SetupError(errors[0] if errors else "The container did not start.")
        self.init_pid = init_pid
        if sp.nics:
            self.close_netns()
            # init is our child (not reaped yet): its pid cannot have been reused.
            self.netns = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            self.nic_ifindex = ifindex
        self.write_state("running")

    def close_netns(self) -> None:
        if self.netns >= 0:
            os.close(self.netns)
            self.netns = -1

    def reclaim_nics(self) -> None:
        """After a reboot from inside, before booting again: every nic goes back from the old
        network namespace (held by self.netns, empty of processes now) to the host under its
        host_peer name and tag, so that launch() moves it in again: same interface, same MAC,
        its host side still on the bridge. Addresses are flushed by the move. A nic the
        container hid or deleted makes the reboot fail (SetupError)."""
        if not self.sp.nics or self.netns < 0:
            return
        rd, wr = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(rd)
            try:
                self._reclaim_in_netns()
                os._exit(0)
            except BaseException as e:
                os.write(wr, describe(e).encode())
            os._exit(1)
        os.close(wr)
        try:
            error = b""
            while chunk := os.read(rd, 4096):
                error += chunk
        finally:
            os.close(rd)
            os.waitpid(pid, 0)
            self.close_netns()
        if error:
            raise SetupError(error.decode(errors="replace"))

    def _reclaim_in_netns(self) -> None:
        """In a forked child: enter the old network namespace, find each nic by ifindex (the
        container may have renamed it) and send it to the host's namespace, as it was made."""
        host = os.open("/proc/self/ns/net", os.O_RDONLY)  # inherited by ip: not cloexec
        linux.setns(self.netns, linux.CLONE_NEWNET)
        for index, nic in enumerate(self.sp.nics):
            try:
                name = socket.if_indextoname(self.nic_ifindex[index])
            except (KeyError, OSError):
                raise SetupError(f"Nic {nic['device']!r}: interface {nic['name']} is gone from "
                                 "the container (deleted or moved away): it cannot boot again "
                                 "with it") from None
            # Its MAC back too: a reboot does not keep what the container set.
            run_ip(nic, f"cannot take interface {name} back from the container",
                   "link", "set", "dev", name, "netns", f"/proc/self/fd/{host}",
                   "name", nic["host_peer"], "alias", nic.get("alias", ""),
                   *(("address", nic["hwaddr"]) if nic.get("hwaddr") else ()),
                   pass_fds=(host,))

    def discard_nics(self) -> None:
        """After a failed reboot: the nics taken back to the host go (a veth peer takes its
        host side with it). Errors are ignored: a nic still in a namespace dies with it."""
        for nic in self.sp.nics:
            try:
                run_ip(nic, "delete", "link", "del", "dev", nic["host_peer"])
            except (SetupError, OSError):
                pass

    def write_state(self, status: str, **extra: object) -> None:
        write_json(self.state_path, {
            "status": status, "name": self.sp.name, "init_pid": self.init_pid,
            "init_starttime": linux.proc_starttime(self.init_pid) if self.init_pid else None,
            "monitor_pid": os.getpid(), "monitor_starttime": linux.proc_starttime(os.getpid()),
            "cgroups": self.paths, "privileged": self.sp.privileged,
            "stop_signal": self.sp.stop_signal, "console_log": self.sp.console_log,
            "started_at": time.time() if status == "running" else None, **extra})

    def copy_console(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            os.write(self.log_fd, data)
            if os.fstat(self.log_fd).st_size > LOG_CAP:
                self.truncate_log()

    def truncate_log(self) -> None:
        size = os.fstat(self.log_fd).st_size
        tail = os.pread(self.log_fd, LOG_KEEP, size - LOG_KEEP)
        os.ftruncate(self.log_fd, 0)
        os.write(self.log_fd, tail)

    def watch(self) -> int:
        """Copy the console until init exits; returns its wait status."""
        pidfd = linux.pidfd_open(self.init_pid)
        try:
            while True:
                ready, _, _ = select.select([self.master, pidfd], [], [])
                if self.master in ready:
                    self.copy_console()
                if pidfd in ready:
                    _, status = os.waitpid(self.init_pid, 0)
                    self.copy_console()
                    return status
        finally:
            os.close(pidfd)

    def run(self, ready: int) -> None:
        sp = self.sp
        self.log_fd = os.open(sp.console_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                              | os.O_CLOEXEC, 0o600)
        signal.signal(signal.SIGALRM, _setup_timeout)
        signal.alarm(SETUP_TIMEOUT)
        try:
            self.launch()
        except BaseException as e:
            os.write(ready, f"error {describe(e)}\n".encode())
            self.write_state("stopped", error=describe(e))
            return
        finally:
            signal.alarm(0)
        os.write(ready, f"ok {self.init_pid}\n".encode())
        os.close(ready)
        while True:
            status = self.watch()
            cgroups.remove(self.paths)
            stopping = os.path.exists(os.path.join(sp.run_dir, "stopping"))
            rebooted = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGHUP
            if not rebooted or stopping:
                break
            try:  # reboot(2) in a PID namespace kills its init with SIGHUP: boot again
                self.reclaim_nics()
                self.launch()
            except BaseException as e:
                self.close_netns()
                self.discard_nics()
                self.write_state("stopped", error=describe(e))
                return
        # Closed at once: the namespace goes, and with it the nics (a veth takes its host side).
        self.close_netns()
        self.init_pid = 0
        self.write_state("stopped", exit_status=status)


def _setup_timeout(signum: int, frame: object) -> None:
    raise SetupError(f"The container did not start within {SETUP_TIMEOUT} seconds.")


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "start":
        print("usage: helper.py start <spec.json> <ready-fd>", file=sys.stderr)
        return 2
    ready = int(argv[3])
    # The daemon raised its own soft fd limit (proxied connections); containers get the
    # usual soft 1024 (programs that select() rely on it), the hard limit unchanged.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(CONTAINER_NOFILE, hard), hard))
    with open(argv[2]) as f:
        sp = specmod.LaunchSpec.from_json(f.read())
    # Fork off the monitor so that it is nobody's child but init's (or a subreaper's):
    # the daemon reaps this process at once and holds nothing of the container.
    if os.fork() > 0:
        return 0
    os.setsid()
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        Monitor(sp).run(ready)
    except BaseException as e:
        try:
            os.write(ready, f"error {describe(e)}\n".encode())
        except OSError:
            pass
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
