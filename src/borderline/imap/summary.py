"""A message's summary: what IMAP clients fetch and search, computed once when it is stored.

ENVELOPE, BODYSTRUCTURE, BODY, the header block (which answers HEADER, every HEADER.FIELDS
set and SEARCH HEADER) and the texts SEARCH FROM/TO/CC/BCC/SUBJECT look in, so a session
decrypts a few hundred octets instead of parsing the whole message. The planner computes
it at delivery and APPEND (runtime.py wires `summarize` in) and the vault encrypts it under
the account's data key, as the message (docs/store.md, "Message summaries"); a session
decrypts it only with the key it released through the log. A message stored without one
gets it from the first session that parses the message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import cast

from borderline.imap.mime import FIELD_LIMIT, Part, bodystructure, envelope
from borderline.imap.search import SEARCH_FIELDS, header_texts

VERSION = b"\x01"
UNUSABLE = b"\x00"  # the summary would be too big: sessions read the message
MAX_HEADER = FIELD_LIMIT
MAX_SUMMARY = 256 * 1024
LENGTH = struct.Struct(">I")
FIELDS = 5
IN_BUFFER_FROM = 1 << 20  # octets of a message summarized in its own buffer
# What keeps a summary cheap enough to compute inside the group commit (cheap_to_summarize).
CHEAP_SIZE = 256 * 1024
CHEAP_HEADER = 16 * 1024


@dataclass
class Summary:
    envelope: bytes
    bodystructure: bytes
    body: bytes
    header_block: bytes
    search_block: bytes

    @cached_property
    def header(self) -> Part:
        """The message's header block alone (its body is empty), parsed when first asked."""
        return Part(self.header_block)

    def search_text(self, name: str) -> str | None:
        """imap/search.py's header_texts of a SEARCH_FIELDS field, joined by NUL (which no
        IMAP string holds), or None for another field."""
        if name not in SEARCH_FIELDS:
            return None
        data, at = self.search_block, 0
        for field in SEARCH_FIELDS:
            (size,) = LENGTH.unpack_from(data, at)
            at += LENGTH.size
            if field == name:
                return data[at : at + size].decode("utf-8", "surrogatepass")
            at += size
        return None

    def structure(self, kind: str) -> bytes:
        if kind == "ENVELOPE":
            return self.envelope
        return self.bodystructure if kind == "BODYSTRUCTURE" else self.body


def summarize(head: bytes, content: bytes | bytearray) -> bytes:
    """The plaintext summary of the message `head + content`. A big bytearray (SMTP's DATA
    buffer) gets the head put before it while it is read, and taken off again: a move
    within the buffer, where `head + content` would be a copy of it. A smaller message is
    copied: bytes are searched faster (a 20 KB summary took 10% longer from a bytearray)."""
    if not isinstance(content, bytearray) or len(content) < IN_BUFFER_FROM:
        return summary_of(Part(head + content if head else bytes(content)))
    content[0:0] = head
    try:
        # Part reads its data only with what bytes and bytearray share, and every field
        # of the summary is a copy (tests/imap/test_summary.py compares the two).
        return summary_of(Part(cast(bytes, content)))
    finally:
        del content[: len(head)]


def cheap_to_summarize(content: bytes | bytearray) -> bool:
    """Whether summarize() of `content` costs little, bounded without parsing it: a
    message of one part, whose body is only counted (about 0.5 ns an octet), with a header
    of at most CHEAP_HEADER octets (at most about 15 ms where addresses crowd it). What
    makes a summary costly is structure: a part's children are split out and parsed, an
    attached message's header is parsed whatever its size, a crafted set of boundaries can
    take seconds. So a header that names a multipart or message type, even only in a
    comment or its Subject, makes the message not cheap."""
    if len(content) > CHEAP_SIZE:
        return False
    header_end = content.find(b"\r\n\r\n")
    header = content if header_end < 0 else content[:header_end]
    if len(header) > CHEAP_HEADER:
        return False
    folded = header.lower()
    return b"multipart" not in folded and b"message/" not in folded


def summary_of(part: Part) -> bytes:
    header = part.header
    if len(header) > MAX_HEADER:
        return UNUSABLE
    texts = [
        "\0".join(header_texts(part, name)).encode("utf-8", "surrogatepass")
        for name in SEARCH_FIELDS
    ]
    fields = (
        envelope(part),
        bodystructure(part),
        bodystructure(part, extensible=False),
        header,
        _framed(texts),
    )
    if sum(len(field) for field in fields) > MAX_SUMMARY:
        return UNUSABLE
    return VERSION + _framed(fields)


def _framed(fields: Iterable[bytes]) -> bytes:
    return b"".join(LENGTH.pack(len(field)) + field for field in fields)


def parse_summary(data: bytes) -> Summary | None:
    """The summary, or None where the message must be read (unusable, or unknown version)."""
    if not data.startswith(VERSION):
        return None
    fields, at = [], 1
    for _ in range(FIELDS):
        (size,) = LENGTH.unpack_from(data, at)
        at += LENGTH.size
        fields.append(data[at : at + size])
        at += size
    return Summary(*fields)
