"""BINARY (RFC 3516): FETCH BINARY[...] and BINARY.SIZE[...] undo the transfer encoding;
APPEND takes binary content (a literal8) and stores it as base64."""

from __future__ import annotations

from tests.conftest import RunningCloud
from tests.imap.conftest import raw_login

BINARY = b"\x00\x01\xe4binary\r\n"
MULTIPART = (
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 =  \r\nsoft  \r\nend\r\n"
    b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n"
    b"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
    b"\r\n" + BINARY + b"\r\n--b--\r\n"
)


def test_binary_fetch_and_append(running: RunningCloud) -> None:
    raw = raw_login(running)
    try:
        raw.command(b"c", b"CREATE bin")
        raw.send(b"a APPEND bin ~{%d+}\r\n%s\r\n" % (len(MULTIPART), MULTIPART))
        assert raw.until(b"a")[-1].startswith(b"a OK [APPENDUID ")
        raw.command(b"s", b"SELECT bin")

        def fetch(items: bytes) -> bytes:
            reply = raw.command(b"f", b"FETCH 1 (" + items + b")")
            assert reply[-1] == b"f OK FETCH completed\r\n", reply
            return b"".join(reply[:-1])

        stored = fetch(b"BODY.PEEK[4] BODY.PEEK[4.MIME]")
        assert b"\x00" not in stored and b"Content-Transfer-Encoding: base64" in stored
        assert fetch(b"BINARY.PEEK[4]") == b"* 1 FETCH (BINARY[4] ~{%d}\r\n%s)\r\n" % (
            len(BINARY),
            BINARY,
        ), "the content as it was appended, in a literal8"
        assert (
            fetch(b"BINARY.PEEK[1]") == b"* 1 FETCH (BINARY[1] {15}\r\ncaf\xc3\xa9 soft\r\nend)\r\n"
        )
        assert fetch(b"BINARY.SIZE[1] BINARY.SIZE[2]") == (
            b"* 1 FETCH (BINARY.SIZE[1] 15 BINARY.SIZE[2] 11)\r\n"
        )
        assert fetch(b"BINARY.PEEK[2]<6.100>") == b"* 1 FETCH (BINARY[2]<6> {5}\r\nworld)\r\n"
        assert fetch(b"BINARY.PEEK[9]") == b"* 1 FETCH (BINARY[9] NIL)\r\n"
        assert fetch(b"FLAGS") == b"* 1 FETCH (FLAGS (\\Recent))\r\n", "PEEK sets no \\Seen"
        whole = fetch(b"BINARY[]")
        assert whole.startswith(b"* 1 FETCH (BINARY[] {") and b"FLAGS (\\Recent \\Seen)" in whole
        reply = raw.command(b"u", b"FETCH 1 (BINARY.PEEK[3])")
        assert reply[-1].startswith(b"u NO [UNKNOWN-CTE]"), reply
        for bad in (b"BINARY.SIZE[1]<0.5>", b"BINARY[1.TEXT]", b"BINARY[0]", b"BINARY.PEEK"):
            assert raw.command(b"b", b"FETCH 1 (" + bad + b")")[-1].startswith(b"b BAD"), bad
        assert b" BINARY " in raw.command(b"c", b"CAPABILITY")[0]
    finally:
        raw.close()
