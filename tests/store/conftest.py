"""Every store test runs against both backends; PostgreSQL is a real throwaway server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from borderline.store import MailStore, open_store

ALICE = "alice@example.test"


@pytest.fixture
def store_location(store_engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test's store lives: an SQLite file, or a fresh PostgreSQL database."""
    if store_engine == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return tmp_path / "mail.sqlite"


@pytest.fixture
def store(store_location: str | Path) -> Iterator[MailStore]:
    store = open_store(store_location)
    store.create_account(ALICE, "hash")
    yield store
    store.close()
