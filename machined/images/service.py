"""Images from remote servers: fetch (copy or cache for a launch), prefer-cached launches,
refresh (auto-update) and cache expiry. LXD-BEHAVIOUR.md §3.1, §3.2.

Rules kept here:
- A download is verified completely before anything is registered, and the database rows are
  written last: a failure at any step leaves no file, volume or row.
- Two operations wanting the same fingerprint download it once (a per-fingerprint lock; the
  second finds it local).
- Only an image fetched BY ALIAS records a source alias, and only those auto-update.
- An image that is already local is not downloaded again. A launch leaves its `cached` flag as
  it is (an imported image never becomes expirable); an explicit copy clears `cached`
  (lxd#13271: the user now wants to keep it).
- A refresh that finds a new fingerprint moves every local alias to the new image, which
  inherits `cached`, `last_used_at`, `auto_update`, `public` and the source; then the old
  image (rows, files, volume, spares) goes. Instances made from it are full copies and do
  not notice."""

from __future__ import annotations

import asyncio
import logging
import platform
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from machined import clock, crash
from machined.config.schema import SERVER_KEYS
from machined.db import images as db_images
from machined.db import instances as db_instances
from machined.db import settings
from machined.errors import BadRequest, Conflict, NotFound
from machined.images import policy, store
from machined.images.download import (
    FileGone,
    Proxies,
    RemoteImage,
    RemoteServer,
    Source,
    open_server,
)
from machined.state import State

if TYPE_CHECKING:
    from machined.storage.pools import Storage

log = logging.getLogger("machined.images")


def host_arch() -> str:
    from machined.images.format import ImageFormatError
    from machined.images.format import host_arch as arch

    try:
        return arch()
    except ImageFormatError:
        return platform.machine()


class ImageService:
    def __init__(self, state: State, storage: Storage, instances: Any) -> None:
        self.state = state
        self.storage = storage
        self.instances = instances  # InstanceService (spare copies after a download)
        self._fetch_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._refresh_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # Spare copies

    def spare_pools(self, fingerprint: str) -> list[str]:
        """Where launches from this image are expected: the pools holding instances made
        from it, else the default pool."""
        return db_instances.pools_from_image(self.state.db, fingerprint) or ["default"]

    def refill_spares(self) -> None:
        """At daemon start: a spare copy of every image instances were made from, in each
        pool they were made in (spares of a stopped daemon may have been taken or lost)."""
        for image in db_images.list_all(self.state.db):
            if image.last_used_at:
                for pool in self.spare_pools(image.fingerprint):
                    self.instances.refill_spare(image.fingerprint, pool)

    # Configuration

    def config_int(self, key: str) -> int:
        value = settings.get_all(self.state.db).get(key, SERVER_KEYS[key].default)
        try:
            return int(value)
        except ValueError:
            return int(SERVER_KEYS[key].default)

    def config_bool(self, key: str) -> bool:
        value = settings.get_all(self.state.db).get(key, SERVER_KEYS[key].default)
        return value.lower() in ("true", "1", "yes", "on")

    def _server(self, source: Source) -> RemoteServer:
        return open_server(source, self.state.paths, self.storage.default.temp_path,
                           proxies=Proxies.from_config(settings.get_all(self.state.db)),
                           host_arch=host_arch())

    # Fetching

    async def fetch(self, source: Source, *, op: Any = None, cached: bool = False,
                    auto_update: bool = False, public: bool = False,
                    aliases: Sequence[dict[str, str]] = ()) -> db_images.ImageRecord:
        """The image `source` names, downloaded and registered unless already local.
        `cached` marks an image fetched for a launch (expires when unused); `aliases`
        ({name, description}) are created on it (refused before any download if taken)."""
        taken = set(db_images.alias_names(self.state.db))
        for alias in aliases:
            if alias["name"] in taken:
                raise Conflict(f"Alias {alias['name']!r} already exists")
        for attempt in range(2):
            try:
                async with self._server(source) as server:
                    remote = await server.resolve(source.name)
                    return await self._fetch_resolved(server, source, remote, op=op,
                                                      cached=cached, auto_update=auto_update,
                                                      public=public, aliases=aliases)
            except FileGone as e:
                if attempt:
                    raise
                # The cached index names a file the server no longer has: it moved on.
                log.info("%s; refetching the index of %s", e.message, source.server)
                self._server(source).invalidate()
        raise AssertionError("unreachable")

    async def _fetch_resolved(self, server: RemoteServer, source: Source, remote: RemoteImage,
                              *, op: Any, cached: bool, auto_update: bool, public: bool,
                              aliases: Sequence[dict[str, str]],
                              last_used_at: str | None = None) -> db_images.ImageRecord:
        """Download and register `remote` unless it is local. `last_used_at` (default: now
        for a cached image) lets a refresh keep the replaced image's."""
        fp = remote.fingerprint
        by_alias = not source.by_fingerprint and remote.by_alias
        record_source = source.record(source.name if by_alias else "")
        now = clock.now_iso()
        async with self._fetch_locks[fp]:
            if db_images.exists(self.state.db, fp):
                return self._reuse(fp, record_source, cached=cached, auto_update=auto_update
                                   and by_alias, public=public, aliases=aliases)
            progress = None
            if op is not None:
                def progress(text: str) -> None:
                    op.set_metadata(download_progress=text)
            upload = await server.download(remote, progress)
            crash.point("image.download.received")

            def record(rec: db_images.ImageRecord) -> None:
                # In the image row's transaction: never an image without its flags,
                # source and aliases (a failure here leaves no image at all).
                if remote.expires_at:
                    rec.expires_at = remote.expires_at
                    db_images.update(self.state.db, rec)
                db_images.record_download(
                    self.state.db, fp, cached=cached, auto_update=auto_update and by_alias,
                    last_used_at=(last_used_at if last_used_at is not None
                                  else now if cached else ""),
                    last_update_check=now,
                    source=record_source)
                for alias in aliases:
                    db_images.create_alias(self.state.db, alias["name"], fp,
                                           alias.get("description", ""))

            await store.register(self.state, upload, public=public,
                                 extra_properties=remote.properties, then=record)
        log.info("Downloaded image %s from %s (%s)", fp[:12], source.server, source.name)
        return db_images.get(self.state.db, fp)

    def _reuse(self, fp: str, record_source: dict[str, str], *, cached: bool,
               auto_update: bool, public: bool,
               aliases: Sequence[dict[str, str]]) -> db_images.ImageRecord:
        """The fingerprint is already local: nothing to download."""
        rec = db_images.get(self.state.db, fp)
        with self.state.db.atomic():
            if not cached:  # an explicit copy: keep it (lxd#13271), with the asked flags
                db_images.set_flags(self.state.db, fp, cached=False,
                                    public=True if public else None,
                                    auto_update=True if auto_update else None)
            if record_source["alias"] and not (rec.source and rec.source.get("alias")):
                db_images.set_source(self.state.db, fp, record_source)
            for alias in aliases:
                db_images.create_alias(self.state.db, alias["name"], fp,
                                       alias.get("description", ""))
        return db_images.get(self.state.db, fp)

    async def image_for_create(self, source: Source, op: Any = None) -> db_images.ImageRecord:
        """The image a launch from a remote uses: a cached copy of the same server/protocol/
        alias/type while auto-update is on (it catches up later, LXD's PreferCached), a local
        image with that full fingerprint, or else a fresh download (cached)."""
        rec = None
        if source.by_fingerprint and len(source.name) == 64:
            rec = db_images.get(self.state.db, source.name) \
                if db_images.exists(self.state.db, source.name) else None
        elif self.config_int("images.auto_update_interval") > 0:
            # Only one downloaded under the same pinned certificate (or the same system
            # CA store): what came through a wrong pin must not serve a correct one.
            rec = db_images.find_cached(self.state.db, source.server, source.protocol,
                                        source.name, source.image_type,
                                        certificate=source.certificate)
        if rec is not None:
            # Marked used at once, under the image lock the expiry pass deletes under, so a
            # long-unused image picked now is not pruned before the copy is made.
            async with self.state.image_locks[rec.fingerprint]:
                if db_images.exists(self.state.db, rec.fingerprint):
                    rec.last_used_at = clock.now_iso()
                    db_images.update(self.state.db, rec)
                    return db_images.get(self.state.db, rec.fingerprint)
        return await self.fetch(source, op=op, cached=True,
                                auto_update=self.config_bool("images.auto_update_cached"))

    # Refresh (auto-update)

    async def refresh(self, fingerprint: str, op: Any = None, *,
                      explicit: bool = True) -> tuple[bool, str]:
        """Re-resolve the image's source alias; download and switch to a new fingerprint.
        Returns (refreshed, current fingerprint). An explicit refresh (`mc image refresh`)
        asks the server even when the cached index is under an hour old."""
        async with self._refresh_locks[fingerprint]:
            old = db_images.get(self.state.db, fingerprint)
            if not old.source or not old.source.get("alias"):
                raise BadRequest(f"Image {fingerprint[:12]} has no source alias to refresh "
                                 "from (it was imported, published or copied by fingerprint)")
            src = old.source
            source = Source(server=src["server"], protocol=src["protocol"], name=src["alias"],
                            certificate=src.get("certificate", ""),
                            image_type=src.get("image_type") or "container")
            now = clock.now_iso()
            for attempt in range(2):
                try:
                    async with self._server(source) as server:
                        server.refetch = explicit
                        remote = await server.resolve(source.name)
                        if remote.fingerprint == fingerprint:
                            db_images.set_update_check(self.state.db, fingerprint, now)
                            return False, fingerprint
                        new = await self._fetch_resolved(
                            server, source, remote, op=op, cached=old.cached,
                            auto_update=old.auto_update, public=old.public, aliases=(),
                            last_used_at=old.last_used_at)
                    break
                except FileGone as e:
                    if attempt:
                        raise
                    log.info("%s; refetching the index of %s", e.message, source.server)
                    self._server(source).invalidate()
            crash.point("image.refresh.downloaded")
            await self._replace(old, new, now)
        if old.last_used_at:
            for pool in self.spare_pools(old.fingerprint):
                self.instances.refill_spare(new.fingerprint, pool)
        log.info("Refreshed image %s -> %s (%s from %s)", fingerprint[:12],
                 new.fingerprint[:12], source.name, source.server)
        return True, new.fingerprint

    async def _replace(self, old: db_images.ImageRecord, new: db_images.ImageRecord,
                       now: str) -> None:
        """`new` takes over from `old`: flags, source, aliases; then `old` goes."""
        db = self.state.db
        async with self.state.image_locks[old.fingerprint]:
            old = db_images.get(db, old.fingerprint)  # flags may have changed meanwhile
            with db.atomic():
                # new.cached is already right: a fresh download took old's flag; an image
                # that was here before (say imported) keeps its own, so never becomes
                # expirable through a refresh.
                db_images.record_download(
                    db, new.fingerprint, cached=new.cached,
                    auto_update=old.auto_update or new.auto_update,
                    last_used_at=max(old.last_used_at, new.last_used_at),
                    last_update_check=now, source=old.source)
                db_images.set_flags(db, new.fingerprint, public=old.public or new.public)
                db_images.move_aliases(db, old.fingerprint, new.fingerprint)
                db_images.delete(db, old.fingerprint)
            crash.point("image.refresh.switched")
            await asyncio.to_thread(store.delete_files, self.state, old.fingerprint)

    async def update_pass(self) -> None:
        """Refresh every auto-updating image whose own last check is older than
        images.auto_update_interval hours; every check is recorded, failed or not."""
        interval = self.config_int("images.auto_update_interval")
        now = clock.now()
        for rec in db_images.list_auto_update(self.state.db):
            if not policy.update_due(rec.last_update_check, interval, now):
                continue
            try:
                refreshed, new = await self.refresh(rec.fingerprint, explicit=False)
            except NotFound as e:
                log.warning("Auto-update of image %s: %s", rec.fingerprint[:12], e.message)
                new = rec.fingerprint
            except Exception as e:
                message = getattr(e, "message", None) or str(e) or type(e).__name__
                log.warning("Auto-update of image %s failed: %s", rec.fingerprint[:12],
                            message)
                new = rec.fingerprint
            else:
                if not refreshed:
                    log.info("Image %s is up to date", rec.fingerprint[:12])
            try:
                db_images.set_update_check(self.state.db, new, clock.iso(now))
            except NotFound:
                pass  # deleted meanwhile

    # Expiry

    async def expiry_pass(self) -> list[str]:
        """Delete cached images unused for more than images.remote_cache_expiry days (never
        imported, copied or published ones). Returns the fingerprints deleted."""
        days = self.config_int("images.remote_cache_expiry")
        if days <= 0:
            return []
        deleted = []
        for rec in db_images.list_cached(self.state.db):
            async with self.state.image_locks[rec.fingerprint]:
                # Re-read under the lock: a launch may have just picked it.
                try:
                    current = db_images.get(self.state.db, rec.fingerprint)
                except NotFound:
                    continue
                if not current.cached or not policy.cache_expired(
                        current.last_used_at, current.uploaded_at, days, clock.now()):
                    continue
                db_images.delete(self.state.db, rec.fingerprint)
                await asyncio.to_thread(store.delete_files, self.state, rec.fingerprint)
            deleted.append(rec.fingerprint)
            log.info("Deleted cached image %s: unused for more than %d days",
                     rec.fingerprint[:12], days)
        return deleted
