"""The dependency rules of docs/ARCHITECTURE.md, read from the source (AST), not trusted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.If) and top_level_only:
            continue  # `if TYPE_CHECKING:` blocks are annotations only
    return found


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("machined/api"), ids=lambda p: p.name)
def test_api_does_not_reach_the_runtime(path):
    assert not {m for m in imports(path, top_level_only=True)
                if m.startswith("machined.runtime")}


@pytest.mark.parametrize("path", sources("cli"), ids=lambda p: p.name)
def test_cli_speaks_only_http(path):
    """mc talks to the daemon through the API; `mc image build` borrows the builder, and
    browsing or writing a simplestreams tree shares the pure stream module with the daemon."""
    used = {m for m in imports(path) if m.startswith("machined")}
    shared = {"machined.images.build", "machined.images.simplestreams"}
    assert {m for m in used if not any(m == s or m.startswith(s + ".") for s in shared)} \
        == set(), used


def test_only_runtime_makes_syscalls_through_ctypes():
    users = [p.relative_to(REPO).as_posix() for p in sources("machined") + sources("cli")
             if "ctypes" in imports(p)]
    assert users == ["machined/runtime/linux.py"]


@pytest.mark.parametrize("module", ["errors.py", "paths.py", "config/validate.py",
                                    "config/schema.py", "instances/model.py",
                                    "runtime/spec.py", "images/format.py",
                                    "files/model.py", "images/simplestreams.py",
                                    "images/policy.py", "network/model.py",
                                    "network/proxy_model.py"])
def test_leaf_modules_use_no_framework(module):
    used = imports(REPO / "machined" / module)
    assert not {m for m in used if m.split(".")[0] in {"aiohttp", "sqlite_utils", "click"}}


@pytest.mark.parametrize("path", sources("machined/files"), ids=lambda p: p.name)
def test_files_reach_the_rootfs_only_through_rootfs_py(path):
    """Paths in a container resolve in one place (runtime/rootfs.py, openat2 RESOLVE_IN_ROOT)."""
    used = {m for m in imports(path) if m.startswith("machined.runtime")}
    assert used <= {"machined.runtime", "machined.runtime.rootfs"}, used


def test_only_network_speaks_netlink_through_pyroute2():
    """Host interfaces are made in one package; the API and the CLI never touch them."""
    users = [p.relative_to(REPO).as_posix() for p in sources("machined") + sources("cli")
             if any(m.split(".")[0] == "pyroute2" for m in imports(p))]
    assert users and all(u.startswith("machined/network/") for u in users), users


@pytest.mark.parametrize("module", ["network/model.py", "network/proxy_model.py"])
def test_pure_network_modules_do_no_io(module):
    used = imports(REPO / "machined" / module)
    assert not {m for m in used if m.split(".")[0] in {"pyroute2", "subprocess", "os",
                                                       "asyncio", "machined"}
                and not m.startswith(("machined.errors", "machined.config"))}, used
