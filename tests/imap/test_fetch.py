"""FETCH: section numbers through message/rfc822 parts (RFC 3501 6.4.5) and ENVELOPE
address lists with groups, routes and comments (RFC 3501 7.4.2), as imaptest checks them;
whole mailboxes, read in batches ahead of what is sent."""

from __future__ import annotations

import imaplib
import time
from types import SimpleNamespace
from typing import cast

import pytest

from borderline.imap.fetch import Contents, parse_items
from borderline.imap.mime import Part
from borderline.imap.protocol import tokenize
from borderline.imap.summary import parse_summary, summary_of
from borderline.store import MessageInfo
from borderline.vault import ContentKey
from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import client_tls, fill, make_message, raw_login

INNER = b"From: sub@example.org\r\nSubject: inner\r\n\r\nHello world\r\n"
FORWARD = (
    b"From: user@example.org\r\nMime-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + INNER
)
DIGEST = (
    b"From: user@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + INNER + b"--b--\r\n"
)
GROUPS = (
    b"From: user@example.org (Real Name)\r\nSender: \r\n"
    b"To: group: g1@d1.org, g2@d2.org;, undisclosed-recipients:;\r\n"
    b"Cc: <@route:user@example.org>, <a (comment)@ (comment) b.org>\r\n\r\nbody\r\n"
)


@pytest.mark.one_engine("message parsing; the store engine plays no part")
def test_sections_of_message_parts_and_envelope_groups(running: RunningCloud) -> None:
    fill(running.cloud.region("eu-dublin"), "alice@example.test", [FORWARD, DIGEST, GROUPS])
    raw = raw_login(running)
    try:
        raw.command(b"s", b"EXAMINE INBOX")

        def fetch(seq: int, item: bytes) -> bytes:
            lines = raw.command(b"f", b"FETCH %d (%s)" % (seq, item))
            assert lines[-1] == b"f OK FETCH completed\r\n", lines
            return b"".join(lines[:-1])

        # A message whose body is a message: part 1 is that whole message.
        literal = b"{%d}\r\n" % len(INNER)
        assert fetch(1, b"BODY.PEEK[1]") == b"* 1 FETCH (BODY[1] " + literal + INNER + b")\r\n"
        hello = b"{13}\r\nHello world\r\n)\r\n"
        assert fetch(1, b"BODY.PEEK[1.1]") == b"* 1 FETCH (BODY[1.1] " + hello
        header = b"From: sub@example.org\r\nSubject: inner\r\n\r\n"
        assert fetch(1, b"BODY.PEEK[1.HEADER]").endswith(header + b")\r\n")
        assert fetch(1, b"BODY.PEEK[1.TEXT]").endswith(hello)
        # The same one level down, inside a multipart (the CRLF before "--b" is not the part's).
        inner = INNER.removesuffix(b"\r\n")
        assert fetch(2, b"BODY.PEEK[1]").endswith(b"{%d}\r\n%s)\r\n" % (len(inner), inner))
        assert fetch(2, b"BODY.PEEK[1.HEADER.FIELDS (SUBJECT)]").endswith(
            b"{18}\r\nSubject: inner\r\n\r\n)\r\n"
        )
        assert fetch(2, b"BODY.PEEK[1.1]").endswith(b"{11}\r\nHello world)\r\n")

        envelope = fetch(3, b"ENVELOPE")
        real = b'(("Real Name" NIL "user" "example.org"))'
        assert real + b" " + real + b" " + real in envelope, "an empty Sender is From"
        assert (
            b'((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
            b'(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
        ) in envelope
        assert b'((NIL "@route" "user" "example.org")(NIL NIL "a" "b.org"))' in envelope
    finally:
        raw.close()


def _mailbox_of_many_sizes(running: RunningCloud) -> list[bytes]:
    """150 messages of 1 - 60 KB, 4.6 MB: more than one batch, more than the socket buffers."""
    messages = [make_message(i, f"{i:06d} " * (i * 617 % 9000 + 100)) for i in range(150)]
    fill(running.cloud.region("eu-dublin"), "alice@example.test", messages)
    return messages


@pytest.mark.one_engine("output framing; the store engine plays no part")
def test_a_whole_mailbox_fetched_by_a_slow_reader_arrives_whole_and_in_order(
    running: RunningCloud,
) -> None:
    """The client reads nothing for a while: what the socket does not take at once waits in
    the transport, after the part written straight from the responses, and nothing is
    lost, doubled or reordered."""
    messages = _mailbox_of_many_sizes(running)
    raw = raw_login(running)
    try:
        raw.command(b"s", b"EXAMINE INBOX")
        raw.send(b"f FETCH 1:* (BODY.PEEK[])\r\n")
        time.sleep(0.5)
        answer = b"".join(raw.until(b"f"))
    finally:
        raw.close()
    expected = b"".join(
        b"* %d FETCH (BODY[] {%d}\r\n%s)\r\n" % (seq, len(message), message)
        for seq, message in enumerate(messages, 1)
    )
    assert answer == expected + b"f OK FETCH completed\r\n"


@pytest.mark.one_engine("output framing; the store engine plays no part")
def test_a_whole_mailbox_fetched_over_tls_arrives_whole_and_in_order(
    running: RunningCloud,
) -> None:
    messages = _mailbox_of_many_sizes(running)
    listen = running.cloud.region("eu-dublin").section.imaps
    assert listen is not None
    client = imaplib.IMAP4_SSL(listen.host, listen.port, ssl_context=client_tls(), timeout=30)
    try:
        client.login("alice@example.test", PASSWORD)
        client.select("INBOX", readonly=True)
        status, data = client.fetch("1:*", "(UID BODY.PEEK[])")
    finally:
        client.logout()
    assert status == "OK"
    literals = [part[1] for part in data if isinstance(part, tuple)]
    assert literals == messages


@pytest.mark.parametrize(
    ("items", "every"),
    [
        ("(BODY.PEEK[])", True),
        ("(UID BODY[TEXT])", True),
        ("(ENVELOPE BODY.PEEK[1.MIME])", True),
        ("(BINARY.PEEK[1])", True),
        ("(FLAGS BINARY.SIZE[1])", True),
        ("(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER])", False),
        ("(UID BODY.PEEK[HEADER.FIELDS (Subject)])", False),
        ("FAST", False),
    ],
)
def test_a_fetch_that_reads_every_message_says_so_ahead(items: str, every: bool) -> None:
    """FETCH asks `reads_every_message` once instead of `wants` per message: it must say
    so only where `wants` holds for a message whose summary is loaded."""
    contents = Contents(cast(ContentKey, SimpleNamespace(name="key")))
    contents._summaries[7] = parse_summary(summary_of(Part(make_message(1))))
    parsed = parse_items(tokenize(items.encode())[0])
    info = MessageInfo(1, 1, frozenset(), 0.0, 100, 7)
    assert Contents.reads_every_message(parsed) is every
    if every:
        assert contents.wants(info, parsed)
    elif "BODY" in items:
        assert not contents.wants(info, parsed), "the summary answers it"
