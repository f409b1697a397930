"""The hand-written DATA reader (smtp/protocol.py) against what a client really sends:
whatever the body, the stored message is exactly what the client meant (RFC 5321 4.5.2)."""

from __future__ import annotations

import socket

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from borderline.vault import Justification
from tests.conftest import RunningCloud

LINE = st.text(alphabet=st.sampled_from(list("ab. \t")), max_size=12)


def _reply(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.rsplit(b"\r\n", 2)[-2][3:4] == b"-":
        chunk = conn.recv(4096)
        assert chunk, "server closed the connection"
        data += chunk
    return data


def _send_raw(port: int, wire_body: bytes) -> bytes:
    """One message whose DATA is sent exactly as given, split across many small writes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        _reply(conn)
        for command in (b"EHLO t", b"MAIL FROM:<x@example.org>", b"RCPT TO:<alice@example.test>"):
            conn.sendall(command + b"\r\n")
            assert _reply(conn)[:1] == b"2"
        conn.sendall(b"DATA\r\n")
        assert _reply(conn).startswith(b"354")
        for start in range(0, len(wire_body), 7):  # the terminator may straddle reads
            conn.sendall(wire_body[start : start + 7])
        reply = _reply(conn)
        conn.sendall(b"QUIT\r\n")
        return reply


def _last_stored(running: RunningCloud) -> bytes:
    region = running.cloud.region("eu-dublin")
    key = region.vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "t")
    box = region.store.mailbox("alice@example.test", "INBOX")
    last = region.store.messages(box.id)[-1]
    stored = key.decrypt(region.store.blob(last.blob_id))
    # Drop the three trace lines we add: Return-Path, and Received folded over two lines.
    return stored.split(b"\r\n", 3)[3]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(lines=[])
@example(lines=["."])
@example(lines=["a", "."])
@example(lines=["..", ".a", "a."])
@given(st.lists(LINE, max_size=12))
def test_stored_message_is_exactly_what_the_client_meant(
    running: RunningCloud, lines: list[str]
) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    meant = b"".join(line.encode() + b"\r\n" for line in lines)
    stuffed = b"".join(
        (b"." if line.startswith(".") else b"") + line.encode() + b"\r\n" for line in lines
    )
    assert _send_raw(port, stuffed + b".\r\n").startswith(b"250")
    assert _last_stored(running) == meant


def test_over_limit_is_drained_then_552_and_the_session_goes_on(running: RunningCloud) -> None:
    limit = running.cloud.config.cloud.max_message_size
    port = running.cloud.region("eu-dublin").section.smtp.port
    body = b"0123456789abcdef\r\n" * (limit // 18 + 10)
    assert _send_raw(port, body + b".\r\n").startswith(b"552")
    assert _send_raw(port, b"small\r\n.\r\n").startswith(b"250")


def test_a_line_over_1000_octets_is_500(running: RunningCloud) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    assert _send_raw(port, b"x" * 999 + b"\r\n.\r\n").startswith(b"250")
    assert _send_raw(port, b"x" * 1000 + b"\r\n.\r\n").startswith(b"500")
