"""Configuration keys and their validation (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from machined.config.schema import INSTANCE_KEYS, INSTANCE_NAMESPACES, SERVER_KEYS, ConfigKey
from machined.errors import BadRequest

__all__ = ["INSTANCE_KEYS", "SERVER_KEYS", "ConfigKey", "validate_instance_config",
           "validate_server_config"]


def _check(key: str, value: str, validator: object, what: str) -> None:
    try:
        validator(value)  # type: ignore[operator]
    except ValueError as e:
        raise BadRequest(f"Invalid value {value!r} for {what} key {key!r}: expected {e}") from None


def validate_instance_config(config: Mapping[str, str], *, allow_volatile: bool = False) -> None:
    """Raise BadRequest naming the first bad key or value; accept nothing partially."""
    for key, value in config.items():
        if not isinstance(value, str):
            raise BadRequest(f"Invalid value for instance key {key!r}: values must be strings")
        if key.startswith("volatile."):
            if allow_volatile:
                continue
            raise BadRequest(f"Key {key!r} is read-only: volatile.* keys are set by machined")
        if key in INSTANCE_KEYS:
            _check(key, value, INSTANCE_KEYS[key].validator, "instance")
            continue
        namespace = next((ns for ns in INSTANCE_NAMESPACES if key.startswith(ns)), None)
        if namespace is None or key == namespace:
            raise BadRequest(
                f"Unknown instance configuration key {key!r}: accepted are the documented keys "
                "(see docs/config.md) and user.*, environment.*, image.*")
        _check(key, value, INSTANCE_NAMESPACES[namespace], "instance")


def validate_server_config(config: Mapping[str, str]) -> None:
    for key, value in config.items():
        if key not in SERVER_KEYS:
            raise BadRequest(f"Unknown server configuration key {key!r}: accepted are "
                             + ", ".join(sorted(SERVER_KEYS)))
        _check(key, str(value), SERVER_KEYS[key].validator, "server")
