"""Every store test runs against both backends; PostgreSQL is a real throwaway server."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from borderline.store import MailStore, PostgresMailStore, SqliteMailStore
from tests.pg import PostgresServer, server_binaries

ALICE = "alice@example.test"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    bin_dir = server_binaries()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql; .ci/run installs them)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run initdb as")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh database for one test, dropped after it."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MailStore]:
    store: MailStore
    if request.param == "postgres":
        store = PostgresMailStore(request.getfixturevalue("pg_url"))
    else:
        store = SqliteMailStore(tmp_path / "mail.sqlite")
    store.create_account(ALICE, "hash")
    yield store
    store.close()
