"""Run one command inside a running container: `python3 -I -S nsexec.py <control-fd>`.

On the hot path of every `mc exec`, so it imports almost nothing (no json, no socket module:
both cost more than the rest of the start-up). Protocol on the SOCK_SEQPACKET control fd:
  daemon -> us: marshal'd dict {init_pid, init_starttime, userns, cgroup_procs, argv, env,
                uid, gid, cwd, interactive, width, height}
  us -> daemon: b"pid <host pid>" (+ the pty master via SCM_RIGHTS when interactive),
                or b"error <sentence>"
  daemon -> us: one byte once it holds a pidfd of the command (so the pid cannot be reused
                before that), then we wait and exit with its status (128+N if killed by N).
Not found -> 127, not executable -> 126, as shells do.
"""

import _signal  # builtin, cheap; nothing can be imported after setns (other root)
import _socket
import fcntl
import marshal
import os
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
    """A pty from the container's own devpts (we are in its mount namespace now)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(master, TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    try:
        os.fchown(slave, uid, -1)
    except OSError:
        pass
    return master, slave


def run_child(cfg, sock, slave):
    sock.close()
    if slave >= 0:
        os.setsid()
        fcntl.ioctl(slave, TIOCSCTTY, 0)
        for n in (0, 1, 2):
            os.dup2(slave, n)
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
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)
    exec_command(cfg["argv"], env)


def main():
    sock = _socket.socket(fileno=int(sys.argv[1]))
    try:
        cfg = marshal.loads(sock.recv(1 << 20))
        pid_file = f"/proc/{cfg['init_pid']}/stat"
        # Join the cgroups first: after setns we are no longer host root.
        for path in cfg["cgroup_procs"]:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
        pidfd = linux.pidfd_open(cfg["init_pid"])
        if linux.proc_starttime(cfg["init_pid"]) != cfg["init_starttime"]:
            raise OSError(3, f"The container's init ({pid_file}) is gone")
        flags = ALL_NS | (linux.CLONE_NEWUSER if cfg["userns"] else 0)
        linux.setns(pidfd, flags)
        os.close(pidfd)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        master = slave = -1
        if cfg["interactive"]:
            master, slave = open_pty(cfg["width"], cfg["height"], cfg["uid"])
    except Exception as e:
        sock.send(f"error {e}".encode())
        return 255
    pid = os.fork()
    if pid == 0:
        try:
            run_child(cfg, sock, slave)
        except BaseException as e:
            os.write(2, f"nsexec: {e}\n".encode())
        os._exit(127)
    msg = f"pid {pid}".encode()
    if master >= 0:
        sock.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", master))])
        os.close(master)
        os.close(slave)
    else:
        sock.send(msg)
    try:
        sock.recv(1)
    except OSError:
        pass
    sock.close()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    os._exit(main())
