"""A message's summary: what IMAP clients fetch and search, computed once when it is stored.

ENVELOPE, BODYSTRUCTURE, BODY, the header block (which answers HEADER, every HEADER.FIELDS
set and SEARCH HEADER) and the texts SEARCH FROM/TO/CC/BCC/SUBJECT look in, so a session
decrypts a few hundred octets instead of parsing the whole message. The planner computes
it at delivery and APPEND (runtime.py wires `summarize` in) and the vault encrypts it under
the account's data key, as the message (docs/store.md, "Message summaries"); a session
decrypts it only with the key it released through the log. A message stored without one
gets it from the first session that parses the message.

The record (version 2) starts with a table of where each field is, so a reader slices
out the one field it answers (BODYSTRUCTURE, or the header block) without reading the
others; version 1 records (length-prefixed fields, written before) are converted when
they are loaded.

A summary column holds one field of the summaries of a run of a mailbox's messages (all
their BODYSTRUCTUREs, say), so a session decrypts one column of the field it answers
instead of a thousand records (docs/store.md, "Summary columns"): its version octet, the
count, each message's blob id (8 octets), where each value ends (4 octets, from the first
value's start), then the values in that order. Besides the record's fields, a column may
hold the answers of one HEADER.FIELDS set, made by the first session asked for it.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import cast

from borderline.imap.mime import FIELD_LIMIT, Part, bodystructure, envelope
from borderline.imap.search import SEARCH_FIELDS, header_texts

VERSION = b"\x02"
VERSION_1 = b"\x01"
UNUSABLE = b"\x00"  # the summary would be too big: sessions read the message
MAX_HEADER = FIELD_LIMIT
# Whatever a sender puts in its headers (a summary is mostly 1 - 2 KiB): what one read of
# summaries may bring beyond its bound of octets (imap/fetch.py SUMMARY_READ_OCTETS).
MAX_SUMMARY = 64 * 1024
LENGTH = struct.Struct(">I")
# The fields, in record order: the structures by FETCH item name, the header block, then
# the search texts of each of SEARCH_FIELDS.
STRUCTURES = ("ENVELOPE", "BODYSTRUCTURE", "BODY")
HEADER = len(STRUCTURES)
FIELD_COUNT = HEADER + 1 + len(SEARCH_FIELDS)
SEARCH_FIELD = {name: HEADER + 1 + i for i, name in enumerate(SEARCH_FIELDS)}
# Summary columns: by record field, the column's name; HEADER.FIELDS sets' have their own.
COLUMNS = (
    *(kind.lower() for kind in STRUCTURES),
    "header",
    *(f"search:{n}" for n in SEARCH_FIELDS),
)
COLUMN_FIELD = {name: i for i, name in enumerate(COLUMNS)}
STRUCTURE_COLUMN = {kind: COLUMNS[i] for i, kind in enumerate(STRUCTURES)}
HEADER_COLUMN = COLUMNS[HEADER]
SEARCH_COLUMN = {name: COLUMNS[i] for name, i in SEARCH_FIELD.items()}
FIELDS_COLUMN = "fields:"
COLUMN_VERSION = b"\x01"
COLUMN_COUNT = struct.Struct(">I")
COLUMNS_MIN = 256  # messages: fewer are left to their own records
COLUMNS_OCTETS = 4 * 1024 * 1024  # at most, of records in one run of columns
# Version 2: the version octet, a table of FIELD_COUNT + 1 offsets from the record's
# start (field i spans offsets i to i + 1), then the fields.
OFFSETS = struct.Struct(f">{FIELD_COUNT + 1}I")
FIRST_FIELD = len(VERSION) + OFFSETS.size
SPAN = struct.Struct(">II")
IN_BUFFER_FROM = 1 << 20  # octets of a message summarized in its own buffer
# What keeps a summary cheap enough to compute inside the group commit (cheap_to_summarize).
CHEAP_SIZE = 256 * 1024
CHEAP_HEADER = 16 * 1024


class Summary:
    """A decrypted summary record (version 2): each field sliced out when it is asked for."""

    __slots__ = ("_header", "data")  # a session holds thousands

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._header: Part | None = None

    def field(self, index: int) -> bytes:
        start, end = SPAN.unpack_from(self.data, 1 + 4 * index)
        return self.data[start:end]

    @property
    def header_block(self) -> bytes:
        return self.field(HEADER)

    @property
    def header(self) -> Part:
        """The message's header block alone (its body is empty), parsed when first asked."""
        if self._header is None:
            self._header = Part(self.header_block)
        return self._header


def header_fields(block: bytes, names: tuple[str, ...]) -> bytes:
    """BODY[HEADER.FIELDS (names)] of a header block without parsing it: what
    `Part.header_fields` gives (the fields as they are, the last one ending in a line end,
    then the blank line)."""
    if not any(names):
        return b"\r\n"
    # Fields are found after an LF (quickly: the pattern starts with it), each without the
    # LF that ends it. So an LF before the block, and the line ends of its blank line
    # replaced by CRLF: the block's last field ends in CRLF, as in the message.
    text = b"\n" + block[: len(block.rstrip(b"\r\n"))] + b"\r\n"
    found = _field_lines(names).findall(text)
    return b"\n".join(found) + b"\n\r\n" if found else b"\r\n"


def summary_column(read: str) -> str:
    """The column of what a SEARCH key reads (imap/search.py's `summary_reads`)."""
    return SEARCH_COLUMN.get(read, HEADER_COLUMN)


def fields_column(names: tuple[str, ...], name: Callable[[str], str]) -> str:
    """The column of a HEADER.FIELDS set's answers: named by `name` (the account key's
    keyed digest, ContentKey.name) of the set as it answers (the sorted, lowercased
    names), so neither the names a client sent nor which set it was is stored."""
    return FIELDS_COLUMN + name(" ".join(sorted({n.lower() for n in names if n})))


def column(blob_ids: Sequence[int], values: Sequence[bytes]) -> bytes:
    """The column of these messages' values."""
    ends, end = [], 0
    for value in values:
        end += len(value)
        ends.append(end)
    count = len(blob_ids)
    return b"".join(
        [
            COLUMN_VERSION,
            COLUMN_COUNT.pack(count),
            struct.pack(f">{count}Q", *blob_ids),
            struct.pack(f">{count}I", *ends),
            *values,
        ]
    )


def column_values(data: bytes) -> dict[int, bytes]:
    """A column's values by blob id; ValueError if it is not a column."""
    if data[:1] != COLUMN_VERSION or len(data) < 1 + COLUMN_COUNT.size:
        raise ValueError("not a summary column of a known version")
    (count,) = COLUMN_COUNT.unpack_from(data, 1)
    start = 1 + COLUMN_COUNT.size + 12 * count
    if start > len(data):
        raise ValueError("a summary column is cut short")
    blob_ids = struct.unpack_from(f">{count}Q", data, 1 + COLUMN_COUNT.size)
    ends = struct.unpack_from(f">{count}I", data, 1 + COLUMN_COUNT.size + 8 * count)
    if count and (start + ends[-1] != len(data) or any(map(int.__gt__, ends[:-1], ends[1:]))):
        raise ValueError("a summary column's values do not add up")
    values = [data[start + a : start + b] for a, b in zip((0, *ends), ends, strict=False)]
    return dict(zip(blob_ids, values, strict=True))


@lru_cache(maxsize=256)
def _field_lines(names: tuple[str, ...]) -> re.Pattern[bytes]:
    """An LF, then (group 1) a whole field with one of these names, continuation lines
    included but not its last LF. Starting with a literal LF, it is tried at line starts
    only; the names are grouped by their first octet, so a line is compared with the few
    names that start as it does."""
    by_first: dict[bytes, list[bytes]] = {}
    for name in sorted({n.lower().encode("utf-8", "replace") for n in names if n}):
        by_first.setdefault(name[:1], []).append(re.escape(name[1:]))
    alternatives = b"|".join(
        re.escape(first) + b"(?:" + b"|".join(rests) + b")" for first, rests in by_first.items()
    )
    return re.compile(rb"\n((?:" + alternatives + rb")[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*)", re.I)


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
        # of the summary is a copy (tests/imap/test_summaries.py compares the two).
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
    header_size = len(content) if header_end < 0 else header_end
    if header_size > CHEAP_HEADER:
        return False
    folded = content[:header_size].lower()
    return b"multipart" not in folded and b"message/" not in folded


def summary_of(part: Part) -> bytes:
    header = part.header
    if len(header) > MAX_HEADER:
        return UNUSABLE
    texts = [
        "\0".join(header_texts(part, name)).encode("utf-8", "surrogatepass")
        for name in SEARCH_FIELDS
    ]
    fields = [
        envelope(part),
        bodystructure(part),
        bodystructure(part, extensible=False),
        header,
        *texts,
    ]
    if sum(len(field) for field in fields) > MAX_SUMMARY:
        return UNUSABLE
    return record(fields)


def record(fields: list[bytes]) -> bytes:
    """The version 2 record of FIELD_COUNT fields."""
    offsets = [FIRST_FIELD]
    for field in fields:
        offsets.append(offsets[-1] + len(field))
    return VERSION + OFFSETS.pack(*offsets) + b"".join(fields)


def _from_version_1(data: bytes) -> bytes:
    """A version 1 record (each field after its length; the search texts framed the same
    way inside the fifth) as version 2."""
    fields = _unframed(data, 1, 5)
    return record([*fields[: HEADER + 1], *_unframed(fields[HEADER + 1], 0, len(SEARCH_FIELDS))])


def _unframed(data: bytes, at: int, count: int) -> list[bytes]:
    fields = []
    for _ in range(count):
        (size,) = LENGTH.unpack_from(data, at)
        at += LENGTH.size
        fields.append(data[at : at + size])
        at += size
    return fields


def parse_summary(data: bytes) -> Summary | None:
    """The summary, or None where the message must be read (unusable, or unknown version)."""
    version = data[:1]
    if version == VERSION:
        return Summary(data)
    if version == VERSION_1:
        return Summary(_from_version_1(data))
    return None
