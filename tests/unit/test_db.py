import sqlite3

import pytest

from machined.db import SchemaTooNew, open_database
from machined.db import images as db_images
from machined.db import instances as db_instances
from machined.db import profiles as db_profiles
from machined.errors import Conflict, NotFound


@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "machined.db")
    db_profiles.create(database, db_profiles.ProfileRecord("default"))
    yield database
    database.close()


def test_fresh_database_uses_wal_and_foreign_keys(db):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_instance_roundtrip_and_cascade(db):
    rec = db_instances.InstanceRecord(name="c1", architecture="x86_64", created_at="t",
                                      config={"user.a": "1"}, devices={"root": {"path": "/"}},
                                      profiles=["default"])
    db_instances.create(db, rec)
    got = db_instances.get(db, "c1")
    assert got.config == {"user.a": "1"} and got.profiles == ["default"]
    assert got.devices == {"root": {"path": "/"}}
    with pytest.raises(Conflict):
        db_instances.create(db, rec)
    db_instances.rename(db, "c1", "c2")
    db_instances.delete(db, "c2")
    assert db.execute("SELECT count(*) FROM instances_config").fetchone()[0] == 0
    with pytest.raises(NotFound):
        db_instances.get(db, "c2")


def test_create_with_unknown_profile_writes_nothing(db):
    rec = db_instances.InstanceRecord(name="c1", architecture="x86_64", created_at="t",
                                      profiles=["nope"])
    with pytest.raises(NotFound, match="Profile 'nope' not found"):
        db_instances.create(db, rec)
    assert not db_instances.exists(db, "c1")


def test_image_prefix_and_aliases(db):
    fp = "ab" * 32
    db_images.create(db, db_images.ImageRecord(fingerprint=fp, size=1, architecture="x86_64",
                                               uploaded_at="t"))
    assert db_images.find_by_prefix(db, "abab").fingerprint == fp
    db_images.create_alias(db, "debian/12", fp)
    assert db_images.get_alias(db, "debian/12")["target"] == fp
    with pytest.raises(Conflict):
        db_images.create_alias(db, "debian/12", fp)
    db_images.delete(db, fp)
    with pytest.raises(NotFound):
        db_images.get_alias(db, "debian/12")


def test_backup_before_migrating_and_refuse_newer(tmp_path):
    path = tmp_path / "m.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE keepme (x)")
    conn.commit()
    conn.close()
    open_database(path).close()
    backup = sqlite3.connect(path.with_name("m.db.bak"))
    assert backup.execute("SELECT name FROM sqlite_master").fetchall() == [("keepme",)]
    backup.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                 "VALUES ('machined', 'm9999_future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer machined"):
        open_database(path)


def test_operation_history_is_pruned_after_a_week(db):
    from machined.db import operations as db_operations

    rows = [("old", "2000-01-01T00:00:00Z"), ("new", "2999-01-01T00:00:00Z")]
    for op_id, when in rows:
        db.execute("INSERT INTO operations VALUES (?, 'task', 'x', 200, '{}', '', ?, ?)",
                   [op_id, when, when])
    db_operations.prune(db)
    assert [r[0] for r in db.execute("SELECT id FROM operations")] == ["new"]
