import pytest

from machined.config import validate_instance_config, validate_server_config
from machined.config.validate import parse_size
from machined.errors import BadRequest


@pytest.mark.parametrize("key,value", [
    ("limits.memory", "512MiB"), ("limits.memory", "50%"), ("limits.cpu", "2"),
    ("limits.cpu", "0-3,7"), ("limits.processes", "200"), ("security.privileged", "YES"),
    ("boot.autostart", "last-state"), ("environment.APP_ENV", "prod"), ("user.owner", "alice"),
    ("image.os", "debian"),
])
def test_accepts_valid_instance_keys(key, value):
    validate_instance_config({key: value})


@pytest.mark.parametrize("key,value,fragment", [
    ("limits.memory", "lots", "a size like 512MiB"),
    ("limits.memory", "0", "non-zero"),
    ("limits.cpu", "0", "at least 1"),
    ("security.privileged", "maybe", "a boolean"),
    ("environment.X", "a\nb", "single line"),
    ("limits.processes", "-1", "non-negative"),
])
def test_rejects_bad_values_naming_key_value_and_what_is_accepted(key, value, fragment):
    with pytest.raises(BadRequest) as e:
        validate_instance_config({key: value})
    assert key in e.value.message and repr(value) in e.value.message
    assert fragment in e.value.message


def test_rejects_unknown_and_volatile_keys():
    with pytest.raises(BadRequest, match="Unknown instance configuration key 'limits.ram'"):
        validate_instance_config({"limits.ram": "1"})
    with pytest.raises(BadRequest, match="read-only"):
        validate_instance_config({"volatile.base_image": "x"})
    with pytest.raises(BadRequest, match="Unknown"):
        validate_instance_config({"user.": "x"})
    validate_instance_config({"volatile.base_image": "x"}, allow_volatile=True)


def test_server_keys():
    validate_server_config({"images.auto_update_interval": "24"})
    with pytest.raises(BadRequest, match="images.auto_update_interval"):
        validate_server_config({"images.auto_update_interval": "daily"})
    with pytest.raises(BadRequest, match="Unknown server configuration key"):
        validate_server_config({"core.nope": "1"})


@pytest.mark.parametrize("text,size", [("512MiB", 512 * 2**20), ("1GB", 10**9), ("100", 100),
                                       ("1.5KiB", 1536), ("2kB", 2000)])
def test_parse_size(text, size):
    assert parse_size(text) == size
