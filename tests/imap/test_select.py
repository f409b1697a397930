"""SELECT and EXAMINE: \\Recent as IMAP4rev1 defines it (RFC 3501 2.3.2), and FLAGS that
name the mailbox's keywords."""

from __future__ import annotations

from borderline.imap.view import MailboxView, Snapshots
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


def test_a_mailbox_selected_again_shows_every_change_since(running: RunningCloud) -> None:
    """The server keeps the messages of a mailbox it has read (imap/view.py Snapshots): a
    later SELECT must still show what changed since, whoever changed it."""
    region = running.cloud.region("eu-dublin")
    fill(region, ALICE, [make_message(i) for i in range(1, 5)])
    writer, reader = raw_login(running), raw_login(running)

    def selected() -> tuple[list[bytes], list[bytes]]:
        reply = reader.command(b"s", b"SELECT INBOX")
        return reply, [line.rstrip() for line in reader.command(b"f", b"FETCH 1:* (UID FLAGS)")]

    try:
        first, _ = selected()
        assert untagged(first, b"EXISTS") == [b"* 4 EXISTS"]
        assert b"* OK [UNSEEN 1] first unseen message\r\n" in first
        reader.command(b"c", b"CLOSE")
        writer.command(b"s", b"SELECT INBOX")
        writer.command(b"st", b"STORE 1,3 +FLAGS.SILENT (\\Seen $Work)")
        reply, fetched = selected()
        assert b"* OK [UNSEEN 2] first unseen message\r\n" in reply
        assert b"$Work" in untagged(reply, b"FLAGS")[0]
        assert fetched[:4] == [
            b"* 1 FETCH (UID 1 FLAGS ($Work \\Seen))",
            b"* 2 FETCH (UID 2 FLAGS ())",
            b"* 3 FETCH (UID 3 FLAGS ($Work \\Seen))",
            b"* 4 FETCH (UID 4 FLAGS ())",
        ]
        highest = [line for line in reply if b"HIGHESTMODSEQ" in line]
        reader.command(b"c", b"CLOSE")
        writer.command(b"st", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
        writer.command(b"x", b"EXPUNGE")
        fill(region, ALICE, [make_message(5)])  # as an ingest process delivers: no notice
        reply, fetched = selected()
        assert untagged(reply, b"EXISTS") == [b"* 4 EXISTS"]
        assert untagged(reply, b"RECENT") == [b"* 1 RECENT"]
        assert b"* OK [UIDNEXT 6] predicted next UID\r\n" in reply
        assert [line for line in reply if b"HIGHESTMODSEQ" in line] != highest
        assert [line.split(b" FLAGS")[0] for line in fetched[:4]] == [
            b"* 1 FETCH (UID 1",
            b"* 2 FETCH (UID 3",
            b"* 3 FETCH (UID 4",
            b"* 4 FETCH (UID 5",
        ]
        assert fetched[3] == b"* 4 FETCH (UID 5 FLAGS (\\Recent))"
        # Only some messages, and items without content beside FLAGS.
        some = reader.command(b"u", b"UID FETCH 1,4:5 (FLAGS RFC822.SIZE UID INTERNALDATE)")
        assert [line.split(b" RFC822.SIZE")[0] for line in some[:3]] == [
            b"* 1 FETCH (FLAGS ($Work \\Seen)",
            b"* 3 FETCH (FLAGS ()",
            b"* 4 FETCH (FLAGS (\\Recent)",
        ]
        assert all(b"UID " in line and b'INTERNALDATE "' in line for line in some[:3])
        assert some[3].startswith(b"u OK")
    finally:
        writer.close()
        reader.close()


def test_views_share_the_snapshot_of_a_mailbox_until_one_changes(running: RunningCloud) -> None:
    """Sessions that select a mailbox share this process's snapshot of its columns, so a
    session costs no copy of them; the first change a view takes (its own STORE, an
    expunge) copies them, so no other view, and no later SELECT, sees it."""
    store = running.cloud.region("eu-dublin").store
    fill(running.cloud.region("eu-dublin"), ALICE, [make_message(i) for i in range(1, 5)])
    snapshots = Snapshots()

    def opened() -> MailboxView:
        return MailboxView.open(store, snapshots, ALICE, "INBOX", True, 0, recent=False)

    one, two = opened(), opened()
    assert one.uids is two.uids and one.flags is two.flags
    seen = one.message_at(0)._replace(modseq=one.modseq + 1, flags=frozenset({"\\Seen"}))
    one.update([seen])
    one.remove([one.uids[1]])
    assert (one.exists, one.flags[0], one.modseqs[0]) == (3, seen.flags, seen.modseq)
    for view in (two, opened()):
        assert view.exists == 4 and view.flags[0] == frozenset() and view.modseqs[0] < seen.modseq
        assert view.uids is two.uids
