"""Key tables and validators: what is accepted, and the exact one-line refusals."""

import pytest

from machined.config import (
    INSTANCE_KEYS,
    SERVER_KEYS,
    validate_instance_config,
    validate_server_config,
)
from machined.config import validate as v
from machined.errors import BadRequest

REQUIRED_INSTANCE = (
    "boot.autostart boot.autostart.delay boot.autostart.priority boot.stop.priority "
    "boot.host_shutdown_timeout limits.cpu limits.cpu.allowance limits.cpu.priority "
    "limits.memory limits.memory.enforce limits.memory.swap limits.processes "
    "limits.disk.priority security.privileged security.nesting security.idmap.isolated "
    "security.idmap.base security.idmap.size security.protection.delete snapshots.schedule "
    "snapshots.expiry snapshots.pattern").split()
REQUIRED_SERVER = (
    "core.https_address images.auto_update_interval images.auto_update_cached "
    "images.remote_cache_expiry images.compression_algorithm core.shutdown_timeout").split()


def test_tables_have_the_required_keys_and_complete_rows():
    assert set(REQUIRED_INSTANCE) <= set(INSTANCE_KEYS)
    assert set(REQUIRED_SERVER) <= set(SERVER_KEYS)
    for table in (INSTANCE_KEYS, SERVER_KEYS):
        for name, row in table.items():
            assert row.name == name and row.type and row.doc and row.validator.accepts
            if row.default:  # the documented default passes its own validator
                row.validator(row.default)


@pytest.mark.parametrize("key,value", [
    ("limits.memory", "512MiB"), ("limits.memory", "50%"), ("limits.memory", "1GB"),
    ("limits.cpu", "2"), ("limits.cpu", "0-3,7"), ("limits.cpu", "1-1"),
    ("limits.cpu.allowance", "50%"), ("limits.cpu.allowance", "25ms/100ms"),
    ("limits.cpu.allowance", "1s/1s"), ("limits.cpu.allowance", "1000us/100ms"),
    ("limits.cpu.priority", "0"), ("limits.cpu.priority", "10"),
    ("limits.disk.priority", "5"), ("limits.memory.enforce", "soft"),
    ("limits.memory.swap", "false"), ("limits.memory.swap", "256MiB"),
    ("limits.processes", "200"), ("security.privileged", "YES"), ("security.nesting", "off"),
    ("boot.autostart", "last-state"), ("boot.autostart", "true"),
    ("boot.autostart.priority", "-3"), ("boot.autostart.delay", "10"),
    ("security.idmap.base", "1000000"), ("security.idmap.size", "65536"),
    ("snapshots.schedule", "0 6 * * *"), ("snapshots.schedule", "@daily"),
    ("snapshots.schedule", "*/15 0-6,22-23 * jan-mar mon-fri, @startup"),
    ("snapshots.expiry", "1M 2H 3d 4w 5m 6y"), ("snapshots.expiry", "30S"),
    ("snapshots.pattern", "snap-{{ creation_date|date:'2006-01-02' }}-%d"),
    ("environment.APP_ENV", "prod"), ("environment.EMPTY", ""), ("user.owner", "alice"),
    ("user.user-data", "#cloud-config\npackages: [vim]\n"), ("image.os", "debian"),
    ("limits.memory", ""),  # empty = unset, for every key
])
def test_accepts_valid_instance_keys(key, value):
    validate_instance_config({key: value})


# (key, value, the exact message). One line each, naming key, value and what is accepted.
REFUSALS = [
    ("limits.memory", "lots",
     "Invalid value 'lots' for instance key 'limits.memory': expected a non-zero size like "
     "512MiB or 2GiB, or a percentage of host memory from 0% (excluded) to 100%"),
    ("limits.memory", "0%",
     "Invalid value '0%' for instance key 'limits.memory': expected a non-zero size like "
     "512MiB or 2GiB, or a percentage of host memory from 0% (excluded) to 100%"),
    ("limits.cpu", "0",
     "Invalid value '0' for instance key 'limits.cpu': expected a CPU count like 2, or a CPU "
     "set like 0-3,7 (ranges going upwards)"),
    ("limits.cpu", "3-1",
     "Invalid value '3-1' for instance key 'limits.cpu': expected a CPU count like 2, or a "
     "CPU set like 0-3,7 (ranges going upwards)"),
    ("limits.cpu.allowance", "150%",
     "Invalid value '150%' for instance key 'limits.cpu.allowance': expected a percentage "
     "from 1% to 100%, or a CFS quota/period like 25ms/100ms"),
    ("limits.cpu.allowance", "25ms/2s",
     "Invalid value '25ms/2s' for instance key 'limits.cpu.allowance': expected a CFS "
     "quota/period like 25ms/100ms with a quota of at least 1ms and a period from 1ms to 1s"),
    ("limits.cpu.priority", "11",
     "Invalid value '11' for instance key 'limits.cpu.priority': expected an integer from 0 "
     "to 10"),
    ("limits.disk.priority", "-1",
     "Invalid value '-1' for instance key 'limits.disk.priority': expected an integer from 0 "
     "to 10"),
    ("limits.memory.enforce", "strict",
     "Invalid value 'strict' for instance key 'limits.memory.enforce': expected one of: "
     "hard, soft"),
    ("limits.memory.swap", "some",
     "Invalid value 'some' for instance key 'limits.memory.swap': expected a boolean "
     "(true/false, yes/no, on/off, 1/0) or a size like 512MiB, 2GiB or 1000000 (bytes)"),
    ("limits.processes", "0",
     "Invalid value '0' for instance key 'limits.processes': expected a positive integer"),
    ("security.privileged", "maybe",
     "Invalid value 'maybe' for instance key 'security.privileged': expected a boolean "
     "(true/false, yes/no, on/off, 1/0)"),
    ("boot.autostart", "sometimes",
     "Invalid value 'sometimes' for instance key 'boot.autostart': expected a boolean "
     "(true/false, yes/no, on/off, 1/0) or one of: last-state"),
    ("security.idmap.size", "4294967296",
     "Invalid value '4294967296' for instance key 'security.idmap.size': expected an "
     "integer from 0 to 4294967295"),
    ("environment.X", "a\nb",
     "Invalid value 'a\\nb' for instance key 'environment.X': expected a single line (no "
     "newline or NUL characters)"),
    ("environment.X", "a\0b",
     "Invalid value 'a\\x00b' for instance key 'environment.X': expected a single line (no "
     "newline or NUL characters)"),
    ("snapshots.expiry", "3 days",
     "Invalid value '3 days' for instance key 'snapshots.expiry': expected an expiry like "
     "'1d 12H': numbers with a unit S (second), M (minute), H (hour), d, w, m (month) or y, "
     "separated by spaces"),
    ("snapshots.expiry", "1d 2d",
     "Invalid value '1d 2d' for instance key 'snapshots.expiry': expected an expiry like "
     "'1d 12H': numbers with a unit S (second), M (minute), H (hour), d, w, m (month) or y, "
     "separated by spaces, each unit at most once"),
    ("snapshots.pattern", "snap%d-%d",
     "Invalid value 'snap%d-%d' for instance key 'snapshots.pattern': expected a name "
     "template with at most one %d"),
]


@pytest.mark.parametrize("key,value,message", REFUSALS, ids=[f"{k}={v!r}" for k, v, _ in
                                                            REFUSALS])
def test_refusals_are_exact_and_one_line(key, value, message):
    with pytest.raises(BadRequest) as e:
        validate_instance_config({key: value})
    assert e.value.message == message
    assert "\n" not in e.value.message


@pytest.mark.parametrize("schedule", [
    "0 6 * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
    "*/0 * * * *", "@sometimes", "0 6 * * *,@daily", "a b c d e",
])
def test_bad_schedules(schedule):
    with pytest.raises(ValueError, match="a cron expression"):
        v.is_schedule(schedule)


def test_schedule_range_error_names_the_field():
    with pytest.raises(ValueError, match=r"a field value '60' is out of range 0-59"):
        v.is_schedule("60 * * * *")


def test_unknown_keys_and_namespaces():
    with pytest.raises(BadRequest) as e:
        validate_instance_config({"limits.memroy": "1GiB"})
    assert e.value.message == (
        "Unknown instance configuration key 'limits.memroy' (did you mean 'limits.memory'?): "
        "accepted are the keys listed in docs/config.md and environment.*, image.*, user.*")
    with pytest.raises(BadRequest, match="^Unknown instance configuration key 'foo': accepted"):
        validate_instance_config({"foo": "1"})
    for bare in ("user.", "environment.", "image."):
        with pytest.raises(BadRequest, match="Unknown instance configuration key"):
            validate_instance_config({bare: "x"})


def test_volatile_is_read_only():
    with pytest.raises(BadRequest) as e:
        validate_instance_config({"volatile.base_image": "x"})
    assert e.value.message == ("Key 'volatile.base_image' is read-only: volatile.* keys are "
                               "set by machined")
    validate_instance_config({"volatile.base_image": "x"}, allow_volatile=True)


@pytest.mark.parametrize("key,message", [
    ("environment.A=B", "Invalid environment variable name 'A=B' in key 'environment.A=B': "
                        "names may not contain '=', newlines or NUL"),
    ("environment.A\0", "Invalid instance configuration key 'environment.A\\x00': keys are "
                        "non-empty UTF-8 text without newlines or NUL"),
    ("user.a\nb", "Invalid instance configuration key 'user.a\\nb': keys are non-empty UTF-8 "
                  "text without newlines or NUL"),
    ("user.\udcff", "Invalid instance configuration key 'user.\\udcff': keys are non-empty "
                    "UTF-8 text without newlines or NUL"),
])
def test_keys_serialized_into_line_formats_are_checked(key, message):
    with pytest.raises(BadRequest) as e:
        validate_instance_config({key: "x"})
    assert e.value.message == message


def test_values_must_be_strings():
    with pytest.raises(BadRequest, match="values must be strings"):
        validate_instance_config({"limits.cpu": 2})


def test_undecodable_text_is_refused_not_a_500():
    """`mc config set c1 user.a $'\\xff'` reached the database and failed there (HTTP 500)."""
    with pytest.raises(BadRequest) as e:
        validate_instance_config({"user.a": "\udcff"})
    assert e.value.message == ("Invalid value '\\udcff' for instance key 'user.a': values must "
                               "be UTF-8 text")
    with pytest.raises(BadRequest, match="keys are non-empty UTF-8 text"):
        validate_server_config({"core.\udcff": "1"})
    with pytest.raises(BadRequest, match="values must be UTF-8 text"):
        validate_server_config({"core.proxy_http": "\udcff"})
    assert v.is_utf8("caf\u00e9") and not v.is_utf8("\udcff")


@pytest.mark.parametrize("key,value", [
    ("images.auto_update_interval", "24"), ("images.auto_update_cached", "false"),
    ("images.remote_cache_expiry", "0"), ("images.compression_algorithm", "zstd"),
    ("core.shutdown_timeout", "10"), ("core.https_address", ":8443"),
    ("core.https_address", "0.0.0.0:8443"), ("core.https_address", "[::]:8443"),
    ("core.https_address", "[::1]"), ("core.https_address", "::"),
    ("core.https_address", "127.0.0.1"), ("core.https_address", "lxd.example.com:8443"),
    ("core.https_address", ""),
])
def test_server_keys_accepted(key, value):
    validate_server_config({key: value})


@pytest.mark.parametrize("value", [
    ":0", ":99999", "1.2.3.4:", "[::1", "[::1]x", "999.1.1.1", "host name", "[1.2.3.4]:80",
    ":http", "a" * 250 + "!:80",
])
def test_bad_listen_addresses(value):
    with pytest.raises(BadRequest, match="expected a listen address like :8443"):
        validate_server_config({"core.https_address": value})


def test_server_refusals_are_exact():
    with pytest.raises(BadRequest) as e:
        validate_server_config({"images.auto_update_interval": "daily"})
    assert e.value.message == ("Invalid value 'daily' for server key "
                               "'images.auto_update_interval': expected an integer")
    with pytest.raises(BadRequest) as e:
        validate_server_config({"images.compression": "xz"})
    assert e.value.message.startswith(
        "Unknown server configuration key 'images.compression' (did you mean "
        "'images.compression_algorithm'?): accepted are backups.compression_algorithm, "
        "core.https_address, ")


@pytest.mark.parametrize("text,size", [("512MiB", 512 * 2**20), ("1GB", 10**9), ("100", 100),
                                       ("1.5KiB", 1536), ("2kB", 2000)])
def test_parse_size(text, size):
    assert v.parse_size(text) == size


def test_parsers():
    assert v.parse_cpuset("0-2,7") == [0, 1, 2, 7]
    assert v.parse_allowance("50%") == 50
    assert v.parse_allowance("25ms/100ms") == (25000, 100000)
    assert v.parse_allowance("1s/1s") == (1000000, 1000000)
    assert v.parse_expiry("1M 2H 3d 4w 5m 6y 7S") == {
        "minutes": 1, "hours": 2, "days": 3, "weeks": 4, "months": 5, "years": 6, "seconds": 7}
