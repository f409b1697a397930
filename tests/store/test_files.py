"""Issue 15 #16: mail.sqlite holds password hashes; it and its -wal and -shm are the owner's
only, whatever the umask, and an older, readable one is tightened when it opens."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from borderline.store import SqliteMailStore
from tests.store.conftest import ALICE

FILES = ("mail.sqlite", "mail.sqlite-wal", "mail.sqlite-shm")


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((folder / name).stat().st_mode) for name in FILES}


def test_the_database_files_are_created_owner_only(tmp_path: Path, open_umask: None) -> None:
    store = SqliteMailStore(tmp_path / "mail.sqlite")
    store.create_account(ALICE, "$argon2id$secret-hash")  # a write: -wal and -shm exist now
    assert modes(tmp_path) == dict.fromkeys(FILES, 0o600)
    store.close()


def test_files_left_readable_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    store = SqliteMailStore(tmp_path / "mail.sqlite")
    store.create_account(ALICE, "$argon2id$secret-hash")
    for name in FILES:
        (tmp_path / name).chmod(0o644)
    again = SqliteMailStore(tmp_path / "mail.sqlite")
    assert modes(tmp_path) == dict.fromkeys(FILES, 0o600)
    again.close()
    store.close()
