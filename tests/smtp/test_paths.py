"""MAIL and RCPT paths against RFC 5321 4.1.2, over one real pipelined MX session each:
what the grammar allows is accepted, the rest refused 501 with the reason (`smtp/paths.py`)."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, RunningCloud
from tests.smtp.test_extensions import _final, _script
from tests.smtp.test_ingress import _client_tls, _submission

LONG_DOMAIN = ".".join(["d" * 63] * 4) + ".test"  # 261 octets
SENDER = "501 5.1.7 Bad sender address syntax: "
RECIPIENT = "501 5.1.3 Bad recipient address syntax: "
NOT_A_MAILBOX = "not a mailbox (local-part@domain, RFC 5321 4.1.2)"
UNCLOSED = "no closing '>'"
AFTER = "text after the closing '>': parameters follow a space"

ACCEPTED = "250 2.1.0"
CONTROL = "a control character in the address"
LITERAL = "not an address literal (RFC 5321 4.1.3)"

# MAIL FROM: arguments by the reply's start (250: then a RCPT in the transaction is taken).
MAIL_BY_REPLY = {
    ACCEPTED: [
        "<x@example.org>",
        "<>",
        " <x@example.org>",  # a space after the colon: common, tolerated
        "x@example.org",  # no brackets: tolerated, as Postfix does
        "<@relay.test,@b.test:x@example.org>",  # a source route, dropped
        '<"john doe"@example.org>',
        '<"a\\"b>c"@example.org>',  # a quoted pair and a '>' inside quotes
        "<x@[192.0.2.1]>",
        "<x@[IPv6:2001:db8::1]>",
        "<x@[x-tag:opaque]>",  # a general address literal
        "<x@localhost>",  # one label is a domain in the grammar
        "<x@example.org> SIZE=100",
        "<" + "l" * 64 + "@example.org>",
    ],
    SENDER + UNCLOSED: [
        "<not an address",
        "<x@example.org",
        "<x@example.org SIZE=100",
        '<"x@example.org>',  # the quote swallows the '>'
    ],
    SENDER + "a '>' without its '<'": ["x@example.org>"],
    SENDER + AFTER: ["<x@example.org>SIZE=100", "<<x@example.org>>"],
    SENDER + CONTROL: ["<x\x00y@example.org>", "<x\ty@example.org>"],
    SENDER + NOT_A_MAILBOX: [
        "<x y@example.org>",
        "<x@-bad.test>",
        "<x@bad-.test>",
        "<x@a..test>",
        "<x@a.test.>",
        "<x..y@example.org>",
        "<.x@example.org>",
        "<x.@example.org>",
        "<x@>",
        "<@example.org>",
        "<x>",
        "<x(comment)@example.org>",
        "<@relay.test:>",
    ],
    SENDER + "a sender needs a domain": ["<Postmaster>"],
    SENDER + LITERAL: [
        "<x@[300.1.1.1]>",
        "<x@[1.2.3]>",
        "<x@[IPv6:zz::1]>",
        "<x@[IPv6:fe80::1%eth0]>",
    ],
    SENDER + "the local part is longer than 64 octets": ["<" + "l" * 65 + "@example.org>"],
    SENDER + "the domain is longer than 255 octets": [f"<x@{LONG_DOMAIN}>"],
    SENDER + "the path is longer than 256 octets": [
        "<" + "l" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 63 + ".test>"
    ],
}
MAIL = [(argument, reply) for reply, arguments in MAIL_BY_REPLY.items() for argument in arguments]

# RCPT TO: argument (after MAIL FROM:<x@example.org>) -> the reply's start.
RCPT = [
    ("<alice@example.test>", "250 2.1.5"),
    ("<Alice@Example.TEST>", "250 2.1.5"),
    ('<"alice">@example.test', RECIPIENT + AFTER),
    ('<"alice"@example.test>', "250 2.1.5"),  # needs no quotes: the same mailbox
    ("<@us-east.example.test:alice@example.test>", "250 2.1.5"),
    # The first domain's postmaster; none is configured here (tests/test_addresses.py).
    ("<POSTMASTER>", "550 5.1.1 <postmaster@example.test>: no such user here"),
    ('<"alice x"@example.test>', '550 5.1.1 <"alice x"@example.test>: no such user here'),
    ("<alice@[192.0.2.1]>", "550 5.7.1 Relaying denied"),
    ("<alice@example.test", RECIPIENT + UNCLOSED),
    ("<>", RECIPIENT + "the null path <> is a sender's only, never a recipient"),
    ("<alice>", RECIPIENT + NOT_A_MAILBOX),
    ("<alice@example.test\x00>", RECIPIENT + CONTROL),
    ("<alice@example..test>", RECIPIENT + NOT_A_MAILBOX),
]


@pytest.mark.one_engine("the SMTP protocol layer: replies to MAIL and RCPT, nothing stored")
def test_mail_and_rcpt_paths_follow_rfc_5321(running: RunningCloud) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    script = "EHLO client.test\r\n"
    for argument, _ in MAIL:
        script += f"MAIL FROM:{argument}\r\nRCPT TO:<alice@example.test>\r\nRSET\r\n"
    script += "MAIL FROM:<x@example.org>\r\n"
    for argument, _ in RCPT:
        script += f"RCPT TO:{argument}\r\n"
    replies = [line.decode() for line in _final(_script(port, script.encode()))[2:]]

    expected = []
    for argument, reply in MAIL:
        # A refused MAIL opens no transaction: the RCPT after it is out of sequence.
        rcpt = "250 2.1.5" if reply.startswith("250") else "503 5.5.1 Error: need MAIL command"
        expected += [(argument, reply), (argument, rcpt), (argument, "250 2.0.0")]
    expected.append(("", "250 2.1.0"))
    expected += RCPT
    got = [
        (argument, line[: len(reply)])
        for (argument, reply), line in zip(expected, replies, strict=False)
    ]
    assert got == expected
    assert len(replies) == len(expected) + 1  # and 221 to QUIT


@pytest.mark.one_engine("the SMTP protocol layer: replies to RCPT, nothing stored")
def test_valid_paths_that_name_no_internet_mailbox_are_not_sent_out(running: RunningCloud) -> None:
    with _submission(running, "eu-dublin") as client:
        client.starttls(context=_client_tls())
        client.login("alice@example.test", PASSWORD)
        assert client.mail("alice@example.test")[0] == 250
        for rcpt in ('"john doe"@example.org', "x@[192.0.2.1]", "x@localhost"):
            code, text = client.rcpt(rcpt)
            assert (code, text.split(b":")[0]) == (553, b"5.1.3 Not sent out"), rcpt
        assert client.rcpt("bob@example.org")[0] == 250, "an Internet mailbox is"
