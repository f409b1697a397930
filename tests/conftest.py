"""Shared fixtures: a real cloud on loopback ports, served from a background event loop."""

from __future__ import annotations

import asyncio
import os
import pwd
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from borderline.accounts import PasswordCost
from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import Config, example_config, load_config
from borderline.notices import NoticeReceiver
from borderline.runtime import Runtime
from tests.pg import PostgresServer, server_binaries
from tests.require import require

PASSWORD = "correct horse battery"
# The cheapest argon2id cost the config allows: accounts' and staff's passwords in tests.
CHEAP_PASSWORDS = PasswordCost(time_cost=1, memory_cost=8192, parallelism=1)
REGIONS = ("us-east", "eu-dublin")
ENGINES = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "one_engine(reason): run on SQLite only, although the test uses the `cloud` fixtures;"
        " the reason says why the store engine does not matter to it",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a store through the shared fixtures runs on both engines."""
    if "store_engine" in metafunc.fixturenames:
        one = metafunc.definition.get_closest_marker("one_engine") is not None
        metafunc.parametrize("store_engine", ENGINES[:1] if one else ENGINES)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole session (tests/pg.py)."""
    bin_dir = server_binaries()
    require(
        bin_dir is not None,
        "a PostgreSQL server (/usr/lib/postgresql/*/bin)",
        "apt-get install postgresql; .ci/run installs it",
    )
    assert bin_dir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            require(
                False, "the `postgres` user to run initdb as root", "apt-get install postgresql"
            )
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


@pytest.fixture
def region_stores(store_engine: str, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Each region's `store` URL: none on SQLite; on PostgreSQL a database of its own each
    (regions never share one)."""
    if store_engine == "sqlite":
        yield {}
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    urls = {region: server.create_database() for region in REGIONS}
    yield urls
    for url in urls.values():
        server.drop_database(url)


def base_port() -> int:
    """A base port in this pytest-xdist worker's own slots (cli/demo.free_base_port)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    lanes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return free_base_port(int(worker.removeprefix("gw")), lanes)


def write_config(root: Path, stores: Mapping[str, str] | None = None, **replace: str) -> Path:
    text = example_config(root / "data", base_port=base_port(), stores=stores, cleartext_login=True)
    for old, new in replace.items():
        text = text.replace(old, new)
    if "[inbound]" not in text:  # no DNS for sender authentication but in its own tests
        text += "\n[inbound]\nauthenticate = false\n"
    if "[passwords]" not in text:  # real argon2id, cheap enough for hundreds of logins
        cost = CHEAP_PASSWORDS
        text += (
            f"\n[passwords]\ntime_cost = {cost.time_cost}\nmemory_kib = {cost.memory_cost}"
            f"\nparallelism = {cost.parallelism}\n"
        )
    path = root / "borderline.toml"
    path.write_text(text)
    return path


class RunningCloud:
    """A Runtime on its own thread, so tests can use blocking clients (smtplib, imaplib)."""

    def __init__(self, cloud: Cloud, notices: NoticeReceiver | None = None) -> None:
        self.cloud = cloud
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runtime = Runtime(cloud, notices=notices)
        self.call(self.runtime.start())

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def drained(self, timeout: float = 30) -> bool:
        return bool(self.call(self.runtime.relays_drained(timeout), timeout + 5))

    def stop(self) -> None:
        self.call(self.runtime.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def config_path(tmp_path: Path, region_stores: dict[str, str]) -> Path:
    return write_config(
        tmp_path,
        region_stores,
        **{"max_message_size = 26214400": "max_message_size = 1048576"},
    )


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path)


@pytest.fixture
def cloud(config: Config) -> Iterator[Cloud]:
    cloud = Cloud(config)
    cloud.add_account("alice@example.test", "eu-dublin", PASSWORD)
    cloud.add_account("bob@example.test", "us-east", PASSWORD)
    yield cloud
    cloud.close()


@pytest.fixture
def running(cloud: Cloud) -> Iterator[RunningCloud]:
    running = RunningCloud(cloud)
    yield running
    running.stop()


@pytest.fixture
def deleted_while_checked(running: RunningCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every password check of eu-dublin is overtaken by a deletion of its account, as
    `Cloud.delete_account` counts one (a login's Argon2 takes its time)."""
    dublin = running.cloud.region("eu-dublin")
    check = dublin.check_password

    def deleted_meanwhile(address: str, password: str) -> bool:
        right = check(address, password)
        dublin.deletions[address] += 1
        return right

    monkeypatch.setattr(dublin, "check_password", deleted_meanwhile)
