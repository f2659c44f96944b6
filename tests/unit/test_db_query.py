"""`machined sql` pieces without a daemon: the statement runner on a real SQLite database,
the client's table/json/csv output, and how a full disk becomes one 507 sentence."""

from __future__ import annotations

import errno
import json
import sqlite3

import pytest
from sqlite_utils import Database

from machined import admin
from machined.db import query
from machined.errors import BadRequest, storage_error


@pytest.fixture
def db(tmp_path):
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    d = Database(conn)
    d.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB)")
    d.execute("INSERT INTO t (name, data) VALUES ('a', x'00ff'), ('b', NULL)")
    yield d
    conn.close()


def test_rows_and_rows_affected(db):
    assert query.run(db, "SELECT id, name, data FROM t ORDER BY id") == {
        "columns": ["id", "name", "data"],
        "rows": [[1, "a", {"base64": "AP8="}], [2, "b", None]]}
    assert query.run(db, "UPDATE t SET name = 'c'") == {"rows_affected": 2}
    assert query.run(db, "PRAGMA integrity_check") == {"columns": ["integrity_check"],
                                                      "rows": [["ok"]]}


def test_refusals_leave_no_transaction_open(db):
    for statement in ("BEGIN", "SAVEPOINT x"):
        with pytest.raises(BadRequest, match="Transactions are not supported"):
            query.run(db, statement)
        assert not db.conn.in_transaction
    with pytest.raises(BadRequest, match="SQL error: no such table: nope"):
        query.run(db, "SELECT * FROM nope")
    with pytest.raises(BadRequest, match="non-empty"):
        query.run(db, "  ")


def test_too_many_rows_are_refused(db, monkeypatch):
    monkeypatch.setattr(query, "MAX_ROWS", 1)
    with pytest.raises(BadRequest, match="more than 1 rows: add a LIMIT"):
        query.run(db, "SELECT * FROM t")


def test_table_output_is_aligned_with_borders():
    text = admin.format_result({"columns": ["id", "name"],
                                "rows": [[1, "longer name"], [22, None]]}, "table")
    assert text == ("+----+-------------+\n"
                    "| id | name        |\n"
                    "+----+-------------+\n"
                    "| 1  | longer name |\n"
                    "| 22 | NULL        |\n"
                    "+----+-------------+\n")


def test_json_csv_and_rows_affected_output():
    result = {"columns": ["id", "pem"], "rows": [[1, "a\nb"]]}
    assert json.loads(admin.format_result(result, "json")) == [{"id": 1, "pem": "a\nb"}]
    assert admin.format_result(result, "csv") == 'id,pem\n1,"a\nb"\n'
    assert admin.format_result(result, "table").splitlines()[3] == "| 1  | a\\nb |"
    assert admin.format_result({"rows_affected": 3}, "table") == "Rows affected: 3\n"
    assert json.loads(admin.format_result({"rows_affected": 3}, "json")) == {
        "rows_affected": 3}


def test_a_full_disk_is_one_507_sentence():
    err = storage_error(OSError(errno.ENOSPC, "No space left on device", "/x/y"))
    assert err is not None and err.status == 507
    assert err.message == ("Insufficient storage: No space left on device (/x/y): free some "
                           "space and try again")
    full = sqlite3.OperationalError("database or disk is full")
    err = storage_error(full)
    assert err is not None and err.status == 507
    assert err.message.startswith("Insufficient storage: No space left on device for the "
                                  "database (nothing was changed)")
    assert storage_error(OSError(errno.EIO, "I/O error")) is None
    assert storage_error(sqlite3.OperationalError("no such table: x")) is None
