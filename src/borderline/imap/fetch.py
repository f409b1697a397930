"""FETCH data items (RFC 3501 6.4.5, 7.4.2): parsing the request, building the response."""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from borderline.imap.mime import Part, bodystructure, envelope, section
from borderline.imap.protocol import Atom, ParseError, Token, flag_list, format_internal_date
from borderline.store import MailStore, MessageInfo
from borderline.vault import ContentKey

SIMPLE = frozenset(
    {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "MODSEQ"}
)
MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
SECTION_ITEM = re.compile(
    r"^(BODY|BODY\.PEEK)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?$",
    re.IGNORECASE,
)
SECTION_SPEC = re.compile(
    r"^(?:[1-9]\d{0,5}(?:\.[1-9]\d{0,5})*)?"
    r"(?:(?:^|\.)(?:HEADER|TEXT|MIME|HEADER\.FIELDS(?:\.NOT)? ?\([^()]*\)))?$",
    re.IGNORECASE,
)
PART_CACHE = 16
PART_CACHE_BYTES = 32 * 1024 * 1024
STRUCTURE_CACHE = 50_000


@dataclass(frozen=True)
class FetchItem:
    kind: str  # a SIMPLE name, or SECTION
    label: str = ""  # how the response names a SECTION item
    spec: str = ""
    partial: tuple[int, int] | None = None
    sets_seen: bool = False

    @property
    def needs_content(self) -> bool:
        return self.kind in ("ENVELOPE", "BODYSTRUCTURE", "BODY", "SECTION")


def parse_items(token: Token) -> list[FetchItem]:
    if isinstance(token, Atom) and token.upper() in MACROS:
        return [FetchItem(name) for name in MACROS[token.upper()]]
    tokens = token if isinstance(token, list) else [token]
    if not tokens:
        raise ParseError("FETCH: empty list of data items")
    return [_item(t) for t in tokens]


def _item(token: Token) -> FetchItem:
    if not isinstance(token, Atom):
        raise ParseError("FETCH: expected a data item")
    name = token.upper()
    if name in SIMPLE:
        return FetchItem(name)
    if name == "RFC822":
        return FetchItem("SECTION", "RFC822", "", None, sets_seen=True)
    if name == "RFC822.HEADER":
        return FetchItem("SECTION", "RFC822.HEADER", "HEADER")
    if name == "RFC822.TEXT":
        return FetchItem("SECTION", "RFC822.TEXT", "TEXT", None, sets_seen=True)
    match = SECTION_ITEM.match(token)
    if match is None:
        raise ParseError(f"FETCH: unknown data item {str(token)!r}")
    command, spec, offset, length = match.groups()
    spec = " ".join(spec.split())
    if not SECTION_SPEC.match(spec):
        raise ParseError(f"FETCH: bad section [{spec}]")
    partial = (int(offset), int(length)) if offset is not None else None
    return FetchItem(
        "SECTION", f"BODY[{spec.upper()}]", spec, partial, sets_seen=command.upper() == "BODY"
    )


class Contents:
    """Decrypted messages for one session: a few parsed trees and every computed
    ENVELOPE/BODYSTRUCTURE, so clients that re-fetch headers do not decrypt again."""

    def __init__(self, store: MailStore, key: ContentKey) -> None:
        self.store = store
        self.key = key
        self._parts: OrderedDict[int, Part] = OrderedDict()
        self._cached_bytes = 0
        self._structures: dict[tuple[int, str], bytes] = {}

    def raw(self, info: MessageInfo) -> bytes:
        cached = self._parts.get(info.blob_id)
        if cached is not None:
            return cached.raw
        return self.key.decrypt(self.store.blob(info.blob_id))

    def part(self, info: MessageInfo) -> Part:
        cached = self._parts.get(info.blob_id)
        if cached is not None:
            self._parts.move_to_end(info.blob_id)
            return cached
        part = Part(self.raw(info))
        self._parts[info.blob_id] = part
        self._cached_bytes += len(part.raw)
        while len(self._parts) > 1 and (
            len(self._parts) > PART_CACHE or self._cached_bytes > PART_CACHE_BYTES
        ):
            self._cached_bytes -= len(self._parts.popitem(last=False)[1].raw)
        return part

    def structure(self, info: MessageInfo, kind: str) -> bytes:
        cache_key = (info.blob_id, kind)
        cached = self._structures.get(cache_key)
        if cached is None:
            part = self.part(info)
            if kind == "ENVELOPE":
                cached = envelope(part)
            else:
                cached = bodystructure(part, extensible=kind == "BODYSTRUCTURE")
            if len(self._structures) >= STRUCTURE_CACHE:
                self._structures.clear()
            self._structures[cache_key] = cached
        return cached


def _literal(data: bytes) -> list[bytes]:
    return [b"{%d}\r\n" % len(data), data]


def fetch_response(
    seq: int, info: MessageInfo, items: list[FetchItem], contents: Contents | None
) -> list[bytes]:
    """One untagged FETCH response as chunks (bodies are not copied into one buffer)."""
    chunks: list[bytes] = [b"* %d FETCH (" % seq]
    raw: bytes | None = None
    for index, item in enumerate(items):
        if index:
            chunks.append(b" ")
        kind = item.kind
        if kind == "UID":
            chunks.append(b"UID %d" % info.uid)
        elif kind == "FLAGS":
            chunks.append(b"FLAGS " + flag_list(info.flags))
        elif kind == "INTERNALDATE":
            chunks.append(
                b'INTERNALDATE "' + format_internal_date(info.internal_date).encode() + b'"'
            )
        elif kind == "RFC822.SIZE":
            chunks.append(b"RFC822.SIZE %d" % info.size)
        elif kind == "MODSEQ":
            chunks.append(b"MODSEQ (%d)" % info.modseq)
        elif contents is None:
            raise ValueError("content items need a released key")
        elif kind == "SECTION":
            if item.spec == "" and raw is None:
                raw = contents.raw(info)
            chunks += _section(item, contents, info, raw)
        else:
            chunks.append(kind.encode() + b" " + contents.structure(info, kind))
    chunks.append(b")\r\n")
    return chunks


def _section(
    item: FetchItem, contents: Contents, info: MessageInfo, raw: bytes | None
) -> list[bytes]:
    data: bytes | None
    if item.spec == "" and raw is not None:
        data = raw
    else:
        try:
            data = section(contents.part(info), item.spec)
        except KeyError:
            data = None
    label = item.label.encode("utf-8", "surrogateescape")
    if item.partial is not None:
        offset, length = item.partial
        label += b"<%d>" % offset
        if data is not None:
            data = data[offset : offset + length]
    if data is None:
        return [label, b" NIL"]
    return [label, b" ", *_literal(data)]
