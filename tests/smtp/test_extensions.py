"""ESMTP extensions over real loopback sessions: PIPELINING, CHUNKING/BDAT (RFC 3030),
ENHANCEDSTATUSCODES (RFC 2034) on every reply, SMTPUTF8 (RFC 6531) and submission over
implicit TLS (RFC 8314)."""

from __future__ import annotations

import re
import smtplib
import socket

import pytest

from tests.conftest import PASSWORD, RunningCloud
from tests.smtp.test_ingress import _client_tls, inbox

ENHANCED = re.compile(rb"[245][0-9][0-9][ -][245]\.[0-9]{1,3}\.[0-9]{1,3} ")


def _script(port: int, wire: bytes) -> list[bytes]:
    """Send the whole script at once (pipelined), read every reply line to the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(wire + b"QUIT\r\n")
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received.split(b"\r\n")[:-1]


def _final(lines: list[bytes]) -> list[bytes]:
    """The last line of each reply (a multi-line reply's lines but its last say 250-)."""
    return [line for line in lines if line[3:4] != b"-"]


@pytest.mark.one_engine("the SMTP protocol layer; no message is stored")
def test_mx_advertises_the_extensions_and_refuses_auth(running: RunningCloud) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    lines = _script(port, b"EHLO client.test\r\nAUTH PLAIN AGFAYg==\r\n")
    features = [line[4:].split(b" ")[0] for line in lines[1:] if line.startswith(b"250")]
    for feature in (b"PIPELINING", b"ENHANCEDSTATUSCODES", b"CHUNKING", b"8BITMIME", b"SMTPUTF8"):
        assert feature in features
    assert b"AUTH" not in features
    assert b"503 5.5.1 Error: authentication not enabled" in lines


@pytest.mark.one_engine("the SMTP protocol layer; every reply is checked, none stored")
def test_every_reply_after_ehlo_has_an_enhanced_code(running: RunningCloud) -> None:
    """aiosmtpd's own replies ("250 OK", "503 Error: ...", "221 Bye") get one too."""
    port = running.cloud.region("eu-dublin").section.smtp.port
    script = (
        b"EHLO client.test\r\nNOOP\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
        b"MAIL FROM:<x@example.org>\r\nMAIL FROM:<y@example.org>\r\nVRFY alice\r\n"
        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<x@elsewhere.org>\r\nRCPT TO:<bad\r\n"
        b"FROB\r\nRSET\r\nHELP\r\n"
    )
    lines = _script(port, script)
    after_ehlo = _final(lines)[2:]
    assert len(after_ehlo) == 13
    for line in after_ehlo:
        assert ENHANCED.match(line), line
    assert after_ehlo[-1] == b"221 2.0.0 Bye"


def test_bdat_chunks_pipelined_make_one_message_unstuffed(running: RunningCloud) -> None:
    """Chunks are counted bytes: a line holding a lone dot is data, and no dot is removed."""
    port = running.cloud.region("eu-dublin").section.smtp.port
    first = b"From: x@example.org\r\nSubject: chunked\r\n\r\n.\r\n..two dots\r\n"
    last = b"BDAT-MARKER-5c1e\r\n"
    script = (
        b"EHLO client.test\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        + b"BDAT %d\r\n" % len(first)
        + first
        + b"BDAT %d LAST\r\n" % len(last)
        + last
    )
    replies = _final(_script(port, script))
    assert replies[-3] == b"250 2.0.0 %d octets received" % len(first)
    assert replies[-2].startswith(b"250 2.0.0 OK: queued as ")
    [stored] = inbox(running.cloud.region("eu-dublin"), "alice@example.test")
    assert stored.endswith(first + last)


@pytest.mark.one_engine("the SMTP protocol layer; refused data is never stored")
def test_refused_bdat_chunks_are_read_and_never_run_as_commands(running: RunningCloud) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    smuggled = b"RSET\r\nMAIL FROM:<x@example.org>\r\n"
    limit = running.cloud.config.cloud.max_message_size
    envelope = b"MAIL FROM:<x@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
    script = (
        b"EHLO client.test\r\n"
        + b"BDAT %d\r\n" % len(smuggled)  # no transaction yet: refused, its bytes read
        + smuggled
        + envelope
        + b"BDAT 5\r\nbare\nBDAT 3 LAST\r\nend"  # a bare <LF> ends the transaction...
        + envelope
        + b"BDAT %d\r\n" % (limit + 1)  # ...as too much data does
        + b"x" * (limit + 1)
        + b"DATA\r\n"
        + envelope
        + b"BDAT 2\r\nok"
        + b"DATA\r\n"  # DATA may not follow BDAT in one transaction
        + b"BDAT nine\r\n"  # an unknown size: nothing after it can be read as a command
        + b"NOOP\r\n"
    )
    replies = _final(_script(port, script))[2:]
    assert replies == [
        b"503 5.5.1 Error: need MAIL and RCPT commands",
        b"250 2.1.0 OK",
        b"250 2.1.5 OK",
        b"550 5.5.2 %s Error: bare <LF> received"
        % running.cloud.region("eu-dublin").host_name.encode(),
        b"503 5.5.1 Error: need MAIL and RCPT commands",
        b"250 2.1.0 OK",
        b"250 2.1.5 OK",
        b"552 5.3.4 Error: Too much mail data",
        b"503 5.5.1 Error: need RCPT command",
        b"250 2.1.0 OK",
        b"250 2.1.5 OK",
        b"250 2.0.0 2 octets received",
        b"503 5.5.1 Error: DATA in a transaction that BDAT began",
        b"501 5.5.4 Syntax: BDAT chunk-size [LAST]",
    ]
    assert (
        running.cloud.region("eu-dublin").store.mailbox("alice@example.test", "INBOX").messages == 0
    )


@pytest.mark.one_engine("the SMTP protocol layer; the replies to MAIL and RCPT")
def test_a_non_ascii_address_needs_smtputf8(running: RunningCloud) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    script = (
        "EHLO client.test\r\nMAIL FROM:<jörg@example.org>\r\n"
        "MAIL FROM:<x@example.org>\r\nRCPT TO:<jörg@example.test>\r\nRSET\r\n"
        "MAIL FROM:<jörg@example.org> SMTPUTF8\r\nRCPT TO:<jörg@example.test>\r\n"
    ).encode()
    replies = _final(_script(port, script + b"RSET\r\nMAIL FROM:<\xff@example.org> SMTPUTF8\r\n"))
    assert replies[2:10] == [
        b"553 5.6.7 Error: a non-ASCII address needs the SMTPUTF8 parameter on MAIL",
        b"250 2.1.0 OK",
        b"553 5.6.7 Error: a non-ASCII address needs the SMTPUTF8 parameter on MAIL",
        b"250 2.0.0 OK",
        b"250 2.1.0 OK",
        b"550 5.1.1 <j?rg@example.test>: no such user here",  # replies are ASCII
        b"250 2.0.0 OK",
        b"553 5.1.7 Error: the address is not valid UTF-8",
    ]


def test_submission_over_implicit_tls_offers_auth_at_once(running: RunningCloud) -> None:
    listen = running.cloud.region("eu-dublin").section.submissions
    assert listen is not None
    with smtplib.SMTP_SSL(listen.host, listen.port, context=_client_tls(), timeout=30) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        code, _ = client.mail("alice@example.test")
        assert code == 530, "AUTH is still required"
        client.rset()
        for feature in ("pipelining", "chunking", "enhancedstatuscodes", "smtputf8"):
            assert client.has_extn(feature), feature
        client.user, client.password = "alice@example.test", PASSWORD
        client.auth("LOGIN", client.auth_login)
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        content = b"From: alice@example.test\r\nSubject: 465\r\n\r\nover implicit TLS\r\n"
        client.send(b"BDAT %d LAST\r\n" % len(content) + content)
        code, text = client.getreply()
        assert code == 250 and text.startswith(b"2.0.0 OK: queued as"), text
    assert running.drained()
    [stored] = inbox(running.cloud.region("us-east"), "bob@example.test")
    assert b"over implicit TLS" in stored
    assert b"with ESMTPSA" in stored
