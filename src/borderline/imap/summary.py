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

import json
import struct
from dataclasses import dataclass
from functools import cached_property

from borderline.imap.mime import FIELD_LIMIT, Part, bodystructure, envelope
from borderline.imap.search import SEARCH_FIELDS, header_texts

VERSION = b"\x01"
UNUSABLE = b"\x00"  # the summary would be too big: sessions read the message
MAX_HEADER = FIELD_LIMIT
MAX_SUMMARY = 256 * 1024
LENGTH = struct.Struct(">I")
FIELDS = 5


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

    @cached_property
    def search_texts(self) -> dict[str, list[str]]:
        """imap/search.py's header_texts of the SEARCH_FIELDS fields."""
        texts: dict[str, list[str]] = json.loads(self.search_block)
        return texts

    def structure(self, kind: str) -> bytes:
        if kind == "ENVELOPE":
            return self.envelope
        return self.bodystructure if kind == "BODYSTRUCTURE" else self.body


def summarize(head: bytes, content: bytes) -> bytes:
    """The plaintext summary of the message `head + content`."""
    return summary_of(Part(head + content if head else content))


def summary_of(part: Part) -> bytes:
    header = part.header
    if len(header) > MAX_HEADER:
        return UNUSABLE
    texts = {name: list(header_texts(part, name)) for name in SEARCH_FIELDS}
    fields = (
        envelope(part),
        bodystructure(part),
        bodystructure(part, extensible=False),
        header,
        json.dumps(texts).encode("ascii"),  # escapes the surrogates of undecodable octets
    )
    if sum(len(field) for field in fields) > MAX_SUMMARY:
        return UNUSABLE
    return VERSION + b"".join(LENGTH.pack(len(field)) + field for field in fields)


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
