"""Container runtime: the only code making namespace, mount and cgroup syscalls.

See docs/ARCHITECTURE.md "Runtime contract". The daemon uses only what is re-exported here.
"""

from machined.runtime.cgroups import GONE as CGROUP_GONE
from machined.runtime.container import (
    RunningContainer,
    RuntimeFailure,
    Usage,
    apply_limits,
    find,
    freeze,
    is_frozen,
    start,
    stop,
    thaw,
    usage,
)
from machined.runtime.execproc import ExecProcess, exec
from machined.runtime.netns import NamespaceGone, netns_socket
from machined.runtime.spec import LaunchSpec, build_spec, default_idmap, stop_signal_for

__all__ = [
    "CGROUP_GONE", "ExecProcess", "LaunchSpec", "NamespaceGone", "RunningContainer",
    "RuntimeFailure", "Usage", "apply_limits", "build_spec", "default_idmap", "exec", "find",
    "freeze", "is_frozen", "netns_socket", "start", "stop", "stop_signal_for", "thaw", "usage",
]
