"""Profiles: create, update (applied to every instance using the profile), rename, delete.

Every change is validated in full before anything is stored: the profile's own config and
devices, then the expanded devices of each instance that uses it. A change that a running
instance cannot take live is undone everywhere.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from machined.config import devices as devmod
from machined.config import validate_instance_config
from machined.db import instances as db_instances
from machined.db import profiles as db_profiles
from machined.errors import BadRequest, Conflict, Forbidden, MachinedError, NotFound
from machined.instances import model
from machined.instances.service import InstanceService
from machined.state import State

log = logging.getLogger("machined.profiles")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
DEFAULT = "default"
# Profile changes share the per-name lock table with instances; '/' is never in an instance
# name, so these keys cannot collide with one.
_LOCK = "profile/"


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"Invalid profile name {name!r}: use 1 to 63 letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit")
    return name


def _config(raw: Any) -> dict[str, str]:
    """The validated config of a request; "" values stay in it (they mean "unset")."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("Profile config must be an object of key -> value")
    config = {str(k): v for k, v in raw.items()}
    validate_instance_config(config)
    return config


def _set(config: dict[str, str]) -> dict[str, str]:
    """Without the unset ("") keys: an empty value is never stored."""
    return {k: v for k, v in config.items() if v != ""}


def _devices(raw: Any) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    devmod.validate_devices(raw)
    return {str(n): dict(d) for n, d in raw.items()}


def render(db: Any, rec: db_profiles.ProfileRecord) -> dict[str, Any]:
    return {"name": rec.name, "description": rec.description, "config": rec.config,
            "devices": rec.devices, "project": "default",
            "used_by": [f"/1.0/instances/{n}" for n in db_profiles.used_by(db, rec.name)]}


class ProfileService:
    def __init__(self, state: State, instances: InstanceService) -> None:
        self.state = state
        self.instances = instances

    def create(self, body: dict[str, Any]) -> str:
        name = check_name(body.get("name"))
        rec = db_profiles.ProfileRecord(
            name=name, description=str(body.get("description") or ""),
            config=_set(_config(body.get("config"))), devices=_devices(body.get("devices")))
        self.instances.check_device_pools(rec.devices)
        self.instances.check_nics(None, rec.devices)
        db_profiles.create(self.state.db, rec)
        log.info("Created profile %s", name)
        return name

    async def update(self, name: str, body: dict[str, Any], patch: bool) -> None:
        async with self.state.instance_locks[_LOCK + name]:
            old = db_profiles.get(self.state.db, name)
            new = db_profiles.ProfileRecord(name, old.description, dict(old.config),
                                            dict(old.devices))
            if patch:
                new.config = _set({**new.config, **_config(body.get("config"))})
                new.devices.update(_devices(body.get("devices")))
                if "description" in body:
                    new.description = str(body["description"] or "")
            else:
                new.config = _set(_config(body.get("config")))
                new.devices = _devices(body.get("devices"))
                new.description = str(body.get("description") or "")
            self.instances.check_device_pools(new.devices)
            self.instances.check_nics(None, new.devices)
            users = db_profiles.used_by(self.state.db, name)
            # Validate every user's result and store without awaiting in between, so no
            # instance change can slip in between the check and the write.
            for user in users:
                self._check_instance(user, new)
            db_profiles.update(self.state.db, new)
            applied: list[str] = []
            failed = ""
            try:
                for user in users:
                    failed = user
                    try:
                        await self.instances.apply_config(user)
                    except NotFound:
                        # Deleted, or renamed (only a stopped one can be), while this waited
                        # for its lock: nothing runs that needs the change.
                        continue
                    applied.append(user)
            except MachinedError as e:
                db_profiles.update(self.state.db, old)
                for user in applied:
                    await self._reapply(user)
                refusal = Conflict if isinstance(e, Conflict) else BadRequest  # busy: 409
                raise refusal(f"Profile {name!r} not changed: instance {failed!r} could not "
                              f"take the change: {e.message}") from e
        log.info("Updated profile %s (used by %d instance(s))", name, len(users))

    def _check_instance(self, name: str, profile: db_profiles.ProfileRecord) -> None:
        rec = db_instances.get(self.state.db, name)
        layers = []
        for p in rec.profiles:
            prof = profile if p == profile.name else db_profiles.get(self.state.db, p)
            layers.append((prof.config, prof.devices))
        _config, devices = model.expand(layers, rec.config, rec.devices)
        try:
            devmod.validate_expanded(devices)
            self.instances.check_nics(name, devices)
        except BadRequest as e:
            raise BadRequest(f"Profile {profile.name!r} not changed: for instance {name!r}: "
                             f"{e.message}") from None
        # The root volume stays where it is: moving it is a copy (mc move --storage).
        refusal = model.root_pool_change(name, rec.storage_pool, devices)
        if refusal is not None:
            raise BadRequest(f"Profile {profile.name!r} not changed: {refusal}")

    async def _reapply(self, name: str) -> None:
        try:
            await self.instances.apply_config(name)
        except MachinedError as e:  # the original error is the one to report
            log.warning("Could not re-apply the previous profile to %s: %s", name, e.message)

    async def rename(self, name: str, new: str) -> None:
        check_name(new)
        if name == DEFAULT:
            raise Forbidden("The 'default' profile cannot be renamed")
        async with self.state.instance_locks[_LOCK + name]:
            db_profiles.rename(self.state.db, name, new)
        log.info("Renamed profile %s to %s", name, new)

    async def delete(self, name: str) -> None:
        if name == DEFAULT:
            raise Forbidden("The 'default' profile cannot be deleted")
        async with self.state.instance_locks[_LOCK + name]:
            db_profiles.get(self.state.db, name)
            users = db_profiles.used_by(self.state.db, name)
            if users:
                raise Conflict(f"Profile {name!r} is in use by instance(s) {', '.join(users)}: "
                               "remove it from them first (mc profile remove <instance> "
                               f"{name})")
            db_profiles.delete(self.state.db, name)
        log.info("Deleted profile %s", name)
