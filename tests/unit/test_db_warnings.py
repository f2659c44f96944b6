"""Warnings: repeats counted, acknowledged ones renewed, entities renamed and forgotten."""

from __future__ import annotations

from machined.db import open_database
from machined.db import warnings as db_warnings


def test_repeats_count_and_entities_follow_renames_and_deletes(tmp_path):
    db = open_database(tmp_path / "machined.db")
    first = db_warnings.upsert(db, "instance-autostart-failure", "/1.0/instances/a", "one")
    db_warnings.set_status(db, first.uuid, "acknowledged")
    again = db_warnings.upsert(db, "instance-autostart-failure", "/1.0/instances/a", "two")
    assert (again.uuid, again.count, again.status, again.last_message) == (
        first.uuid, 2, "new", "two")
    db_warnings.upsert(db, "other", "/1.0/instances/b", "x")

    db_warnings.move_entity(db, "/1.0/instances/a", "/1.0/instances/c")
    assert [w.entity_url for w in db_warnings.list_all(db)] == [
        "/1.0/instances/c", "/1.0/instances/b"]
    db_warnings.forget_entity(db, "/1.0/instances/c")
    assert [w.entity_url for w in db_warnings.list_all(db)] == ["/1.0/instances/b"]
    db_warnings.resolve(db, "other", "/1.0/instances/b")
    assert db_warnings.list_all(db) == []
