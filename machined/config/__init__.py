"""Configuration keys and their validation (pure).

Errors are one line naming the key, the value and what is accepted. Validation looks at a whole
mapping before anything is stored, so a rejected change stores nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from machined.config.schema import (
    INSTANCE_KEYS,
    INSTANCE_NAMESPACES,
    SERVER_KEYS,
    ConfigKey,
)
from machined.config.validate import Validator, is_utf8
from machined.errors import BadRequest

__all__ = ["INSTANCE_KEYS", "SERVER_KEYS", "ConfigKey", "validate_instance_config",
           "validate_server_config"]

FREE_NAMESPACES = ", ".join(ns + "*" for ns in INSTANCE_NAMESPACES)


def _check(key: str, value: str, validator: Validator, what: str) -> None:
    try:
        validator(value)
    except ValueError as e:
        raise BadRequest(f"Invalid value {value!r} for {what} key {key!r}: expected {e}"
                         ) from None


def _did_you_mean(key: str, known: Mapping[str, ConfigKey]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_key_text(key: str, what: str) -> None:
    if not key or any(c in key for c in "\n\r\0") or not is_utf8(key):
        raise BadRequest(f"Invalid {what} configuration key {key!r}: keys are non-empty UTF-8 "
                         "text without newlines or NUL")


def _check_value_type(key: str, value: object, what: str) -> None:
    if not isinstance(value, str):
        raise BadRequest(f"Invalid value {value!r} for {what} key {key!r}: values must be "
                         "strings")
    if not is_utf8(value):
        raise BadRequest(f"Invalid value {value!r} for {what} key {key!r}: values must be "
                         "UTF-8 text")


def _check_environment_name(key: str) -> None:
    name = key[len("environment."):]
    if "=" in name or any(c in name for c in "\n\r\0"):
        raise BadRequest(f"Invalid environment variable name {name!r} in key {key!r}: "
                         "names may not contain '=', newlines or NUL")


def validate_instance_config(config: Mapping[str, object], *,
                             allow_volatile: bool = False) -> None:
    """Raise BadRequest for the first bad key or value. An empty value means "unset" and
    is accepted for every key a user may set."""
    for key, value in config.items():
        _check_key_text(str(key), "instance")
        _check_value_type(key, value, "instance")
        if key.startswith("volatile."):
            if allow_volatile:
                continue
            raise BadRequest(f"Key {key!r} is read-only: volatile.* keys are set by machined")
        row = INSTANCE_KEYS.get(key)
        if row is not None:
            if value:
                _check(key, value, row.validator, "instance")
            continue
        namespace = next((ns for ns in INSTANCE_NAMESPACES if key.startswith(ns)), None)
        if namespace is None or key == namespace:
            raise BadRequest(
                f"Unknown instance configuration key {key!r}{_did_you_mean(key, INSTANCE_KEYS)}:"
                f" accepted are the keys listed in docs/config.md and {FREE_NAMESPACES}")
        if namespace == "environment.":
            _check_environment_name(key)
        _check(key, value, INSTANCE_NAMESPACES[namespace][0], "instance")


def validate_server_config(config: Mapping[str, object]) -> None:
    for key, value in config.items():
        _check_key_text(str(key), "server")
        row = SERVER_KEYS.get(key)
        if row is None:
            raise BadRequest(f"Unknown server configuration key {key!r}"
                             f"{_did_you_mean(key, SERVER_KEYS)}: accepted are "
                             + ", ".join(sorted(SERVER_KEYS)))
        _check_value_type(key, value, "server")
        if value:
            _check(key, value, row.validator, "server")

