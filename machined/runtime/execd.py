"""Exec server of one container: `python3 -I -S execd.py <control-fd>`.

Exec'd by the daemon (never a fork of it) on the first exec into a container and kept while the
daemon's connection lasts. It joins the container's cgroups and namespaces once, then forks one
child per command: a fork of this small process costs about a millisecond, where starting a
fresh helper per exec cost tens (interpreter start-up, setns, one write per v1 hierarchy).
Children inherit the cgroups, so they count against the container's limits and freeze with it.

Protocol on the SOCK_SEQPACKET control fd, marshal'd tuples:
  daemon -> us  {init_pid, init_starttime, userns, cgroup_procs}   once
  us -> daemon  ("ready",) or ("error", sentence)
  daemon -> us  ("run", id, {argv, env, uid, gid, cwd, interactive, width, height})
                + stdin/stdout/stderr fds via SCM_RIGHTS when not interactive
  us -> daemon  ("pid", id, host_pid) (+ the pty master fd when interactive) or ("error", id, s)
  daemon -> us  ("signal", id, signum)       delivered by us: the child is ours and unreaped,
                                             so its pid cannot have been reused
  us -> daemon  ("exit", id, code)           127 not found, 126 not executable, 128+N signal
We exit when the daemon hangs up and our last child has been reaped; stopping the container
kills us with everything else in its cgroups.
"""

import _signal  # builtin and cheap; nothing can be imported after setns (another root)
import _socket
import fcntl
import marshal
import os
import resource as _resource
import select
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import linux  # noqa: E402

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
ALL_NS = (linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWNET
          | linux.CLONE_NEWPID | linux.CLONE_NEWCGROUP)
FDS = struct.Struct("iii")


def exec_command(argv, env):
    """execvpe with the search done in the container's PATH; never returns."""
    name = argv[0]
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name)
                      for d in env.get("PATH", DEFAULT_PATH).split(":")]
    code, reason = 127, "command not found"
    for path in candidates:
        try:
            os.execve(path, argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            code, reason = 126, e.strerror
    os.write(2, f"{name}: {reason}\n".encode())
    os._exit(code)


def open_pty(width, height, uid):
    """A pty from the container's own devpts (we are in its mount namespace)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    try:
        os.fchown(slave, uid, -1)
    except OSError:
        pass
    return master, slave


def run_child(cfg, stdio, slave):
    """In the forked child: stdio, credentials, cwd, exec. Never returns."""
    if slave >= 0:
        os.setsid()
        fcntl.ioctl(slave, TIOCSCTTY, 0)
        stdio = (slave, slave, slave)
    for n, fd in enumerate(stdio):
        os.dup2(fd, n)
    if slave > 2:
        os.close(slave)
    env = cfg["env"]
    os.setgroups([])
    os.setgid(cfg["gid"])
    os.setuid(cfg["uid"])
    cwd = cfg["cwd"] or env.get("HOME") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        os.write(2, f"Failed changing directory to {cwd}: {e.strerror}\n".encode())
        os._exit(126)
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT, _signal.SIGTERM):
        _signal.signal(sig, _signal.SIG_DFL)
    exec_command(cfg["argv"], env)


def enter(setup):
    """Join the container: cgroups first (after setns we are no longer host root). Not
    dumpable: container root must not ptrace us or our children before they exec (runc
    CVE-2019-5736); execve makes each command dumpable again as usual."""
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    for path in setup["cgroup_procs"]:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    pidfd = linux.pidfd_open(setup["init_pid"])
    if linux.proc_starttime(setup["init_pid"]) != setup["init_starttime"]:
        raise OSError(3, "the container's init is gone")
    linux.setns(pidfd, ALL_NS | (linux.CLONE_NEWUSER if setup["userns"] else 0))
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    return pidfd


class Server:
    def __init__(self, sock, init_pidfd):
        self.sock = sock
        self.init_pidfd = init_pidfd
        self.poll = select.poll()
        self.poll.register(sock.fileno(), select.POLLIN)
        # We sit in the container's cgroups but outside its pid namespace: when its init dies
        # the kernel kills our children, not us, so we leave by ourselves.
        self.poll.register(init_pidfd, select.POLLIN)
        self.children = {}  # pidfd -> (id, pid)
        self.by_id = {}  # id -> pid
        self.connected = True

    def send(self, msg, fds=()):
        if not self.connected:
            return
        try:
            if fds:
                self.sock.sendmsg([marshal.dumps(msg)],
                                  [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                    struct.pack(f"{len(fds)}i", *fds))])
            else:
                self.sock.send(marshal.dumps(msg))
        except OSError:
            self.hang_up()

    def hang_up(self):
        if self.connected:
            self.poll.unregister(self.sock.fileno())
            self.connected = False

    def run(self):
        while self.connected or self.children:
            for fd, _events in self.poll.poll():
                if fd == self.sock.fileno():
                    self.on_message()
                elif fd == self.init_pidfd:
                    self.poll.unregister(fd)
                    self.hang_up()
                else:
                    self.on_exit(fd)

    def on_message(self):
        try:
            # CLOEXEC: a child keeps only what it dup2()s onto 0, 1 and 2.
            data, ancdata, _flags, _addr = self.sock.recvmsg(
                1 << 20, _socket.CMSG_SPACE(FDS.size), _socket.MSG_CMSG_CLOEXEC)
        except OSError:
            data, ancdata = b"", []
        fds = []
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += struct.unpack(f"{len(payload) // 4}i", payload)
        if not data:
            self.hang_up()
            return
        try:
            msg = marshal.loads(data)
            if msg[0] == "run":
                self.start(msg[1], msg[2], fds)
            elif msg[0] == "signal" and msg[1] in self.by_id:
                os.kill(self.by_id[msg[1]], msg[2])
        except Exception:
            pass  # one bad request must not take down the other sessions
        for fd in fds:
            os.close(fd)

    def start(self, exec_id, cfg, fds):
        master = slave = -1
        try:
            if cfg["interactive"]:
                master, slave = open_pty(cfg["width"], cfg["height"], cfg["uid"])
            elif len(fds) != 3:
                raise OSError(22, "three stdio fds are needed")
            pid = os.fork()
        except Exception as e:
            for fd in (master, slave):
                if fd >= 0:
                    os.close(fd)
            self.send(("error", exec_id, _describe(e)))
            return
        if pid == 0:
            try:
                self.sock.close()
                run_child(cfg, fds, slave)
            except BaseException as e:
                os.write(2, f"exec: {e}\n".encode())
            os._exit(127)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (exec_id, pid)
        self.by_id[exec_id] = pid
        self.poll.register(pidfd, select.POLLIN)
        if master >= 0:
            self.send(("pid", exec_id, pid), [master])
            os.close(master)
            os.close(slave)
        else:
            self.send(("pid", exec_id, pid))

    def on_exit(self, pidfd):
        exec_id, pid = self.children.pop(pidfd)
        self.poll.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        del self.by_id[exec_id]
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        self.send(("exit", exec_id, code))


def _describe(e):
    if isinstance(e, OSError) and e.errno == 11:  # EAGAIN from fork: pids.max reached
        return "cannot start a process: the instance is at its process limit (limits.processes)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[0].lower() + e.strerror[1:]
    return str(e)


def _quiet_exit(*_args):
    """After setns, a traceback would make Python open files in the container's filesystem
    (source lines, codecs named by a coding cookie): die without printing anything."""
    os._exit(1)


def main():
    sys.excepthook = _quiet_exit
    # Commands get the usual soft fd limit, not the daemon's raised one.
    _soft, hard = _resource.getrlimit(_resource.RLIMIT_NOFILE)
    _resource.setrlimit(_resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    sock = _socket.socket(fileno=int(sys.argv[1]))
    # The daemon may die; we must not, while commands of ours still run.
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    try:
        init_pidfd = enter(marshal.loads(sock.recv(1 << 20)))
    except Exception as e:
        sock.send(marshal.dumps(("error", str(e))))
        return 1
    sock.send(marshal.dumps(("ready",)))
    Server(sock, init_pidfd).run()
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except BaseException:
        code = 1
    os._exit(code)
