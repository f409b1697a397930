"""PostgreSQL only: several processes writing at once, clear errors, crash durability."""

from __future__ import annotations

import multiprocessing
import time
import traceback
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import psycopg
import pytest

from borderline.store import Delivery, PostgresMailStore, StoreError
from tests.net import free_port
from tests.pg import PostgresServer
from tests.store.conftest import ALICE

WORKERS = 4
ROUNDS = 25


def _worker(url: str, worker: int, start: Event, results: Queue[tuple[int, object]]) -> None:
    """One ingest process: its own store, a mailbox of its own, then batches to two mailboxes
    in an order opposite to its neighbour's (which would deadlock without ordered locks)."""
    try:
        start.wait(30)
        store = PostgresMailStore(url)  # opening races the others' deliveries, on purpose
        own = store.create_mailbox(ALICE, f"Worker{worker}")
        order = ("INBOX", "Junk") if worker % 2 == 0 else ("Junk", "INBOX")
        placed: list[tuple[int, int]] = []
        for i in range(ROUNDS):
            batch = [
                Delivery(ALICE, f"w{worker}-{i}-{box}".encode(), 1, time.time(), mailbox=box)
                for box in order
            ]
            placed += store.deliver(batch)
        store.close()
        results.put((worker, (own.uidvalidity, placed)))
    except BaseException:
        results.put((worker, traceback.format_exc()))


def test_processes_delivering_at_once_get_unique_contiguous_uids(pg_url: str) -> None:
    store = PostgresMailStore(pg_url)
    store.create_account(ALICE, "hash")
    first_validities = {m.uidvalidity for m in store.mailboxes(ALICE)}
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Event()
    results: Queue[tuple[int, object]] = spawn.Queue()
    workers = [
        spawn.Process(target=_worker, args=(pg_url, n, start, results)) for n in range(WORKERS)
    ]
    for process in workers:
        process.start()
    start.set()
    outcomes = dict(results.get(timeout=60) for _ in workers)
    for process in workers:
        process.join(10)
    failures = [o for o in outcomes.values() if isinstance(o, str)]
    assert failures == []
    validities = [o[0] for o in outcomes.values()]  # type: ignore[index]
    assert len(set(validities)) == WORKERS and min(validities) > max(first_validities)
    total = WORKERS * ROUNDS
    for name in ("INBOX", "Junk"):
        box = store.mailbox(ALICE, name)
        given = [uid for o in outcomes.values() for mid, uid in o[1] if mid == box.id]  # type: ignore[index]
        assert sorted(given) == list(range(1, total + 1)), f"{name}: unique and contiguous"
        assert [m.uid for m in store.messages(box.id)] == list(range(1, total + 1))
        assert (box.uidnext, box.highestmodseq, box.messages) == (total + 1, total + 1, total)
        changes = store.changes_since(box.id, 0)
        assert sorted(m for m, _, _ in changes) == list(range(2, total + 2))
        bodies = {store.blob(m.blob_id) for m in store.messages(box.id)}
        assert bodies == {
            f"w{w}-{i}-{name}".encode() for w in range(WORKERS) for i in range(ROUNDS)
        }, "nothing lost"
    store.close()


def assert_no_chained_cause(error: BaseException) -> None:
    """A logged traceback shows only the StoreError, not the driver's error beneath it."""
    assert error.__cause__ is None and error.__suppress_context__


def test_unreachable_server_names_host_and_database_never_the_password() -> None:
    url = f"postgresql://mail:s3cret-pw@127.0.0.1:{free_port()}/dublin_mail"
    with pytest.raises(StoreError) as error:
        PostgresMailStore(url, timeout=3)
    message = str(error.value)
    assert "127.0.0.1" in message and "dublin_mail" in message
    assert "s3cret-pw" not in message
    assert_no_chained_cause(error.value)


def test_missing_database_and_bad_urls_are_store_errors(pg_server: PostgresServer) -> None:
    with pytest.raises(StoreError, match="no_such_db") as error:
        PostgresMailStore(pg_server.url("no_such_db").replace("postgres@", "postgres:pw-9f3@"))
    assert "pw-9f3" not in str(error.value)
    assert_no_chained_cause(error.value)
    with pytest.raises(StoreError, match="postgresql://"):
        PostgresMailStore("mysql://127.0.0.1/mail")


def test_reopen_keeps_data_and_commits_are_durable(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            "ALTER DATABASE " + pg_url.rpartition("/")[2] + " SET synchronous_commit = off"
        )
    store = PostgresMailStore(pg_url)
    store.create_account(ALICE, "hash")
    inbox = store.mailbox(ALICE, "INBOX")
    assert store.deliver([Delivery(ALICE, b"kept", 4, time.time())]) == [(inbox.id, 1)]
    assert PostgresMailStore(pg_url).mailbox(ALICE, "INBOX").messages == 1, "schema reopens"
    with store.engine.write() as tx:
        assert tx.one("SHOW synchronous_commit") == ("on",), "the store turns it back on"
    store.close()


def test_acknowledged_mail_survives_a_server_crash_and_the_store_reconnects(
    pg_server: PostgresServer, pg_url: str
) -> None:
    store = PostgresMailStore(pg_url)
    store.create_account(ALICE, "hash")
    inbox = store.mailbox(ALICE, "INBOX")
    store.deliver([Delivery(ALICE, f"m{i}".encode(), 2, time.time()) for i in range(5)])
    pg_server.crash_and_restart()
    assert [store.blob(m.blob_id) for m in store.messages(inbox.id)] == [
        f"m{i}".encode() for i in range(5)
    ], "every committed message is back, and a read reconnects by itself"
    assert store.deliver([Delivery(ALICE, b"after", 5, time.time())]) == [(inbox.id, 6)]
    store.close()


def test_a_hung_server_makes_every_call_fail_in_bounded_time(
    pg_server: PostgresServer, pg_url: str
) -> None:
    """Issue 15 #5: with the database stopped (SIGSTOP), calls blocked for good. Now each
    raises StoreError once its timeout runs out, and nothing half written remains."""
    store = PostgresMailStore(pg_url, timeout=1)
    store.create_account(ALICE, "hash")
    inbox = store.mailbox(ALICE, "INBOX")
    calls = (
        lambda: store.mailbox(ALICE, "INBOX"),
        lambda: store.deliver([Delivery(ALICE, b"lost?", 5, time.time())]),
        lambda: store.messages(inbox.id),
        lambda: store.mailbox(ALICE, "INBOX"),  # the connection is gone: the pool's wait
    )
    with pg_server.frozen():
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreError) as error:
                call()
            # A bound, not a measurement: about 2 s (the timeout, plus 1 s for the client's
            # wait), far below the forever it was.
            assert time.monotonic() - started < 15, error.value
            assert_no_chained_cause(error.value)
    assert store.deliver([Delivery(ALICE, b"after", 5, time.time())]) == [(inbox.id, 1)]
    assert [store.blob(m.blob_id) for m in store.messages(inbox.id)] == [b"after"]
    store.close()
