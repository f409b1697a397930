"""QRESYNC (RFC 7162 3.2): SELECT's QRESYNC parameter, UID FETCH's VANISHED modifier and
VANISHED instead of EXPUNGE, from the store's change log."""

from __future__ import annotations

import re

from tests.conftest import RunningCloud
from tests.imap.conftest import Raw, fill, make_message, raw_login


def ok(raw: Raw, command: bytes) -> list[bytes]:
    reply = raw.command(b"q", command)
    assert reply[-1].startswith(b"q OK"), (command, reply)
    return [line.rstrip(b"\r\n") for line in reply[:-1]]


def code(lines: list[bytes], name: bytes) -> int:
    found = [re.search(rb"\[" + name + rb" (\d+)\]", line) for line in lines]
    return int(next(m for m in found if m is not None)[1])


def enabled_and_not(running: RunningCloud, messages: int) -> tuple[Raw, Raw]:
    """`messages` in alice's INBOX; a session with QRESYNC enabled, and one without."""
    fill(
        running.cloud.region("eu-dublin"),
        "alice@example.test",
        [make_message(i) for i in range(messages)],
    )
    enabled, other = raw_login(running), raw_login(running)
    assert ok(enabled, b"ENABLE QRESYNC") == [b"* ENABLED QRESYNC"]
    return enabled, other


def test_a_client_resynchronizes_on_select(running: RunningCloud) -> None:
    first, other = enabled_and_not(running, 4)
    try:
        selected = ok(first, b"SELECT INBOX")
        validity, seen = code(selected, b"UIDVALIDITY"), code(selected, b"HIGHESTMODSEQ")
        first.command(b"l", b"LOGOUT")
        # While the client is away: a flag change, and two expunges.
        ok(other, b"SELECT INBOX")
        ok(other, b"STORE 1 +FLAGS.SILENT (\\Seen)")
        ok(other, b"STORE 2,4 +FLAGS.SILENT (\\Deleted)")
        ok(other, b"EXPUNGE")

        again = raw_login(running)
        assert ok(again, b"ENABLE QRESYNC") == [b"* ENABLED QRESYNC"]
        lines = ok(again, b"EXAMINE INBOX (QRESYNC (%d %d))" % (validity, seen))
        changed = [line for line in lines if b"VANISHED" in line or b"FETCH" in line]
        assert changed[0] == b"* VANISHED (EARLIER) 2,4"
        assert re.fullmatch(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", changed[1])
        assert len(changed) == 2 and b"* 2 EXISTS" in lines
        # Known UIDs narrow both; another UIDVALIDITY means a full resync (nothing extra).
        lines = ok(again, b"EXAMINE INBOX (QRESYNC (%d %d 3:4 (1:2 3:4)))" % (validity, seen))
        assert b"* OK [CLOSED] previous mailbox closed" in lines
        assert [line for line in lines if b"VANISHED" in line] == [b"* VANISHED (EARLIER) 4"]
        assert not [line for line in lines if b"FETCH" in line]
        lines = ok(again, b"EXAMINE INBOX (QRESYNC (%d %d))" % (validity + 1, seen))
        assert not [line for line in lines if b"VANISHED" in line or b"FETCH" in line]
        # UID FETCH's VANISHED modifier, within the UID set asked for.
        lines = ok(again, b"UID FETCH 1:3 (FLAGS) (CHANGEDSINCE %d VANISHED)" % seen)
        assert lines[0] == b"* VANISHED (EARLIER) 2"
        assert lines[1].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (")
        assert len(lines) == 2
        # '*' also covers what was expunged above the highest UID left (4 here).
        lines = ok(again, b"UID FETCH 3:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % seen)
        assert lines == [b"* VANISHED (EARLIER) 4"]
        for bad in (
            b"FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
            b"UID FETCH 1:* (FLAGS) (VANISHED)",
            b"EXAMINE INBOX (QRESYNC (0 1))",
            b"EXAMINE INBOX (QRESYNC (1))",
            b"EXAMINE INBOX (QRESYNC (1 1 1:2 (1:2 3)))",
            b"EXAMINE INBOX (QRESYNC (1 1 1:2 (1:* 3:4)))",
            b"EXAMINE INBOX (QRESYNC)",
            b"EXAMINE INBOX (NOSUCH)",
        ):
            assert again.command(b"b", bad)[-1].startswith(b"b BAD"), bad
        again.close()
        fresh = raw_login(running)
        reply = fresh.command(b"b", b"SELECT INBOX (QRESYNC (%d %d))" % (validity, seen))
        assert reply[-1].startswith(b"b BAD") and b"ENABLE QRESYNC" in reply[-1]
        fresh.close()
    finally:
        first.close()
        other.close()


def test_expunges_are_vanished_once_enabled(running: RunningCloud) -> None:
    watcher, other = enabled_and_not(running, 3)
    try:
        ok(watcher, b"SELECT INBOX")
        ok(other, b"SELECT INBOX")
        ok(other, b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        ok(other, b"EXPUNGE")
        lines = ok(watcher, b"NOOP")
        assert lines == [b"* VANISHED 1"], "another session's expunge"
        lines = ok(watcher, b"STORE 1:2 +FLAGS (\\Deleted)")
        assert all(re.match(rb"\* \d FETCH \(UID \d FLAGS ", line) for line in lines)
        assert ok(watcher, b"EXPUNGE") == [b"* VANISHED 2:3"]
        assert ok(other, b"NOOP")[0] == b"* 2 EXPUNGE", "a session without QRESYNC"
        assert b" QRESYNC " in watcher.command(b"c", b"CAPABILITY")[0]
    finally:
        watcher.close()
        other.close()
