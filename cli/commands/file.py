"""`mc file push|pull|delete|create|edit`: files in instances, over
/1.0/instances/<n>/files (LXD's API and X-LXD-* headers). Naming rules are in filepaths.py."""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import sys
from typing import Any, BinaryIO

import click

from cli.client import Client, error_from
from cli.context import Env, pass_env
from cli.errors import CliError
from cli.filepaths import (
    MAX_ID,
    STDIO,
    InstancePath,
    parents,
    parse_instance_path,
    parse_mode,
    plan_pull,
    plan_push,
    resolve_link,
    safe_entry_name,
    source_name,
)
from cli.lazy import LazyGroup
from cli.params import url_part

MAX_LINKS = 40  # symlinks followed for one path, as the kernel does
MAX_DEPTH = 256  # directory levels in a recursive pull (one open fd each)
PARENT_MODE = 0o755  # directories made by -p (incus; LXD's server default is 0750)
Headers = dict[str, str]


class Files:
    """The files endpoint of one instance."""

    def __init__(self, client: Client, instance: str, progress: bool) -> None:
        self.client = client
        self.instance = instance
        self.progress = progress
        self._base = f"/1.0/instances/{url_part(instance)}/files?path="
        self._checked = False

    def url(self, path: str, extra: str = "") -> str:
        from urllib.parse import quote

        try:
            return self._base + quote(path, safe="/") + extra
        except UnicodeEncodeError:  # undecodable bytes in an argument or a local file name
            raise CliError(f"Invalid path {path!r} in {self.instance}: only UTF-8 file names "
                           "can be transferred") from None

    def _ensure_instance(self) -> None:
        """A 404 on a path may mean that the instance itself is missing: say which."""
        if self._checked:
            return
        if not self.client.exists(f"/1.0/instances/{url_part(self.instance)}"):
            raise CliError(f"Instance {self.instance!r} not found")
        self._checked = True

    def head(self, path: str) -> Headers | None:
        """lstat: the X-LXD-* headers, or None if nothing is there."""
        resp = self.client.raw("HEAD", self.url(path))
        if resp.status == 404:
            self._ensure_instance()
            return None
        if resp.status >= 400:
            raise error_from(resp)
        self._checked = True
        return resp.headers

    def follow(self, path: str) -> tuple[str, Headers | None]:
        """Follow symlinks (as the instance would): the final path and its headers."""
        for _hop in range(MAX_LINKS):
            headers = self.head(path)
            if headers is None or headers.get("x-lxd-type") != "symlink":
                return path, headers
            path = resolve_link(path, self.read_link(path))
        raise CliError(f"{self.instance}{path}: too many levels of symbolic links")

    def read_link(self, path: str) -> str:
        resp = self.client.download(self.url(path), lambda h: None)
        return resp.body.decode("utf-8", "surrogateescape")

    def post(self, path: str, kind: str, perms: Perms, data: bytes | None = None) -> None:
        from cli.transfer import Body

        body = Body([data], "application/octet-stream") if data is not None else None
        self.client.query("POST", self.url(path), body=body, headers=perms.headers(kind))

    def push_stream(self, path: str, source: BinaryIO, length: int | None, perms: Perms,
                    label: str) -> None:
        progress = None
        if self.progress:
            from cli.transfer import Progress

            progress = Progress(label, length or 0)
        self.client.upload(self.url(path), source, length, perms.headers("file"), progress)

    def make_parents(self, path: str, uid: int | None, gid: int | None) -> None:
        for parent in parents(path):
            self.post(parent, "directory", Perms(uid, gid, PARENT_MODE))

    def delete(self, path: str, recursive: bool) -> None:
        self.client.query("DELETE", self.url(path, "&recursive=1" if recursive else ""))


class Perms:
    """Owner and mode to send; `modify` lists the fields to change on existing files too
    (X-LXD-modify-perm): only those the user gave explicitly."""

    def __init__(self, uid: int | None, gid: int | None, mode: int | None,
                 modify: tuple[str, ...] = ()) -> None:
        self.uid, self.gid, self.mode, self.modify = uid, gid, mode, modify

    def headers(self, kind: str) -> Headers:
        out = {"X-LXD-type": kind}
        if self.uid is not None:
            out["X-LXD-uid"] = str(self.uid)
        if self.gid is not None:
            out["X-LXD-gid"] = str(self.gid)
        if self.mode is not None:
            out["X-LXD-mode"] = f"{self.mode:04o}"
        if self.modify:
            out["X-LXD-modify-perm"] = ",".join(self.modify)
        return out


def instance_path(env: Env, arg: str) -> InstancePath:
    """parse_instance_path with this user's remotes (read only when `arg` names one)."""
    if ":" in arg.partition("/")[0]:
        conf = env.config()
        return parse_instance_path(arg, conf.names(), conf.default_remote)
    return parse_instance_path(arg, default=env.default_remote())


def _explicit(uid: int | None, gid: int | None, mode: int | None) -> tuple[str, ...]:
    return tuple(f for f, v in (("uid", uid), ("gid", gid), ("mode", mode)) if v is not None)


def _mode_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_mode(value)
    except CliError as e:
        raise click.BadParameter(e.message) from None


ID = click.IntRange(0, MAX_ID)
uid_option = click.option("--uid", type=ID, help="Owner uid (inside the instance).")
gid_option = click.option("--gid", type=ID, help="Owner gid (inside the instance).")
mode_option = click.option("--mode", callback=_mode_option,
                           help="Permissions in octal, e.g. 0644 or 755.")
parents_option = click.option("-p", "--create-dirs", is_flag=True,
                              help="Create any missing parent directories.")


@click.group("file", cls=LazyGroup, aliases={"rm": "delete"})
def file_group() -> None:
    """Manage files in instances (running or stopped).

    \b
      mc file push ./app.conf c1/etc/app.conf ; mc file pull c1/etc/hosts .
      mc file push -r ./site c1/var/www/ ; mc file pull -r c1/var/log ./logs
      mc file pull c1/etc/os-release - ; echo hi | mc file push - c1/tmp/hi
      mc file create c1/tmp/d/ ; mc file delete -f c1/tmp/d ; mc file edit c1/etc/motd

    Paths are resolved inside the instance: its symlinks never lead outside it.
    """


# -- push ------------------------------------------------------------------------------------
@file_group.command("push")
@click.argument("sources", nargs=-1, required=True, metavar="<source path>...")
@click.argument("target", metavar="[<remote>:]<instance>/<path>")
@click.option("-r", "--recursive", is_flag=True, help="Push directories recursively.")
@parents_option
@uid_option
@gid_option
@mode_option
@pass_env
def push(env: Env, sources: tuple[str, ...], target: str, recursive: bool, create_dirs: bool,
         uid: int | None, gid: int | None, mode: int | None) -> None:
    """Push files into an instance.

    Files keep their mode and owner unless --mode/--uid/--gid say otherwise (on files that
    already exist only those given are changed). `-` pushes standard input. With -r,
    directories are copied with their contents, symlinks are recreated as symlinks, and a
    target that exists (or several sources) receives each source by its name.
    """
    dest = instance_path(env, target)
    files = Files(env.client(dest.remote), dest.instance, progress=not env.quiet)
    src_list = list(sources)
    stats = [None if s == STDIO else _local_stat(s, follow=not recursive) for s in src_list]
    is_dir = [st is not None and stat.S_ISDIR(st.st_mode) for st in stats]
    _, target_headers = files.follow(dest.path)
    kind = target_headers.get("x-lxd-type") if target_headers else None
    plan = plan_push(src_list, dest, kind, recursive=recursive, create_dirs=create_dirs,
                     source_is_dir=is_dir)
    if create_dirs:
        owner = stats[0]
        files.make_parents(plan.destinations[0], _pick(uid, owner, "st_uid"),
                           _pick(gid, owner, "st_gid"))
    if plan.make_target_dir:
        owner = stats[0]
        files.post(dest.path, "directory", Perms(_pick(uid, owner, "st_uid"),
                                                 _pick(gid, owner, "st_gid"), PARENT_MODE))
    for src, st, path in zip(src_list, stats, plan.destinations, strict=True):
        if st is None:
            _push_stdin(files, path, Perms(uid, gid, mode, _explicit(uid, gid, mode)))
        elif recursive and stat.S_ISLNK(st.st_mode):
            files.post(path, "symlink", Perms(_pick(uid, st, "st_uid"), _pick(gid, st, "st_gid"),
                                              None, _explicit(uid, gid, None)),
                       os.fsencode(os.readlink(src)))
        elif recursive and stat.S_ISDIR(st.st_mode):
            _push_tree(files, src, path, uid, gid, mode)
        else:
            perms = Perms(_pick(uid, st, "st_uid"), _pick(gid, st, "st_gid"),
                          mode if mode is not None else stat.S_IMODE(st.st_mode),
                          _explicit(uid, gid, mode))
            _push_file(files, src, path, perms)


def _pick(value: int | None, st: os.stat_result | None, field: str) -> int | None:
    if value is not None:
        return value
    return getattr(st, field) if st is not None else None


def _local_stat(path: str, follow: bool) -> os.stat_result:
    if not path:
        raise CliError('Invalid source path "": expected a local file name or - (stdin)')
    try:
        return os.stat(path) if follow else os.lstat(path)
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None


def _push_stdin(files: Files, path: str, perms: Perms) -> None:
    sys.stdout.flush()
    files.push_stream(path, sys.stdin.buffer, None, perms, f"Pushing {path}")


def _push_file(files: Files, src: str, path: str, perms: Perms) -> None:
    try:
        f = open(src, "rb")  # noqa: SIM115 - closed below, after the upload
    except OSError as e:
        raise CliError(f"{src}: {e.strerror}") from None
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device: its length is unknown
            files.push_stream(path, f, None, perms, f"Pushing {src}")
        else:
            files.push_stream(path, f, st.st_size, perms, f"Pushing {src}")


def _walk(top: str) -> list[tuple[str, os.stat_result]]:
    """(path relative to top, lstat) of every entry, parents first; refuses what cannot be
    pushed before anything is sent."""
    out: list[tuple[str, os.stat_result]] = []
    todo = [""]
    while todo:
        rel = todo.pop()
        full = os.path.join(top, rel) if rel else top
        st = os.lstat(full)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
                or stat.S_ISLNK(st.st_mode)):
            raise CliError(f"{full} isn't a supported file type (only files, directories and "
                           "symlinks can be pushed)")
        out.append((rel, st))
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(full), reverse=True)
            except OSError as e:
                raise CliError(f"{full}: {e.strerror}") from None
            todo += [posixpath.join(rel, n) if rel else n for n in names]
    return out


def _push_tree(files: Files, src: str, dest: str, uid: int | None, gid: int | None,
               mode: int | None) -> None:
    """incus semantics: every entry keeps its own mode and owner; --uid/--gid apply to every
    entry, --mode to the top directory only. The whole tree goes in one request, as a tar
    stream (machined's bulk extension of the directory POST), built on the fly."""
    import threading

    entries = _walk(src)
    top = entries[0][1]
    perms = Perms(_pick(uid, top, "st_uid"), _pick(gid, top, "st_gid"),
                  mode if mode is not None else stat.S_IMODE(top.st_mode),
                  _explicit(uid, gid, mode))
    headers = {**perms.headers("directory"), "Content-Type": "application/x-tar"}
    size = sum(512 + (st.st_size + 511) // 512 * 512 for _, st in entries
               if stat.S_ISREG(st.st_mode))
    progress = None
    if files.progress:
        from cli.transfer import Progress

        progress = Progress(f"Pushing {src}", size + 512 * len(entries))
    read_end, write_end = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_end, "wb", buffering=1 << 20) as out:
                _write_tar(out, src, entries[1:], uid, gid)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=produce, name="mc-tar", daemon=True)
    thread.start()
    try:
        with os.fdopen(read_end, "rb") as stream:
            files.client.upload(files.url(dest), stream, None, headers, progress)
    except CliError:
        if not failure:
            raise
    finally:
        thread.join()
    if failure:  # the local error explains the server's complaint about a cut-short archive
        e = failure[0]
        if isinstance(e, CliError | BrokenPipeError):
            raise e
        raise CliError(f"{getattr(e, 'filename', None) or src}: "
                       f"{getattr(e, 'strerror', None) or e}") from None


def _write_tar(out: BinaryIO, top: str, entries: list[tuple[str, os.stat_result]],
               uid: int | None, gid: int | None) -> None:
    import tarfile

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for rel, st in entries:
            full = os.path.join(top, rel)
            info = tarfile.TarInfo(rel)
            info.uid = _pick(uid, st, "st_uid") or 0
            info.gid = _pick(gid, st, "st_gid") or 0
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = int(st.st_mtime)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
                tar.addfile(info)
            else:
                with open(full, "rb") as f:
                    info.size = os.fstat(f.fileno()).st_size
                    tar.addfile(info, f)


# -- pull ------------------------------------------------------------------------------------
@file_group.command("pull")
@click.argument("sources", nargs=-1, required=True, metavar="[<remote>:]<instance>/<path>...")
@click.argument("target", metavar="<target path>")
@click.option("-r", "--recursive", is_flag=True, help="Pull directories recursively.")
@parents_option
@pass_env
def pull(env: Env, sources: tuple[str, ...], target: str, recursive: bool,
         create_dirs: bool) -> None:
    """Pull files from an instance.

    `-` as the target writes to standard output. Files get the instance's permission bits
    (never setuid/setgid/sticky) and the local user's ownership. Symlinks named on the
    command line are followed; inside a recursive pull they are recreated as symlinks.
    """
    srcs = [instance_path(env, s) for s in sources]
    endpoints: dict[str, Files] = {}
    found: list[tuple[Files, str, str]] = []
    for src in srcs:
        files = endpoints.setdefault(f"{src.remote}:{src.instance}",
                                     Files(env.client(src.remote), src.instance,
                                           not env.quiet and target != STDIO))
        final, headers = files.follow(src.path)
        if headers is None:
            raise CliError(f"{src}: no such file or directory")
        kind = headers.get("x-lxd-type", "file")
        found.append((files, final, kind))
    is_dir = os.path.isdir(target)
    plan = plan_pull(srcs, [k for _, _, k in found], target, is_dir,
                     os.path.lexists(target), recursive=recursive)
    if create_dirs and target != STDIO:
        parent = os.path.dirname(target.rstrip("/"))
        if parent:
            os.makedirs(parent, 0o755, exist_ok=True)
    if plan.make_target_dir:
        os.makedirs(target, 0o755, exist_ok=True)
    for (files, path, kind), dest in zip(found, plan.destinations, strict=True):
        if dest == STDIO:
            sys.stdout.flush()
            files.client.download(files.url(path), lambda h: sys.stdout.buffer)
            sys.stdout.buffer.flush()
        elif kind == "directory":
            _pull_tree(files, path, dest)
        else:
            _pull_file(files, path, dest)


def _progress(files: Files, label: str) -> Any:
    if not files.progress:
        return None
    from cli.transfer import Progress

    return Progress(label, 0)


def _pull_file(files: Files, path: str, dest: str) -> None:
    """Into a temporary file beside dest, renamed over it when complete: an interrupted pull
    leaves nothing half-written."""
    import tempfile

    directory = os.path.dirname(dest) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mc-", dir=directory)
    except OSError as e:  # name dest, not the temporary file
        hint = " (use --create-dirs/-p to create it)" if e.errno == errno.ENOENT else ""
        raise CliError(f"Cannot write {dest}: {directory}: {e.strerror}{hint}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            headers = _download_into(files, path, out)
            os.fchmod(out.fileno(), _local_mode(headers))
        os.rename(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


def _download_into(files: Files, path: str, out: BinaryIO) -> Headers:
    progress = _progress(files, f"Pulling {path}")
    seen: Headers = {}

    def sink(headers: Headers) -> BinaryIO | None:
        seen.update(headers)
        if headers.get("x-lxd-type") != "file":
            return None
        if progress is not None:
            progress.total = int(headers.get("content-length", "0"))
        return out

    files.client.download(files.url(path), sink, progress)
    if seen.get("x-lxd-type") != "file":  # replaced by something else meanwhile
        raise CliError(f"{files.instance}{path} changed while it was being pulled")
    return seen


def _local_mode(headers: Headers) -> int:
    """The instance's permission bits only: a pulled file never becomes setuid on the host."""
    try:
        return int(headers.get("x-lxd-mode", "0644"), 8) & 0o777
    except ValueError:
        return 0o644


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _pull_tree(files: Files, path: str, dest: str) -> None:
    """Recreate a directory of the instance locally. Everything below dest is created
    relative to directory fds and never through a symlink, so names and links chosen inside
    the instance cannot make this write outside dest."""
    parent_dir = os.path.dirname(os.path.abspath(dest))
    parent = os.open(parent_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        resp = files.client.download(files.url(path), lambda h: None)
        names = _listing(resp.body)
        _pull_dir(files, path, parent, os.path.basename(os.path.abspath(dest)), names,
                  resp.headers, 0)
    finally:
        os.close(parent)


def _listing(body: bytes) -> list[str]:
    import json

    try:
        names = json.loads(body).get("metadata")
    except (ValueError, AttributeError):
        raise CliError("machined sent an invalid directory listing") from None
    if not isinstance(names, list):
        raise CliError("machined sent an invalid directory listing")
    return [safe_entry_name(n) for n in names]


def _pull_dir(files: Files, path: str, parent: int, name: str, names: list[str],
              headers: Headers, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise CliError(f"{files.instance}{path}: more than {MAX_DEPTH} directory levels")
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except OSError as e:
        raise CliError(f"Cannot pull into {name}: {e.strerror} (is it a directory?)") from None
    try:
        for child in names:
            _pull_entry(files, posixpath.join(path, child), fd, child, depth)
        os.fchmod(fd, _local_mode(headers))  # last: the directory may be read-only
    finally:
        os.close(fd)


def _pull_entry(files: Files, path: str, dirfd: int, name: str, depth: int) -> None:
    progress = _progress(files, f"Pulling {path}")
    opened: list[BinaryIO] = []

    def sink(headers: Headers) -> BinaryIO | None:
        if headers.get("x-lxd-type") != "file":
            return None
        out = os.fdopen(_create_local(dirfd, name), "wb")
        opened.append(out)
        if progress is not None:
            progress.total = int(headers.get("content-length", "0"))
        return out

    try:
        resp = files.client.download(files.url(path), sink, progress)
    finally:
        for out in opened:
            out.close()
    kind = resp.headers.get("x-lxd-type")
    if kind == "file":
        _chmod_file(dirfd, name, _local_mode(resp.headers))
    elif kind == "symlink":
        _replace_with_link(dirfd, name, resp.body.decode("utf-8", "surrogateescape"))
    elif kind == "directory":
        _pull_dir(files, path, dirfd, name, _listing(resp.body), resp.headers, depth + 1)


def _create_local(dirfd: int, name: str) -> int:
    try:
        return os.open(name, _CREATE, 0o600, dir_fd=dirfd)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise CliError(f"Cannot write {name}: {e.strerror}") from None
    os.unlink(name, dir_fd=dirfd)  # a symlink is replaced, never written through
    return os.open(name, _CREATE | os.O_EXCL, 0o600, dir_fd=dirfd)


def _chmod_file(dirfd: int, name: str, mode: int) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _replace_with_link(dirfd: int, name: str, target: str) -> None:
    try:
        st = os.lstat(name, dir_fd=dirfd)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise CliError(f"Refusing to replace the directory {name} with a symlink")
        os.unlink(name, dir_fd=dirfd)
    os.symlink(target, name, dir_fd=dirfd)


# -- delete ----------------------------------------------------------------------------------
@file_group.command("delete", short_help="Delete files in instances.")
@click.argument("paths", nargs=-1, required=True, metavar="[<remote>:]<instance>/<path>...")
@click.option("-f", "--force", is_flag=True, help="Delete directories and their contents.")
@pass_env
def delete(env: Env, paths: tuple[str, ...], force: bool) -> None:
    """Delete files in instances (directories: empty ones, or any with -f)."""
    for arg in paths:
        p = instance_path(env, arg)
        Files(env.client(p.remote), p.instance, False).delete(p.path, recursive=force)


# -- create ----------------------------------------------------------------------------------
@file_group.command("create", short_help="Create a file, directory or symlink.")
@click.argument("target", metavar="[<remote>:]<instance>/<path>")
@click.argument("link_target", required=False, metavar="[<symlink target>]")
@click.option("--type", "kind", type=click.Choice(["file", "directory", "symlink"]),
              help="What to create (default: file; directory if the path ends with /).")
@parents_option
@click.option("-f", "--force", is_flag=True, help="Replace what is already there.")
@uid_option
@gid_option
@mode_option
@pass_env
def create(env: Env, target: str, link_target: str | None, kind: str | None,
           create_dirs: bool, force: bool, uid: int | None, gid: int | None,
           mode: int | None) -> None:
    """Create an empty file, a directory or a symlink in an instance."""
    dest = instance_path(env, target)
    kind = kind or ("directory" if dest.trailing_slash else "file")
    if kind == "symlink" and not link_target:
        raise CliError("--type symlink needs the symlink target as second argument")
    if kind != "symlink" and link_target:
        raise CliError("A symlink target is only accepted with --type symlink")
    files = Files(env.client(dest.remote), dest.instance, False)
    existing = files.head(dest.path)
    if existing is not None:
        there = existing.get("x-lxd-type", "file")
        if not force:
            raise CliError(f"{dest} already exists (use --force/-f to replace it)")
        if there == "directory" and kind != "directory":
            raise CliError(f"{dest} is a directory")
    if create_dirs:
        files.make_parents(dest.path, uid, gid)
    perms = Perms(uid, gid, mode, _explicit(uid, gid, mode))
    data = b"" if kind == "file" else (os.fsencode(link_target) if link_target else None)
    files.post(dest.path, kind, perms, data)


# -- edit ------------------------------------------------------------------------------------
@file_group.command("edit", short_help="Edit a file in an instance.")
@click.argument("target", metavar="[<remote>:]<instance>/<path>")
@pass_env
def edit(env: Env, target: str) -> None:
    """Edit a file of an instance with $VISUAL/$EDITOR (or replace it with standard input
    when that is not a terminal). The file keeps its mode and owner."""
    dest = instance_path(env, target)
    files = Files(env.client(dest.remote), dest.instance, False)
    path, headers = files.follow(dest.path)
    if headers is not None and headers.get("x-lxd-type") != "file":
        raise CliError(f"{files.instance}{path} is a {headers.get('x-lxd-type')}, not a file")
    if not sys.stdin.isatty():
        files.push_stream(path, sys.stdin.buffer, None, Perms(None, None, None), "Pushing")
        return
    _edit_interactively(files, path, headers is not None)


def _edit_interactively(files: Files, path: str, exists: bool) -> None:
    import hashlib
    import shlex
    import subprocess
    import tempfile

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="mc-edit-") as tmpdir:
        local = os.path.join(tmpdir, source_name(path) or "file")
        with open(local, "wb") as out:
            if exists:
                _download_into(files, path, out)
        before = hashlib.sha256(open(local, "rb").read()).digest()
        try:
            rc = subprocess.call([*shlex.split(editor), local])
        except OSError as e:
            raise CliError(f"Could not run the editor {editor!r}: {e.strerror}") from None
        if rc != 0:
            raise CliError(f"The editor exited with status {rc}; the file was not changed")
        with open(local, "rb") as f:
            if exists and hashlib.sha256(f.read()).digest() == before:
                return
            f.seek(0)
            size = os.fstat(f.fileno()).st_size
            files.push_stream(path, f, size, Perms(None, None, None), "Pushing")

