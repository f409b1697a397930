"""MULTIAPPEND (RFC 3502): several messages in one APPEND, stored all or none."""

from __future__ import annotations

from tests.conftest import RunningCloud
from tests.imap.conftest import make_message, raw_login


def literal(data: bytes) -> bytes:
    return b"{%d+}\r\n%s" % (len(data), data)


def test_messages_are_appended_together_or_not_at_all(running: RunningCloud) -> None:
    raw = raw_login(running)
    one, two, three = (make_message(i) for i in (1, 2, 3))
    try:
        raw.command(b"c", b"CREATE multi")
        reply = raw.command(
            b"a",
            b"APPEND multi (\\Seen) "
            + literal(one)
            + b' "02-Feb-2026 10:00:00 +0000" '
            + literal(two)
            + b" (\\Flagged $Work) "
            + literal(three),
        )
        assert reply[-1].startswith(b"a OK [APPENDUID "), reply
        assert reply[-1].split(b"]")[0].endswith(b" 1:3"), "one UID each, in order"
        # A bad message anywhere refuses the whole command: nothing of it is stored.
        for bad in (
            b"APPEND multi " + literal(one) + b" {0+}\r\n",
            b"APPEND multi " + literal(one) + b" (\\Bogus) " + literal(two),
            b"APPEND multi " + literal(one) + b' "32-Feb-2026 10:00:00 +0000" ' + literal(two),
            b"APPEND multi " + literal(one) + b" NOTAMESSAGE",
            b"APPEND multi " + b" ".join([literal(b"x")] * 1001),
        ):
            assert raw.command(b"b", bad)[-1][:4] in (b"b NO", b"b BA"), bad
        status = raw.command(b"s", b"STATUS multi (MESSAGES)")
        assert status[0] == b'* STATUS "multi" (MESSAGES 3)\r\n'
        raw.command(b"s", b"EXAMINE multi")
        fetched = raw.command(b"f", b"FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])")
        assert fetched[-1] == b"f OK FETCH completed\r\n"
        text = b"".join(fetched)
        assert text.index(one) < text.index(two) < text.index(three)
        assert fetched[0].startswith(b"* 1 FETCH (FLAGS (\\Recent \\Seen) ")
        assert b'INTERNALDATE "02-Feb-2026 10:00:00 +0000"' in text
        assert b"FLAGS ($Work \\Flagged \\Recent)" in text
        assert b" MULTIAPPEND " in raw.command(b"c", b"CAPABILITY")[0]
    finally:
        raw.close()
