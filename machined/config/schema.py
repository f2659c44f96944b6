"""The tables of configuration keys. One row per key: type, default, validator, whether a
running instance takes a change live, and a line of documentation."""

from __future__ import annotations

from dataclasses import dataclass

from machined.config import validate as v


@dataclass(frozen=True)
class ConfigKey:
    name: str
    type: str
    default: str
    validator: v.Validator
    live_update: bool
    doc: str


def _key(name: str, type_: str, default: str, validator: v.Validator, live: bool,
         doc: str) -> tuple[str, ConfigKey]:
    return name, ConfigKey(name, type_, default, validator, live, doc)


INSTANCE_KEYS: dict[str, ConfigKey] = dict([
    _key("boot.autostart", "bool", "", v.any_of(v.is_bool, v.one_of("last-state")), True,
         "Start the instance when the daemon starts (unset: only if it was running)."),
    _key("boot.autostart.delay", "integer", "0", v.is_int, True,
         "Seconds to wait after this instance started before starting the next one."),
    _key("boot.autostart.priority", "integer", "0", v.is_int, True,
         "Autostart order: higher starts first."),
    _key("boot.stop.priority", "integer", "0", v.is_int, True,
         "Shutdown order: higher stops first."),
    _key("boot.host_shutdown_timeout", "integer", "30", v.is_int, True,
         "Seconds to wait for a clean shutdown before killing the instance."),
    _key("limits.cpu", "string", "", v.is_cpu_limit, True,
         "Number of CPUs (2) or a CPU set (0-3,7)."),
    _key("limits.memory", "string", "", v.is_memory_limit, True,
         "Memory limit: a size (512MiB) or a percentage of host memory (50%)."),
    _key("limits.processes", "integer", "", v.is_uint, True,
         "Maximum number of processes in the instance."),
    _key("security.privileged", "bool", "false", v.is_bool, False,
         "Run without a user namespace (container root is host root)."),
    _key("security.nesting", "bool", "false", v.is_bool, False,
         "Allow running containers inside the instance."),
    _key("security.protection.delete", "bool", "false", v.is_bool, True,
         "Refuse to delete the instance."),
    _key("security.idmap.base", "integer", "", v.is_uint, False,
         "First host id of the instance's id map."),
    _key("security.idmap.size", "integer", "", v.is_uint, False,
         "Number of ids in the instance's id map."),
])

# Namespaces whose keys are free-form; validated by value only.
INSTANCE_NAMESPACES: dict[str, v.Validator] = {
    "user.": v.is_any,
    "environment.": v.no_newline,
    "image.": v.is_any,
}

SERVER_KEYS: dict[str, ConfigKey] = dict([
    _key("images.auto_update_interval", "integer", "6", v.is_int, True,
         "Hours between checks for newer versions of cached images (0 disables)."),
    _key("images.auto_update_cached", "bool", "true", v.is_bool, True,
         "Keep images cached by instance creation up to date automatically."),
    _key("images.remote_cache_expiry", "integer", "10", v.is_int, True,
         "Days after which an unused cached image is removed (0 disables)."),
    _key("images.compression_algorithm", "string", "gzip",
         v.one_of("bzip2", "gzip", "lz4", "lzma", "xz", "zstd", "none"), True,
         "Compression used when publishing images."),
    _key("core.shutdown_timeout", "integer", "5", v.is_int, True,
         "Minutes to wait for operations at daemon shutdown."),
])
