"""No session stalls the others: a store that hangs is NO [UNAVAILABLE] in bounded time, and a
hostile message is parsed off the event loop in bounded memory (issue 15 items 3 and 5)."""

from __future__ import annotations

import contextlib
import select
import sqlite3
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from borderline.cloud import Region
from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import Raw, fill, make_message
from tests.imap.test_mime import nested

ALICE = "alice@example.test"


def selecting(running: RunningCloud, address: str = ALICE, region: str = "eu-dublin") -> Raw:
    raw = Raw(running, region)
    assert raw.command(b"l", b'LOGIN %s "%s"' % (address.encode(), PASSWORD.encode()))[
        -1
    ].startswith(b"l OK")
    assert raw.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    return raw


def answered(raw: Raw) -> bool:
    """Whether the server has sent anything on this connection yet."""
    return bool(raw.file.peek(1)) if select.select([raw.sock], [], [], 0)[0] else False


@contextlib.contextmanager
def writes_blocked(region: Region, account: str) -> Iterator[None]:
    """Another connection holds what a flag write needs, as a long transaction elsewhere
    would: SQLite's write lock, or on PostgreSQL the account's mailbox rows (reads go on)."""
    if region.section.store is None:
        holder = sqlite3.connect(region.root / "mail.sqlite", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with psycopg.connect(region.section.store) as connection, connection.transaction():
        connection.execute("SELECT id FROM mailboxes WHERE account = %s FOR UPDATE", (account,))
        yield


def test_a_locked_store_answers_unavailable_while_other_sessions_go_on(
    running: RunningCloud,
) -> None:
    dublin = running.cloud.region("eu-dublin")
    [imap] = [s for s in running.runtime.imap if s.region.id == "eu-dublin"]
    imap.store_timeout = 1.0
    fill(dublin, ALICE, [make_message(i) for i in range(3)])
    writers = [selecting(running) for _ in range(8)]  # more than asyncio's default threads
    with writes_blocked(dublin, ALICE):
        for writer in writers:
            writer.send(b"w STORE 1 +FLAGS (\\Flagged)\r\n")
        # Meanwhile a new session logs in and reads, in this region and in the other one.
        reader = selecting(running)
        assert reader.command(b"f", b"FETCH 1:* (FLAGS)")[-1] == b"f OK FETCH completed\r\n"
        assert reader.command(b"b", b"FETCH 1 (BODY.PEEK[HEADER])")[-1].startswith(b"b OK")
        bob = selecting(running, "bob@example.test", "us-east")
        assert bob.command(b"n", b"NOOP") == [b"n OK NOOP completed\r\n"]
        for writer in writers:
            reply = writer.until(b"w")
            assert reply[-1].startswith(b"w NO [UNAVAILABLE]"), reply  # was NO [SERVERBUG]
            assert writer.command(b"x", b"STORE 2 +FLAGS (\\Flagged)")[-1].startswith(
                b"x NO [UNAVAILABLE]"
            ), "refused at once while the session's last store call still hangs"
    reader.command(b"n", b"NOOP")
    assert reader.command(b"w", b"STORE 3 +FLAGS (\\Seen)")[-1] == b"w OK STORE completed\r\n"
    for raw in [*writers, reader, bob]:
        raw.close()


def test_status_reads_the_sync_after_it_without_ever_writing(
    running: RunningCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STATUS reads its mailbox and the selected mailbox's changes in one store call. Those
    changes may need a write (claiming new mail's \\Recent): it is left to the sync's own
    call, so a STATUS that times out and runs on in its thread claims nothing that then
    goes unreported, and a STATUS still answers while writes wait on a lock."""
    dublin = running.cloud.region("eu-dublin")
    [imap] = [server for server in running.runtime.imap if server.region is dublin]
    imap.store_timeout = 0.5
    fill(dublin, ALICE, [make_message(0)])
    raw = selecting(running)
    fill(dublin, ALICE, [make_message(1)])
    mailbox = dublin.store.mailbox

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1)
        return mailbox(*args, **kwargs)

    monkeypatch.setattr(dublin.store, "mailbox", slow)
    assert raw.command(b"a", b"STATUS Sent (MESSAGES)")[-1].startswith(b"a NO [UNAVAILABLE]")
    monkeypatch.undo()
    time.sleep(1)  # the STATUS's call ends meanwhile
    reply = raw.command(b"b", b"NOOP")
    assert b"* 2 EXISTS\r\n" in reply and b"* 2 RECENT\r\n" in reply, reply
    imap.store_timeout = 1.0
    fill(dublin, ALICE, [make_message(2)])
    with writes_blocked(dublin, ALICE):
        reply = raw.command(b"c", b"STATUS Sent (MESSAGES)")
    assert reply[0] == b'* STATUS "Sent" (MESSAGES 0)\r\n'
    assert reply[-1] == b"c OK STATUS completed\r\n", "the sync's claim waited, not STATUS"
    time.sleep(0.5)  # the sync's claim ends once the lock is free
    assert b"* 3 EXISTS\r\n" in raw.command(b"d", b"NOOP")
    raw.close()


def test_a_hostile_message_is_parsed_off_the_loop_in_bounded_memory(
    running: RunningCloud,
) -> None:
    # The review's message: 20 MB nested 31 levels. One FETCH BODYSTRUCTURE took 1.25 GB
    # and blocked every session of the process for 18 s.
    hostile = nested(31, 20_000_000)
    # Stored without a summary (before schema version 7), so the session parses it.
    fill(running.cloud.region("eu-dublin"), ALICE, [hostile, make_message(1)], summaries=False)
    reader, other = selecting(running), selecting(running)
    assert reader.command(b"e", b"FETCH 2 (ENVELOPE)")[-1].startswith(b"e OK")  # key released
    tracemalloc.start()
    try:
        reader.send(b"f FETCH 1 (BODYSTRUCTURE)\r\n")
        # The other session is answered while the parse runs.
        for _ in range(5):
            assert other.command(b"n", b"NOOP") == [b"n OK NOOP completed\r\n"]
        assert other.command(b"e", b"FETCH 2 (ENVELOPE)")[-1].startswith(b"e OK")
        parsing = not answered(reader)
        reply = reader.until(b"f")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsing, "the other session's commands were answered before the parse ended"
    assert reply[-1] == b"f OK FETCH completed\r\n"
    assert reply[0].startswith(b"* 1 FETCH (BODYSTRUCTURE (((((")
    # The ciphertext, the plaintext and a little: not 60 times the message.
    assert peak < 4 * len(hostile), peak
    reader.close()
    other.close()
