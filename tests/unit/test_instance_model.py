import pytest

from machined.errors import BadRequest
from machined.instances import model


@pytest.mark.parametrize("name", ["c01", "web", "a", "My-box-2", "a" * 63])
def test_valid_names(name):
    model.check_name(name)


@pytest.mark.parametrize("name", ["", "1abc", "-a", "a-", "a_b", "a.b", "a/b", "a" * 64, "é"])
def test_invalid_names(name):
    with pytest.raises(BadRequest, match="Invalid instance name"):
        model.check_name(name)


def test_expand_profiles_in_order_then_instance_wins():
    profiles = [({"limits.cpu": "1", "user.a": "p1"}, {"root": {"type": "disk", "path": "/"}}),
                ({"user.a": "p2"}, {})]
    config, devices = model.expand(profiles, {"limits.cpu": "2"}, {})
    assert config == {"limits.cpu": "2", "user.a": "p2"}
    assert devices == {"root": {"type": "disk", "path": "/"}}


def test_exec_environment_priority_as_lxd():
    env = model.exec_environment({"A": "req"}, {"environment.A": "cfg", "environment.B": "b"}, 0)
    assert env["A"] == "req" and env["B"] == "b"
    assert env["PATH"] == model.DEFAULT_PATH and env["LANG"] == "C.UTF-8"
    assert env["HOME"] == "/root" and env["USER"] == "root"
    non_root = model.exec_environment({}, {}, 1000)
    assert "HOME" not in non_root and "USER" not in non_root


def test_resolve_in_rootfs_follows_links_inside_only():
    links = {"/sbin": "usr/sbin", "/usr/sbin/init": "../lib/systemd/systemd",
             "/evil": "/../../../etc", "/loop": "/loop"}
    resolve = lambda p: model.resolve_in_rootfs(links.get, p)  # noqa: E731
    assert resolve("/sbin/init") == "/usr/lib/systemd/systemd"
    assert resolve("/evil/passwd") == "/etc/passwd"  # '..' stops at the container's root
    assert resolve("/loop") is None


def test_runtime_limits():  # all the keys: test_config_limits.py
    limits = model.runtime_limits({"limits.memory": "512MiB", "limits.cpu": "2",
                                   "limits.processes": "200"}, 2**30)
    assert limits == {"memory": str(512 * 2**20), "cpu_count": "2", "processes": "200"}
    assert model.runtime_limits({"limits.memory": "50%"}, 2**30) == {"memory": str(2**29)}


def test_root_pool_is_the_root_disks_pool_or_default():
    from machined.instances.model import root_pool

    assert root_pool({}) == "default"
    assert root_pool({"root": {"type": "disk", "path": "/"}}) == "default"
    assert root_pool({"data": {"type": "disk", "path": "/mnt", "source": "/srv"},
                      "r": {"type": "disk", "path": "/", "pool": "fast"}}) == "fast"
    assert root_pool({"data": {"type": "disk", "path": "/mnt", "pool": "x", "source": "/s"}}) \
        == "default"


def test_root_pool_change_names_the_move_command():
    from machined.instances.model import root_pool_change

    devices = {"root": {"type": "disk", "path": "/", "pool": "fast"}}
    assert root_pool_change("c01", "fast", devices) is None
    assert root_pool_change("c01", "default", devices) == (
        "Instance 'c01' is on pool 'default'; move it with: mc move c01 --storage fast")
    assert root_pool_change("c01", "fast", {}) == (
        "Instance 'c01' is on pool 'fast'; move it with: mc move c01 --storage default")
