"""Schema versions: a store written before them (tests/store/fixtures, by the code of commit
f27f456) opens with every row kept and ids continuing above the old ones; a newer one is
refused."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from borderline.store import (
    Delivery,
    MailStore,
    OutboundMessage,
    OutboundRelay,
    StoreError,
    open_store,
)
from borderline.store.schema import LATEST
from tests.pg import PostgresServer

FIXTURES = Path(__file__).parent / "fixtures"
ALICE, BOB = "alice@example.test", "bob@example.test"
FOREVER = 4102444800.0
# Every column of every table, in an order that sorts the rows.
COLUMNS = {
    "accounts": "address, password_hash, created",
    "mailboxes": "id, account, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed",
    "blobs": "id, account, data",
    "messages": "id, mailbox_id, uid, modseq, flags, internal_date, size, blob_id, expunged",
    "changes": "mailbox_id, modseq, uid, kind",
    "relay_queue": "id, dest_region, mail_from, rcpts, sealed, created, attempts,"
    " next_attempt, last_error",
    "relay_received": "relay_id, account, received",
    "holds": "id, account, reference, until",
}
Query = Callable[[str], list[tuple[object, ...]]]


@pytest.fixture
def written_by_v1(
    store_engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[str | Path, Query]:
    """A copy of the fixture for the engine, and raw SQL on it (bypassing the store)."""
    if store_engine == "sqlite":
        path = tmp_path / "mail.sqlite"
        shutil.copy(FIXTURES / "v1.sqlite", path)
        return path, on_location(path)
    server: PostgresServer = request.getfixturevalue("pg_server")
    url: str = request.getfixturevalue("pg_url")
    server.load(url, FIXTURES / "v1-postgres.sql")
    return url, on_location(url)


def snapshot(query: Query) -> dict[str, list[tuple[object, ...]]]:
    return {t: query(f"SELECT {c} FROM {t} ORDER BY {c}") for t, c in COLUMNS.items()}


def top_ids(query: Query) -> dict[str, int]:
    return {
        t: int(query(f"SELECT MAX(id) FROM {t}")[0][0])  # type: ignore[call-overload]
        for t in ("mailboxes", "blobs", "messages", "relay_queue", "holds")
    }


def test_a_store_from_before_schema_versions_opens_with_every_row_kept(
    written_by_v1: tuple[str | Path, Query],
) -> None:
    location, query = written_by_v1
    before, tops = snapshot(query), top_ids(query)
    old_validity = int(query("SELECT MAX(uidvalidity) FROM mailboxes")[0][0])  # type: ignore[call-overload]
    store = open_store(location)
    assert snapshot(query) == before, "every row of every table, as it was"
    assert query("SELECT version FROM schema_version") == [(LATEST,)]
    check_contents(store)

    # New rows continue above the old ids and UIDVALIDITYs.
    box = store.create_mailbox(ALICE, "After")
    store.deliver([Delivery(ALICE, b"after", 5, time.time(), mailbox="After")])
    store.deliver([], [OutboundRelay("us-east", ALICE, (BOB,), b"sealed-3")])
    store.deliver([], [], [OutboundMessage("remote.test", ALICE, ("x@remote.test",), b"q", 1)])
    assert [i.domain for i in store.list_outbound()] == ["remote.test"], "version 3's queue"
    hold = store.add_hold(BOB, "REQ-NEW", FOREVER)
    assert box.uidvalidity > old_validity
    assert box.id > tops["mailboxes"] and hold > tops["holds"]
    assert all(new > tops[t] for t, new in top_ids(query).items())
    top = store.create_mailbox(BOB, "Top")
    store.delete_mailbox(BOB, "Top")
    assert store.create_mailbox(BOB, "Next").id > top.id, "a freed top id is not reused"
    store.delete_mailbox(BOB, "Next")
    assert store.lost_subscriptions(BOB) == ["Next", "Top"], "version 6 keeps subscriptions"
    store.close()

    after = snapshot(query)
    again = open_store(location)  # at the latest version already: nothing changes
    assert snapshot(query) == after
    check_contents(again)
    again.close()


def check_contents(store: MailStore) -> None:
    """What the fixture holds, read through the store (tests/store/fixtures/write_v1.py)."""
    inbox = store.mailbox(ALICE, "INBOX")
    messages = {m.uid: m for m in store.messages(inbox.id)}
    assert sorted(messages) == [1, 2, 3, 6]
    assert messages[1].flags == {"\\Seen"} and messages[3].flags == {"\\Flagged", "$Label1"}
    assert store.blob(messages[6].blob_id) == b"alice-cipher-5"
    assert (inbox.uidnext, inbox.messages, inbox.unseen) == (7, 4, 2)
    assert (inbox.first_recent_uid, inbox.recent) == (7, 0), "old mail is not \\Recent"
    kinds = [c.kind for c in store.changes_since(inbox.id, 0)]
    assert (kinds.count("append"), kinds.count("flags"), kinds.count("expunge")) == (6, 5, 2)
    work = store.mailbox(ALICE, "Work")
    shared = {m.blob_id for m in store.messages(work.id)} & {m.blob_id for m in messages.values()}
    assert shared == {messages[1].blob_id, messages[2].blob_id}, "copies share their blob"
    assert {m.name for m in store.mailboxes(ALICE)} >= {"Work", "Work/2026"}
    [retained] = store.retained(ALICE)
    assert retained.uid == 5 and store.blob(retained.blob_id) == b"alice-cipher-4"
    live = store.holds()[0]  # the lapsed one is not live
    assert (live.account, live.reference, live.until) == (ALICE, "REQ-LIVE", FOREVER)
    relays = {bytes(store.relay_sealed(r.id) or b""): r for r in store.due_relays(FOREVER + 1)}
    failed, waiting = relays[b"sealed-1"], relays[b"sealed-2"]
    assert (failed.mail_from, failed.rcpts, failed.attempts) == (
        ALICE,
        (BOB, "carol@example.test"),
        1,
    )
    assert (failed.last_error, failed.next_attempt) == ("451 4.3.0 try later", FOREVER)
    assert (waiting.mail_from, waiting.rcpts, waiting.attempts) == ("", (BOB,), 0)
    assert failed.bounce is None and waiting.bounce is None, "version 4: no one bounced them"
    retry = Delivery(ALICE, b"again", 5, time.time(), mailbox="Work", relay_id="relay-a1")
    assert store.deliver([retry]) == [], "the relay receipt survived: no second copy"
    assert store.password_hash(BOB) == "$argon2id$v=19$m=65536,t=3,p=4$bob-fixture-hash"
    with pytest.raises(Exception, match="no mailbox"):
        store.mailbox(BOB, "Gone")


def test_a_store_newer_than_the_code_is_refused(
    written_by_v1: tuple[str | Path, Query],
) -> None:
    location, query = written_by_v1
    open_store(location).close()
    query("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer than this Borderline"):
        open_store(location)


def test_a_version_5_store_keeps_its_rows_and_gains_lost_subscriptions(
    store_location: str | Path,
) -> None:
    """Versions 6, 7, 10 and 11 only add `lost_subscriptions`, `summaries`,
    `summary_columns` and the mailbox counts (8 only moves columns, 9's table is 10's to
    drop): a latest store without them, marked 5, is what version 5 wrote."""
    store = open_store(store_location)
    store.create_account(ALICE, "hash")
    store.create_mailbox(ALICE, "Kept", subscribed=True)
    store.close()
    run = on_location(store_location)
    run("DROP TABLE lost_subscriptions")
    run("DROP TABLE summary_columns")
    run("DROP TABLE summaries")
    drop_mailbox_counts(run)
    run("UPDATE schema_version SET version = 5")
    before = run("SELECT id, name, subscribed FROM mailboxes ORDER BY id")
    store = open_store(store_location)
    assert run("SELECT version FROM schema_version") == [(LATEST,)] and LATEST == 11
    assert run("SELECT id, name, subscribed FROM mailboxes ORDER BY id") == before
    store.delete_mailbox(ALICE, "Kept")
    assert store.lost_subscriptions(ALICE) == ["Kept"]
    store.close()


def drop_mailbox_counts(query: Query) -> None:
    """What version 11 added."""
    for column in ("message_count", "unseen_count"):
        query(f"ALTER TABLE mailboxes DROP COLUMN {column}")


def test_a_version_10_store_gets_the_counts_of_its_live_messages(
    written_by_v1: tuple[str | Path, Query],
) -> None:
    """Version 11 counts each mailbox's messages and unseen ones once, leaving out those a
    hold retains (the fixture has some); every write keeps the counts from then on."""
    location, query = written_by_v1
    store = open_store(location)
    for hold in store.holds():
        store.release_hold(hold.id)
    inbox = store.mailbox(ALICE, "INBOX")
    store.set_flags(inbox.id, [1], frozenset({"\\Seen"}), "add")
    store.set_flags(inbox.id, [2], frozenset({"\\Deleted"}), "add")
    store.add_hold(ALICE, "REQ-9", FOREVER)
    store.expunge(inbox.id)
    store.close()
    assert query("SELECT COUNT(*) FROM messages WHERE expunged") != [(0,)]
    drop_mailbox_counts(query)
    query("UPDATE schema_version SET version = 10")
    store = open_store(location)
    assert query("SELECT version FROM schema_version") == [(LATEST,)]
    for account in (ALICE, BOB):
        for box in store.mailboxes(account):
            messages = store.messages(box.id)
            assert box.messages == len(messages)
            assert box.unseen == sum("\\Seen" not in m.flags for m in messages)
    assert {box.name for box in store.mailboxes(ALICE) if box.messages} >= {"INBOX", "Work"}
    store.close()


def on_location(location: str | Path) -> Query:
    """Raw SQL on a store's database, bypassing the store."""
    if isinstance(location, Path):

        def on_file(sql: str) -> list[tuple[object, ...]]:
            with closing(sqlite3.connect(location)) as db, db:
                return db.execute(sql).fetchall()

        return on_file

    def on_database(sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(location, autocommit=True) as db, db.cursor() as cursor:
            cursor.execute(sql)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    return on_database


def test_a_store_of_version_6_gets_summaries_and_keeps_its_messages(
    written_by_v1: tuple[str | Path, Query],
) -> None:
    """Version 6 is version 7 without the summaries table (and 10's and 11's additions):
    its blobs have none until a session adds them; one is stored once and goes with its
    blob."""
    location, query = written_by_v1
    open_store(location).close()
    query("DROP TABLE summary_columns")
    query("DROP TABLE summaries")
    drop_mailbox_counts(query)
    query("UPDATE schema_version SET version = 6")
    before = snapshot(query)
    store = open_store(location)
    assert snapshot(query) == before and query("SELECT version FROM schema_version") == [(LATEST,)]
    check_contents(store)
    inbox = store.mailbox(ALICE, "INBOX")
    old = {m.uid: m.blob_id for m in store.messages(inbox.id)}

    def summaries(*uids: int) -> dict[int, bytes]:
        return store.summaries(inbox.id, [(uid, blobs[uid]) for uid in uids]).singles

    blobs = dict(old)
    assert summaries(*old) == {}, "stored before summaries"
    store.add_summaries([(old[1], b"first"), (old[2], b"second")])
    store.add_summaries([(old[1], b"again"), (10**9, b"no such blob")])
    assert summaries(*old) == {old[1]: b"first", old[2]: b"second"}
    [placed] = store.deliver([Delivery(ALICE, b"new", 3, time.time(), summary=b"summary")])
    new = blobs[placed.uid] = {m.uid: m.blob_id for m in store.messages(inbox.id)}[placed.uid]
    assert summaries(placed.uid) == {new: b"summary"}
    for hold in store.holds():
        store.release_hold(hold.id)
    store.set_flags(inbox.id, [2, placed.uid], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)
    assert sorted(summaries(1, 2, placed.uid)) == [old[1], old[2]], (
        "uid 2's blob lives on in Work (a copy); the new one went with its message"
    )
    store.delete_account(ALICE)
    assert query("SELECT COUNT(*) FROM summaries") == [(0,)]
    store.close()


@pytest.mark.parametrize("version", [8, 9])
def test_a_store_of_version_8_or_9_gets_summary_columns_that_go_with_their_messages(
    written_by_v1: tuple[str | Path, Query], version: int
) -> None:
    """Version 8 is version 10 without `summary_columns` (nor 11's counts), version 9 has
    `summary_packs` instead (derived, so dropped): the other rows stay as they were; a
    run's columns are stored only for all the messages of its UID range, and go when one
    of them is expunged or with its mailbox or account."""
    location, query = written_by_v1
    open_store(location).close()
    query("DROP TABLE summary_columns")
    if version == 9:
        query(
            "CREATE TABLE summary_packs (id BIGINT PRIMARY KEY, mailbox_id BIGINT NOT NULL"
            " REFERENCES mailboxes(id), first_uid BIGINT, last_uid BIGINT, data BYTEA)"
        )
        query("INSERT INTO summary_packs SELECT 1, id, 1, 3, 'x' FROM mailboxes LIMIT 1")
    drop_mailbox_counts(query)
    query(f"UPDATE schema_version SET version = {version}")
    before = snapshot(query)
    store = open_store(location)
    assert snapshot(query) == before and query("SELECT version FROM schema_version") == [(LATEST,)]
    with pytest.raises((sqlite3.OperationalError, psycopg.errors.UndefinedTable)):
        query("SELECT COUNT(*) FROM summary_packs")
    for hold in store.holds():
        store.release_hold(hold.id)
    inbox = store.mailbox(ALICE, "INBOX")
    store.deliver([Delivery(ALICE, b"more", 4, time.time()) for _ in range(3)])
    messages = [(m.uid, m.blob_id) for m in store.messages(inbox.id)]
    assert len(messages) == 7
    assert not store.add_summary_columns(inbox.id, messages[:1] + messages[2:4], {"body": b"gap"})
    assert store.add_summary_columns(inbox.id, messages[:4], {"body": b"run"})
    stored = store.summaries(inbox.id, messages, [("body",)])
    assert [(c.field, c.data) for c in stored.columns] == [("body", b"run")]
    store.set_flags(inbox.id, [messages[1][0]], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)
    assert query("SELECT COUNT(*) FROM summary_columns") == [(0,)]
    assert store.add_summary_columns(inbox.id, messages[2:], {"body": b"after"})
    store.delete_account(ALICE)
    assert query("SELECT COUNT(*) FROM summary_columns") == [(0,)]
    store.close()


def test_a_version_7_sqlite_store_gets_its_queues_message_column_last(tmp_path: Path) -> None:
    """tests/store/fixtures/write_v7.py: queued relays and mail to the Internet, as version 7
    wrote them, keep every column and their ids; the message column is last, and the queues
    take and give back messages written in place."""
    path = tmp_path / "mail.sqlite"
    shutil.copy(FIXTURES / "v7.sqlite", path)
    query = on_location(path)
    columns = {
        "relay_queue": "id, dest_region, mail_from, rcpts, sealed, created, attempts,"
        " next_attempt, last_error, bounce",
        "outbound_queue": "id, domain, mail_from, rcpts, blob, size, created, attempts,"
        " next_attempt, last_error, delay_notified, bounce",
    }
    before = {t: query(f"SELECT {c} FROM {t} ORDER BY id") for t, c in columns.items()}
    store = open_store(path)
    assert query("SELECT version FROM schema_version") == [(LATEST,)]
    assert {t: query(f"SELECT {c} FROM {t} ORDER BY id") for t, c in columns.items()} == before
    for table, large in (("relay_queue", "sealed"), ("outbound_queue", "blob")):
        assert query(f"PRAGMA table_info({table})")[-1][1] == large
    failed, waiting = sorted(store.due_relays(FOREVER + 1), key=lambda item: item.id)
    assert (failed.attempts, failed.last_error, failed.next_attempt) == (
        1,
        "451 4.3.0 try later",
        FOREVER,
    )
    assert store.relay_sealed(failed.id) == b"sealed-1"
    assert store.relay_sealed(waiting.id, room=3) == b"\0\0\0sealed-2"
    [queued] = store.due_outbound(FOREVER)
    assert store.outbound_blob(queued.id) == b"outbound-1"
    big = bytearray(b"sealed ") * 100_000
    store.deliver(
        [],
        [OutboundRelay("us-east", ALICE, (BOB,), big)],
        [OutboundMessage("remote.test", ALICE, ("x@remote.test",), bytes(big), 7)],
    )
    newest = max(store.due_relays(FOREVER + 1), key=lambda item: item.id)
    assert newest.id == 4, "the relayed item's id 3 is not handed out again"
    assert store.relay_sealed(newest.id) == big
    assert store.outbound_blob(max(i.id for i in store.due_outbound(FOREVER))) == big
    store.close()
