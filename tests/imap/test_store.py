"""STORE: a keyword new to the mailbox is announced in FLAGS before any FETCH shows it, to
the session that stored it and to the others (RFC 3501 7.2.6)."""

from __future__ import annotations

from tests.conftest import RunningCloud
from tests.imap.conftest import fill, make_message, raw_login


def test_a_new_keyword_is_in_flags_before_it_is_used(running: RunningCloud) -> None:
    fill(running.cloud.region("eu-dublin"), "alice@example.test", [make_message(1)])
    storing, watching = raw_login(running), raw_login(running)
    try:
        storing.command(b"s", b"SELECT INBOX")
        watching.command(b"s", b"SELECT INBOX")
        stored = storing.command(b"st", b"STORE 1 +FLAGS ($Important)")
        assert [line.rstrip() for line in stored] == [
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)",
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important"
            b" \\*)] flags permitted",
            b"* 1 FETCH (FLAGS ($Important \\Recent))",
            b"st OK STORE completed",
        ]
        heard = watching.command(b"n", b"NOOP")
        assert heard[0].startswith(b"* FLAGS (") and b"$Important" in heard[0]
        assert heard[2].rstrip() == b"* 1 FETCH (UID 1 FLAGS ($Important))"
        # Known keywords are not announced again.
        again = storing.command(b"st", b"STORE 1 -FLAGS ($Important)")
        assert [line.rstrip() for line in again] == [
            b"* 1 FETCH (FLAGS (\\Recent))",
            b"st OK STORE completed",
        ]
    finally:
        storing.close()
        watching.close()
