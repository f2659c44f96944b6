"""`machined sql` against a real daemon: statements run in the daemon's own connection (a
write is seen by the API at once), rows print as a table, json or csv, errors are one line
with exit status 1, a transaction cannot be left open, a runaway query is interrupted, the
endpoint answers on the unix socket only, and without a daemon the command says so."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from cli import tls, trust_join
from cli.client import Client
from cli.errors import ApiError
from tests.conftest import BIN, Result, is_root, spawn_daemon

pytestmark = [pytest.mark.daemon,
              pytest.mark.skipif(not is_root, reason="machined needs root")]


def sql(daemon, *args: str, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run([os.fspath(BIN / "machined"), "sql", *args],
                          env=env or daemon.env, capture_output=True, text=True, timeout=60)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server():
    with spawn_daemon() as d:
        yield d


def test_select_prints_an_aligned_table(server):
    res = sql(server, "SELECT name, description FROM profiles ORDER BY name")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].startswith("+-") and lines[0] == lines[2] == lines[-1]
    assert [c.strip() for c in lines[1].strip("|").split("|")] == ["name", "description"]
    assert lines[3].startswith("| default ")
    assert len({len(line) for line in lines}) == 1  # every line equally wide: aligned


def test_json_and_csv_formats(server):
    res = sql(server, "SELECT name, 1 AS one, NULL AS missing FROM profiles WHERE "
                      "name = 'default'", "--format", "json")
    assert res.code == 0, res.err
    assert json.loads(res.out) == [{"name": "default", "one": 1, "missing": None}]
    res = sql(server, "SELECT name, 'a,b' AS tricky FROM profiles WHERE name = 'default'",
              "--format", "csv")
    assert res.code == 0, res.err
    assert list(csv.reader(io.StringIO(res.out))) == [["name", "tricky"], ["default", "a,b"]]


def test_a_write_runs_in_the_daemons_connection(server):
    res = sql(server, "UPDATE profiles SET description = 'set by sql' WHERE name = 'default'")
    assert (res.code, res.out) == (0, "Rows affected: 1\n"), res.err
    # The API reads the same connection: no restart, no cache.
    assert server.api("GET", "/1.0/profiles/default")["description"] == "set by sql"
    res = sql(server, "UPDATE profiles SET description = '' WHERE name = 'nope'",
              "--format", "json")
    assert json.loads(res.out) == {"rows_affected": 0}


@pytest.mark.parametrize(("query", "message"), [
    ("SELECT * FROM no_such_table", "Error: SQL error: no such table: no_such_table"),
    ("SELEKT 1", 'Error: SQL error: near "SELEKT": syntax error'),
    ("SELECT 1; SELECT 2", "Error: SQL error: You can only execute one statement at a time."),
    ("", "Error: The query must be a non-empty SQL statement"),
])
def test_errors_are_one_line_and_exit_1(server, query, message):
    res = sql(server, query)
    assert res.code == 1
    assert res.err == message + "\n"
    assert res.out == ""


def test_a_transaction_cannot_be_left_open(server):
    res = sql(server, "BEGIN")
    assert res.code == 1
    assert "Transactions are not supported" in res.err
    # The daemon is not stuck inside it: its own writes still commit.
    server.ok("profile", "create", "t7sql-after-begin")
    res = sql(server, "SELECT count(*) AS n FROM profiles WHERE name = 't7sql-after-begin'",
              "--format", "json")
    assert json.loads(res.out) == [{"n": 1}]
    server.ok("profile", "delete", "t7sql-after-begin")


def test_a_runaway_query_is_interrupted(server):
    started = time.monotonic()
    res = sql(server, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                      "SELECT count(*) FROM c")
    took = time.monotonic() - started
    assert res.code == 1
    assert "ran longer than 10 s and was interrupted" in res.err
    assert took < 20
    assert server.mc("info").code == 0  # the daemon answers again


def test_without_a_daemon_it_says_so():
    empty = Path(tempfile.mkdtemp(prefix="machined-nosql-"))
    try:
        env = {**os.environ, "MACHINED_DIR": os.fspath(empty)}
        res = sql(None, "SELECT 1", env=env)
        assert res.code == 1
        assert res.err.startswith("Error: machined is not running (nothing answers on "
                                  f"{empty}/unix.socket)")
        assert len(res.err.splitlines()) == 1
    finally:
        os.rmdir(empty)


def test_only_the_unix_socket_may_run_sql(server, tmp_path):
    """Not even a trusted HTTPS client: what a statement can do is for root on the host."""
    port = free_port()
    server.ok("config", "set", "core.https_address", f"127.0.0.1:{port}")
    try:
        token = server.ok("config", "trust", "add", "t7sql").splitlines()[1]
        crt, key = tls.client_cert_paths(tmp_path / "t7sql")
        url, pem = trust_join.find_server(trust_join.parse_token(token))
        assert trust_join.join(url, token, pem, crt, key)["auth"] == "trusted"
        client = Client(url=url, ssl_context=tls.client_context(pem, (crt, key)))
        try:
            assert client.call("GET", "/1.0/profiles")  # trusted indeed
            with pytest.raises(ApiError) as err:
                client.call("POST", "/internal/sql", {"query": "SELECT 1"})
            assert err.value.status == 403
            assert "only available on the local unix socket" in str(err.value)
        finally:
            client.close()
    finally:
        server.ok("config", "unset", "core.https_address")
