"""SELECT and EXAMINE: \\Recent as IMAP4rev1 defines it (RFC 3501 2.3.2), and FLAGS that
name the mailbox's keywords."""

from __future__ import annotations

from tests.conftest import RunningCloud
from tests.imap.conftest import fill, make_message, raw_login, untagged

ALICE = "alice@example.test"


def test_recent_belongs_to_the_first_session_that_selects(running: RunningCloud) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, ALICE, [make_message(1), make_message(2)])
    first, second, third = raw_login(running), raw_login(running), raw_login(running)
    try:
        # EXAMINE shows the recent messages but leaves them recent (RFC 3501 6.3.2).
        examined = first.command(b"e", b"EXAMINE INBOX")
        assert untagged(examined, b"RECENT") == [b"* 2 RECENT"]
        fetched = first.command(b"f", b"FETCH 1 FLAGS")
        assert fetched[0].rstrip() == b"* 1 FETCH (FLAGS (\\Recent))"
        first.command(b"c", b"CLOSE")
        status = third.command(b"s", b"STATUS INBOX (MESSAGES RECENT)")
        assert status[0].rstrip() == b'* STATUS "INBOX" (MESSAGES 2 RECENT 2)'

        # SELECT claims them: a second session sees none.
        assert untagged(first.command(b"s", b"SELECT INBOX"), b"RECENT") == [b"* 2 RECENT"]
        assert untagged(second.command(b"s", b"SELECT INBOX"), b"RECENT") == [b"* 0 RECENT"]
        assert second.command(b"f", b"FETCH 1 FLAGS")[0].rstrip() == b"* 1 FETCH (FLAGS ())"

        # New mail is recent to the session that hears of it first.
        fill(region, ALICE, [make_message(3)])
        heard = first.command(b"n", b"NOOP")
        assert [line.rstrip() for line in heard[:2]] == [b"* 3 EXISTS", b"* 3 RECENT"]
        assert second.command(b"n", b"NOOP")[:2] == [b"* 3 EXISTS\r\n", b"* 0 RECENT\r\n"]
        status = third.command(b"s", b"STATUS INBOX (RECENT)")
        assert status[0].rstrip() == b'* STATUS "INBOX" (RECENT 0)'

        first.command(b"st", b"STORE 1 +FLAGS.SILENT (\\Seen)")
        assert first.command(b"r", b"SEARCH RECENT")[0].rstrip() == b"* SEARCH 1 2 3"
        assert first.command(b"n", b"SEARCH NEW")[0].rstrip() == b"* SEARCH 2 3"
        assert first.command(b"o", b"SEARCH OLD")[0].rstrip() == b"* SEARCH"
        assert second.command(b"o", b"SEARCH OLD")[0].rstrip() == b"* SEARCH 1 2 3"
        # \Recent cannot be stored: setting flags keeps it, as the session's own.
        stored = first.command(b"st", b"STORE 2 FLAGS (\\Recent \\Flagged)")
        assert stored[0].rstrip() == b"* 2 FETCH (FLAGS (\\Flagged \\Recent))"
    finally:
        for raw in (first, second, third):
            raw.close()


def test_flags_name_the_keywords_in_use(running: RunningCloud) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, ALICE, [make_message(1)])
    raw = raw_login(running)
    try:
        raw.command(b"s", b"SELECT INBOX")
        raw.command(b"st", b"STORE 1 +FLAGS.SILENT ($Label1 Junk)")
        examined = raw.command(b"e", b"EXAMINE INBOX")
        assert untagged(examined, b"FLAGS") == [
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 Junk)"
        ]
        assert b"* OK [PERMANENTFLAGS ()] flags permitted\r\n" in examined
        selected = raw.command(b"s", b"SELECT INBOX")
        assert (
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 Junk"
            b" \\*)] flags permitted\r\n"
        ) in selected
    finally:
        raw.close()


def test_a_name_with_an_open_bracket_is_a_mailbox_name(running: RunningCloud) -> None:
    raw = raw_login(running)
    try:
        # Every atom character (imaptest's atoms test); "&'+,-" is no modified UTF-7.
        atoms = b"!#$&'+,-.0123456789:;<=>?@^_`|[}"
        assert raw.command(b"s", b"SELECT " + atoms)[-1].startswith(b"s NO [CANNOT]")
        assert raw.command(b"l", b'LIST "" ' + atoms + b"%*") == [b"l OK LIST completed\r\n"]
        reply = raw.command(b"s", b"SELECT a[b")
        assert reply[-1].startswith(b"s NO [NONEXISTENT]"), "a NO, not BAD: it is an atom"
        assert raw.command(b"c", b"CREATE a[b")[-1] == b"c OK CREATE completed\r\n"
        assert raw.command(b"t", b"SELECT a[b")[-1] == b"t OK [READ-WRITE] SELECT completed\r\n"
    finally:
        raw.close()
