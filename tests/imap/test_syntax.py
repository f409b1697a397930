"""The wire syntax and MIME layer on their own: tokens, sequence sets, names, sections."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borderline.imap.mime import Part, bodystructure, envelope, section
from borderline.imap.protocol import (
    Atom,
    ParseError,
    SequenceSet,
    decode_mailbox,
    encode_mailbox,
    parse_date_time,
    quoted_or_literal,
    tokenize,
    uid_set_text,
)


def test_tokens() -> None:
    assert tokenize(b'FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (A B)]<0.10>) "q\\"s" {3}\r\nabc') == [
        Atom("FETCH"),
        Atom("1:*"),
        [Atom("UID"), Atom("BODY.PEEK[HEADER.FIELDS (A B)]<0.10>")],
        b'q"s',
        b"abc",
    ]
    for bad in (b"(a", b"a)", b'"open', b"{5}\r\nab", b'"\\q"', b"a\x01b"):
        with pytest.raises(ParseError):
            tokenize(bad)
    # "[" is an atom character (RFC 3501 ATOM-CHAR): without a "]" on the line it ends
    # nothing, so `SELECT a[b` names a mailbox (answered NO), not bad syntax.
    assert tokenize(b"SELECT a[b (x)\r\n") == [Atom("SELECT"), Atom("a[b"), [Atom("x")]]


def test_sequence_sets() -> None:
    numbers = SequenceSet.parse("1,3:4,10:*")
    assert numbers.resolve(12) == [(1, 1), (3, 4), (10, 12)]
    assert SequenceSet.parse("5:*").resolve(3) == [(3, 5)], "n:* with n past the end still names *"
    assert uid_set_text([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    for bad in ("0", "1:", "a", "01", "1,,2", "99999999999"):
        with pytest.raises(ParseError):
            SequenceSet.parse(bad)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_modified_utf7_round_trip(name: str) -> None:
    encoded = encode_mailbox(name)
    assert encoded.isascii()
    assert decode_mailbox(encoded.decode()) == name


def test_modified_utf7_known_values() -> None:
    assert encode_mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert encode_mailbox("A&B") == b"A&-B"
    assert decode_mailbox("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"


def test_strings_and_dates() -> None:
    assert quoted_or_literal('say "hi"\\') == b'"say \\"hi\\"\\\\"'
    assert quoted_or_literal("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert quoted_or_literal("é") == b"{2}\r\n\xc3\xa9"
    assert quoted_or_literal("é", utf8=True) == b'"\xc3\xa9"'
    assert parse_date_time("17-Jul-1996 02:44:25 -0700") == 837596665.0
    with pytest.raises(ParseError):
        parse_date_time("31-Feb-2026 00:00:00 +0000")


def nested() -> bytes:
    inner = EmailMessage()
    inner["From"], inner["Subject"] = "inner@example.org", "forwarded"
    inner.set_content("inner body\n")
    outer = EmailMessage()
    outer["From"], outer["Subject"] = "outer@example.org", "fwd"
    outer.set_content("see attached\n")
    outer.add_attachment(inner)
    return outer.as_bytes().replace(b"\n", b"\r\n")


def test_nested_message_sections_and_structure() -> None:
    part = Part(nested())
    assert section(part, "2.HEADER").startswith(b"From: inner@example.org\r\n")
    assert section(part, "2.TEXT") == b"inner body\r\n"
    assert section(part, "2.1") == b"inner body\r\n"
    assert section(part, "1") == b"see attached\r\n"
    assert section(part, "2.HEADER.FIELDS (SUBJECT)") == b"Subject: forwarded\r\n\r\n"
    with pytest.raises(KeyError):
        section(part, "1.HEADER")
    with pytest.raises(KeyError):
        section(part, "3")
    structure = bodystructure(part)
    assert b'("message" "rfc822" NIL NIL NIL "8bit" ' in structure
    assert b'"forwarded"' in structure, "the encapsulated envelope is in the structure"
    assert envelope(part).startswith(b'(NIL "fwd" ((NIL NIL "outer" "example.org"))')


def test_single_part_is_part_one_and_odd_input_does_not_raise() -> None:
    plain = Part(b"Subject: x\r\n\r\nbody")
    assert section(plain, "1") == b"body"
    assert bodystructure(plain, extensible=False) == b'("text" "plain" NIL NIL NIL "7BIT" 4 1)'
    for junk in (b"", b"\r\n", b"no header at all", b"Content-Type: multipart/mixed\r\n\r\nx"):
        part = Part(junk)
        envelope(part)
        bodystructure(part)
