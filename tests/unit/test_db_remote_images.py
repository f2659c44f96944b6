"""db/images.py for remote images: source rows, update checks, cached/auto-update listings,
moving aliases."""

import pytest

from machined.db import images as db_images
from machined.db import open_database
from machined.errors import NotFound

SRC = {"server": "https://images.example", "protocol": "simplestreams", "alias": "debian/12",
       "certificate": "", "image_type": "container"}


@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "machined.db")
    yield database
    database.close()


def _image(db, fp, uploaded="2026-01-01T00:00:00Z"):
    db_images.create(db, db_images.ImageRecord(fingerprint=fp, size=1, architecture="x86_64",
                                               uploaded_at=uploaded))
    return fp


def test_source_roundtrip_and_existing_callers_unchanged(db):
    fp = _image(db, "a" * 64)
    rec = db_images.get(db, fp)
    assert rec.source is None and rec.last_update_check == ""
    db_images.record_download(db, fp, cached=True, auto_update=True, last_used_at="u",
                              last_update_check="c", source=SRC)
    rec = db_images.get(db, fp)
    assert rec.source == SRC and rec.cached and rec.auto_update
    assert (rec.last_used_at, rec.last_update_check) == ("u", "c")
    # update() (the PUT route) leaves the source and the check time alone
    rec.public = True
    db_images.update(db, rec)
    assert db_images.get(db, fp).source == SRC
    assert db_images.get(db, fp).last_update_check == "c"
    db_images.set_update_check(db, fp, "later")
    assert db_images.get(db, fp).last_update_check == "later"
    db_images.set_source(db, fp, None)
    assert db_images.get_source(db, fp) is None
    with pytest.raises(NotFound):
        db_images.set_source(db, "b" * 64, SRC)
    with pytest.raises(NotFound):
        db_images.set_update_check(db, "b" * 64, "x")


def test_source_row_goes_with_the_image(db):
    fp = _image(db, "a" * 64)
    db_images.set_source(db, fp, SRC)
    db_images.delete(db, fp)
    assert db.execute("SELECT count(*) FROM images_source").fetchone()[0] == 0


def test_listings(db):
    cached_auto = _image(db, "a" * 64)
    db_images.record_download(db, cached_auto, cached=True, auto_update=True, last_used_at="",
                              last_update_check="", source=SRC)
    by_fp = _image(db, "b" * 64)  # downloaded by fingerprint: no alias, nothing to refresh
    db_images.record_download(db, by_fp, cached=True, auto_update=True, last_used_at="",
                              last_update_check="", source={**SRC, "alias": ""})
    _image(db, "c" * 64)  # imported
    assert [r.fingerprint for r in db_images.list_auto_update(db)] == [cached_auto]
    assert [r.fingerprint for r in db_images.list_cached(db)] == [cached_auto, by_fp]
    assert db_images.find_cached(db, SRC["server"], "simplestreams", "debian/12"
                                 ).fingerprint == cached_auto
    assert db_images.find_cached(db, SRC["server"], "machined", "debian/12") is None
    assert db_images.find_cached(db, SRC["server"], "simplestreams", "debian/11") is None
    db_images.set_flags(db, cached_auto, cached=False)
    assert db_images.find_cached(db, SRC["server"], "simplestreams", "debian/12") is None


def test_move_aliases(db):
    old, new = _image(db, "a" * 64), _image(db, "b" * 64)
    db_images.create_alias(db, "x", old)
    db_images.create_alias(db, "y", old, "why")
    assert db_images.move_aliases(db, old, new) == 2
    assert [a["name"] for a in db_images.get(db, new).aliases] == ["x", "y"]
    assert db_images.get(db, old).aliases == []
    assert db_images.get_alias(db, "y")["description"] == "why"
    with pytest.raises(NotFound):
        db_images.move_aliases(db, new, "c" * 64)
    assert [a["name"] for a in db_images.get(db, new).aliases] == ["x", "y"]
