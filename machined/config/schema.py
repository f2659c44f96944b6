"""The tables of configuration keys: one row per key with its type, default, validator, whether
a running instance takes a change at once (live) and a line of documentation. docs/config.md is
generated from these tables (python -m machined.config.docs)."""

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
    later: str = ""  # set when the key is stored and validated but acted on by later work


def _table(*rows: ConfigKey) -> dict[str, ConfigKey]:
    return {row.name: row for row in rows}


K = ConfigKey
_IDMAP = "every container gets the default id map"

INSTANCE_KEYS: dict[str, ConfigKey] = _table(
    K("boot.autostart", "bool", "", v.any_of(v.is_bool, v.one_of("last-state")), True,
      "Start the instance when the daemon starts. Unset or last-state: only if it was "
      "running as last recorded (by its last start or stop, and by `machined shutdown` at "
      "host power-off); false: never. Not with security.protection.start=true."),
    K("boot.autostart.delay", "integer", "0", v.is_uint, True,
      "Seconds to wait after this instance autostarted before starting the next one."),
    K("boot.autostart.priority", "integer", "0", v.is_int, True,
      "Autostart order: higher starts first (then by name, one at a time). Instances with "
      "neither a priority nor a delay start first, in parallel."),
    K("boot.host_shutdown_timeout", "integer", "30", v.is_uint, True,
      "Seconds to wait for a clean shutdown at host shutdown (`machined shutdown`, SIGPWR) "
      "before killing the instance; a plain daemon stop leaves instances running."),
    K("boot.stop.priority", "integer", "0", v.is_int, True,
      "Shutdown order at host shutdown: higher stops first; equal priorities stop together, "
      "and the next batch waits for them."),
    K("limits.cpu", "string", "", v.is_cpu_limit, True,
      "CPUs the instance may run on: a count (2: the first 2 CPUs available to machined) or a "
      "CPU set (0-1,3). Pinned with the cpuset controller; `nproc` inside shows it."),
    K("limits.cpu.allowance", "string", "", v.is_cpu_allowance, True,
      "Hard CPU time limit (CFS quota). 50% = half of the CPUs allowed by limits.cpu (of all "
      "CPUs when unset) per 100ms period; 25ms/100ms = that quota per that period."),
    K("limits.cpu.priority", "integer", "10", v.is_priority, True,
      "CPU weight under contention, 0-10: cpu.shares = 1024 x priority / 10 (v1), cpu.weight "
      "= 10 x priority (v2); 10 is the kernel default."),
    K("limits.disk.priority", "integer", "5", v.is_priority, True,
      "Block I/O weight under contention, 0-10: the weight file's default x priority / 5 "
      "(5 is the kernel default). Needs a scheduler with weights (bfq): skipped with a "
      "warning otherwise."),
    K("limits.memory", "string", "", v.is_memory_limit, True,
      "Memory limit: a size (512MiB) or a percentage of host memory (50%). A process "
      "allocating past a hard limit is OOM-killed inside the instance."),
    K("limits.memory.enforce", "string", "hard", v.one_of("hard", "soft"), True,
      "hard: limits.memory is a hard cap (memory.limit_in_bytes / memory.max); soft: memory "
      "is reclaimed above it under pressure (memory.soft_limit_in_bytes / memory.high)."),
    K("limits.memory.swap", "string", "true", v.any_of(v.is_bool, v.is_size), True,
      "Whether the instance may swap (true/false), or how much swap it may use (a size). "
      "Enforced with a hard limits.memory on cgroup v1 (memsw), always on v2 (memory.swap.max)."
      ),
    K("limits.processes", "integer", "", v.is_positive, True,
      "Maximum number of processes (pids.max)."),
    K("security.idmap.base", "integer", "", v.is_uint32, False,
      "First host id of the instance's id map.", _IDMAP),
    K("security.idmap.isolated", "bool", "false", v.is_bool, False,
      "Give the instance an id map of its own.", _IDMAP),
    K("security.idmap.size", "integer", "", v.is_uint32, False,
      "Number of ids in the instance's id map.", _IDMAP),
    K("security.nesting", "bool", "false", v.is_bool, False,
      "Allow running containers inside the instance.", "nesting is not implemented"),
    K("security.privileged", "bool", "false", v.is_bool, False,
      "Run without a user namespace (container root is host root)."),
    K("security.protection.delete", "bool", "false", v.is_bool, True,
      "Refuse to delete the instance."),
    K("security.protection.start", "bool", "false", v.is_bool, True,
      "Refuse to start the instance.", "start does not check it"),
    K("snapshots.expiry", "string", "", v.is_expiry, True,
      "Lifetime of new snapshots, e.g. 1M 2H 3d 4w 5m 6y (minutes, hours, days, weeks, "
      "months, years; S for seconds); written into each snapshot when it is taken "
      "(mc snapshot --expiry/--no-expiry override it), so a later change leaves existing "
      "snapshots alone."),
    K("snapshots.pattern", "string", "snap%d", v.is_snapshot_pattern, True,
      "Name of snapshots taken without one. %d (at most once) becomes one more than the "
      "highest number in use (0 at first); {{ creation_date|date:\"2006-01-02_15-04\" }} "
      "becomes the time (UTC) in a Go layout. A name already taken gets -0, -1... appended."),
    K("snapshots.schedule", "string", "", v.is_schedule, True,
      "When to take snapshots (UTC): cron (0 6 * * *) or @hourly, @daily, @midnight, "
      "@weekly, @monthly, @annually, @yearly, @startup (when the daemon starts), @never; "
      "several separated by ', '. A daemon that was down takes one snapshot for the missed "
      "times, not one per missed time."),
    K("snapshots.schedule.stopped", "bool", "false", v.is_bool, True,
      "Also take scheduled snapshots of the instance while it is stopped."),
)

# Namespaces whose keys are free-form; the value is validated, and the part after the prefix
# must be non-empty (environment names are checked further in __init__).
INSTANCE_NAMESPACES: dict[str, tuple[v.Validator, str]] = {
    "environment.": (v.single_line,
                     "Environment variable for the instance's init and exec sessions; the "
                     "name may not contain '=', and neither may contain newlines or NUL."),
    "image.": (v.is_any, "Properties of the image the instance was created from (copied at "
               "create; free-form)."),
    "user.": (v.is_any, "Free-form user metadata."),
}

VOLATILE_DOC = ("Set by machined (e.g. volatile.base_image, volatile.uuid, "
                "volatile.last_state.power); read-only to users.")

SERVER_KEYS: dict[str, ConfigKey] = _table(
    K("backups.compression_algorithm", "string", "gzip",
      v.one_of("bzip2", "gzip", "lz4", "lzma", "xz", "zstd", "none"), True,
      "Compression of instance backups.", "backups are not implemented"),
    K("core.https_address", "string", "", v.is_listen_address, True,
      "Address to serve the API on over HTTPS (:8443, [::]:8443; default port 8443), with "
      "TLS client certificates (mc config trust); empty: unix socket only. A change rebinds "
      "at once."),
    K("core.proxy_http", "string", "", v.single_line, True,
      "HTTP proxy for image downloads (http:// image servers)."),
    K("core.proxy_https", "string", "", v.single_line, True,
      "HTTPS proxy for image downloads (https:// image servers)."),
    K("core.proxy_ignore_hosts", "string", "", v.single_line, True,
      "Hosts that bypass the proxy (comma-separated; .example.org matches its "
      "subdomains)."),
    K("core.remote_token_expiry", "string", "1d", v.is_expiry, True,
      "How long a trust token (mc config trust add) stays valid, e.g. 15M, 1H, 1d (LXD's "
      "default is no expiry)."),
    K("core.shutdown_timeout", "integer", "5", v.is_uint, True,
      "Minutes to wait for running operations when the daemon shuts down.",
      "the daemon does not wait for operations"),
    K("images.auto_update_cached", "bool", "true", v.is_bool, True,
      "Whether images cached by an instance creation from a remote get auto_update (are "
      "kept up to date; applies to images cached after the change)."),
    K("images.auto_update_interval", "integer", "6", v.is_int, True,
      "Hours between checks for a newer version of each auto-updating image (0 disables). "
      "An image is checked when its own last check is older than this: at daemon start, "
      "then hourly."),
    K("images.compression_algorithm", "string", "gzip",
      v.one_of("bzip2", "gzip", "lz4", "lzma", "xz", "zstd", "none"), True,
      "Compression of images made by mc publish (unless --compression is given)."),
    K("images.default_architecture", "string", "", v.single_line, True,
      "Architecture to prefer for images available in several.",
      "remote images are not implemented"),
    K("images.remote_cache_expiry", "integer", "10", v.is_int, True,
      "Days after which a cached image (one downloaded for an instance creation) that no "
      "creation used since is deleted (0 or less disables); checked at daemon start, "
      "then daily. Imported, copied and published images never expire."),
)
