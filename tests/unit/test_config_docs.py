"""docs/config.md is generated from the key tables and must not go stale."""

from __future__ import annotations

from pathlib import Path

from machined.config import INSTANCE_KEYS, SERVER_KEYS
from machined.config.docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_docs_page_is_current():
    assert DOC.read_text() == render(), (
        "docs/config.md is stale: run `.venv/bin/python -m machined.config.docs > "
        "docs/config.md`")


def test_every_key_is_documented():
    text = render()
    for name in [*INSTANCE_KEYS, *SERVER_KEYS, "environment.*", "user.*", "image.*",
                 "volatile.*"]:
        assert f"| `{name}` |" in text, name
