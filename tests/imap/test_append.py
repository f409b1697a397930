"""APPEND with the UTF8 data extension (RFC 6855 4), as Thunderbird saves sent mail."""

from __future__ import annotations

from tests.conftest import RunningCloud
from tests.imap.conftest import raw_login

MESSAGE = "From: Zoë <alice@example.test>\r\nSubject: café\r\n\r\nhéllo\r\n".encode()


def test_thunderbird_saves_sent_mail_with_utf8_append(running: RunningCloud) -> None:
    raw = raw_login(running)
    try:
        assert raw.command(b"e", b"ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT\r\n"
        reply = raw.command(
            b"a", b'APPEND "Sent" (\\Seen) UTF8 (~{%d+}\r\n%s)' % (len(MESSAGE), MESSAGE)
        )
        assert reply[-1].startswith(b"a OK [APPENDUID "), reply
        # The synchronizing form, with a date, and a malformed one.
        raw.send(b'b APPEND Sent "02-Feb-2026 10:00:00 +0000" UTF8 (~{%d}\r\n' % len(MESSAGE))
        assert raw.file.readline().startswith(b"+ ")
        raw.send(MESSAGE + b")\r\n")
        assert raw.until(b"b")[-1].startswith(b"b OK [APPENDUID ")
        assert raw.command(b"c", b"APPEND Sent UTF8 {3+}\r\nabc")[-1].startswith(b"c BAD")
        raw.command(b"s", b"SELECT Sent")
        fetched = raw.command(b"f", b"FETCH 1:* (FLAGS BODY.PEEK[])")
        assert fetched[-1] == b"f OK FETCH completed\r\n"
        assert b"".join(fetched).count(MESSAGE) == 2
        assert fetched[0].startswith(b"* 1 FETCH (FLAGS (\\Recent \\Seen) ")
    finally:
        raw.close()
