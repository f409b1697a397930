"""The hand-written DATA reader (smtp/protocol.py) against what a client really sends:
whatever the body, the stored message is exactly what the client meant (RFC 5321 4.5.2),
data ends only at <CR><LF>.<CR><LF>, and a bare <CR> or <LF> refuses the message."""

from __future__ import annotations

import email
import socket

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from borderline.smtp.protocol import _Data
from borderline.vault import Justification
from tests.conftest import RunningCloud

LINE = st.text(alphabet=st.sampled_from(list("ab. \t\r\n")), max_size=12)
# The endings other servers have taken for the end of data (SMTP smuggling, 2023).
SMUGGLING_ENDINGS = [b"\n.\r\n", b"\r.\r", b"\n.\n", b"\r\n.\n"]
SMUGGLED = (
    b"MAIL FROM:<forged@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
    b"From: forged@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n"
)


def _reply(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.rsplit(b"\r\n", 2)[-2][3:4] == b"-":
        chunk = conn.recv(4096)
        assert chunk, "server closed the connection"
        data += chunk
    return data


def _transaction(conn: socket.socket, wire_body: bytes, step: int = 7) -> bytes:
    """MAIL, RCPT and DATA sent exactly as given, split across many small writes; then a
    NOOP, whose reply must come next: nothing in the data ran as a command."""
    for command in (b"MAIL FROM:<x@example.org>", b"RCPT TO:<alice@example.test>"):
        conn.sendall(command + b"\r\n")
        assert _reply(conn)[:1] == b"2"
    conn.sendall(b"DATA\r\n")
    assert _reply(conn).startswith(b"354")
    for start in range(0, len(wire_body), step):  # the end of data may straddle reads
        conn.sendall(wire_body[start : start + step])
    reply = _reply(conn)
    conn.sendall(b"NOOP\r\n")
    assert _reply(conn) == b"250 2.0.0 OK\r\n", "the data did not end where it should"
    return reply


def _send_raw(port: int, wire_body: bytes, step: int = 7) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        _reply(conn)
        conn.sendall(b"EHLO t\r\n")
        _reply(conn)
        reply = _transaction(conn, wire_body, step)
        conn.sendall(b"QUIT\r\n")
        return reply


def _inbox(running: RunningCloud) -> list[bytes]:
    region = running.cloud.region("eu-dublin")
    key = region.vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "t")
    box = region.store.mailbox("alice@example.test", "INBOX")
    return [key.decrypt(region.store.blob(m.blob_id)) for m in region.store.messages(box.id)]


def _without_trace(stored: bytes) -> bytes:
    # Drop the three trace lines we add: Return-Path, and Received folded over two lines.
    return stored.split(b"\r\n", 3)[3]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(lines=[])
@example(lines=["."])
@example(lines=["a", "."])
@example(lines=["..", ".a", "a."])
@example(lines=["a\n."])
@example(lines=["a\r.\r"])
@example(lines=["a\r\n.\n"])
@example(lines=["a\n.\n"])
@example(lines=["a\r"])
@example(lines=["\n"])
@given(st.lists(LINE, max_size=12))
def test_stored_message_is_exactly_what_the_client_meant(
    running: RunningCloud, lines: list[str]
) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    meant = b"".join(line.encode() + b"\r\n" for line in lines)
    stuffed = b"\r\n".join(
        b"." + line if line.startswith(b".") else line for line in meant.split(b"\r\n")
    )
    before = len(_inbox(running))
    reply = _send_raw(port, stuffed + b".\r\n")
    if b"\r" in meant.replace(b"\r\n", b"") or b"\n" in meant.replace(b"\r\n", b""):
        assert reply.startswith(b"550 5.5.2 eu-dublin.example.test Error: bare <")
        assert reply.endswith(b"> received\r\n")
        assert len(_inbox(running)) == before
    else:
        assert reply.startswith(b"250")
        assert _without_trace(_inbox(running)[-1]) == meant


def test_smuggled_commands_are_refused_data_and_never_run(running: RunningCloud) -> None:
    """Each ending some server took for the end of data: here it is a bare line ending in
    the data, the message is refused once its real end comes, and the MAIL FROM after it
    is never honoured. The session goes on and a normal message is stored."""
    port = running.cloud.region("eu-dublin").section.smtp.port
    for ending in SMUGGLING_ENDINGS:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            _reply(conn)
            conn.sendall(b"EHLO t\r\n")
            _reply(conn)
            body = b"Subject: first\r\n\r\nhello" + ending + SMUGGLED + b".\r\n"
            reply = _transaction(conn, body)
            assert reply.startswith(b"550 5.5.2 "), (ending, reply)
            assert _transaction(conn, b"Subject: second\r\n\r\nhi\r\n.\r\n").startswith(b"250")
    stored = _inbox(running)
    assert [email.message_from_bytes(m)["Subject"] for m in stored] == ["second"] * 4
    assert not [m for m in stored if b"forged" in m or b"evil" in m or b"hello" in m]


def test_over_limit_is_drained_then_552_and_the_session_goes_on(running: RunningCloud) -> None:
    limit = running.cloud.config.cloud.max_message_size
    port = running.cloud.region("eu-dublin").section.smtp.port
    body = b"0123456789abcdef\r\n" * (limit // 18 + 10)
    assert _send_raw(port, body + b".\r\n", step=65536).startswith(b"552")
    assert _send_raw(port, b"small\r\n.\r\n").startswith(b"250")


def test_a_line_over_1000_octets_is_500(running: RunningCloud) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    assert _send_raw(port, b"x" * 999 + b"\r\n.\r\n").startswith(b"250")
    assert _send_raw(port, b"x" * 1000 + b"\r\n.\r\n").startswith(b"500")
    # The same long line after more than a window of the reader, and across two windows.
    for before in (b"y\r\n" * 100_000, (b"y" * 997 + b"\r\n") * 262):
        body = before + b"\r\n" + b"x" * 1000 + b"\r\n.\r\n"
        assert _send_raw(port, body, step=65536).startswith(b"500")


@settings(max_examples=300, deadline=None)
@given(
    wire=st.binary().filter(lambda b: b"\r\n.\r\n" not in b"\r\n" + b).map(lambda b: b + b"\r\n")
    | st.lists(LINE, max_size=30).map(lambda ls: "".join(x + "\r\n" for x in ls).encode()),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    line_limit=st.sampled_from([3, 8, 1001]),
)
def test_the_reader_state_does_not_depend_on_where_the_data_is_cut(
    wire: bytes, cuts: list[int], line_limit: int
) -> None:
    """The DATA reader feeds a window at a time: bare line endings, transparency dots and
    long lines must be found wherever the windows are cut, as in one piece."""
    data = _Data(size_limit=0, line_limit=line_limit)
    start = 0
    for cut in sorted(cuts):
        data.feed(wire[start:cut])
        start = max(start, cut)
    data.feed(wire[start:])
    lines = wire.split(b"\r\n")
    bare = b"\r" in b"".join(lines) or b"\n" in b"".join(lines)
    assert (data.bare is not None) == bare
    if not bare:
        unstuffed = b"\r\n".join(line[1:] if line[:1] == b"." else line for line in lines)
        assert data.content == unstuffed
    assert data.line_too_long == (max(map(len, wire.split(b"\n"))) >= line_limit)


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(LINE.filter(lambda x: "\r" not in x and "\n" not in x), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_bdat_chunks_keep_their_dots(lines: list[str], cuts: list[int]) -> None:
    """BDAT data is counted, not dot-stuffed: a line starting with a dot is kept whole,
    wherever the windows are cut."""
    wire = "".join(line + "\r\n" for line in lines).encode()
    data = _Data(size_limit=0, line_limit=1001, stuffed=False)
    start = 0
    for cut in sorted(cuts):
        data.feed(wire[start:cut])
        start = max(start, cut)
    data.feed(wire[start:])
    assert data.bare is None
    assert data.content == wire
