"""FETCH data items (RFC 3501 6.4.5, 7.4.2): parsing the request, building the response."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from borderline.imap.mime import Part, bodystructure, envelope, locate, section, transfer_decode
from borderline.imap.protocol import Atom, ParseError, Token, flag_list, format_internal_date
from borderline.imap.replies import no
from borderline.imap.summary import (
    COLUMN_FIELD,
    COLUMNS,
    COLUMNS_MIN,
    COLUMNS_OCTETS,
    HEADER_COLUMN,
    SEARCH_COLUMN,
    STRUCTURE_COLUMN,
    Summary,
    column,
    column_values,
    fields_column,
    header_fields,
    parse_summary,
    summary_of,
)
from borderline.store import (
    MAX_RUN_COLUMNS,
    MessageInfo,
    StoredColumn,
    StoredSummaries,
    run_holding,
)
from borderline.vault import ContentKey

if TYPE_CHECKING:
    from borderline.imap.view import MailboxView

T = TypeVar("T")

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
# BINARY (RFC 3516): a part's content with its transfer encoding undone.
BINARY_ITEM = re.compile(
    r"^(BINARY|BINARY\.PEEK|BINARY\.SIZE)\[((?:[1-9]\d{0,5}(?:\.[1-9]\d{0,5})*)?)\]"
    r"(?:<(\d{1,10})\.(\d{1,10})>)?$",
    re.IGNORECASE,
)
IDENTITY_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})
PART_CACHE = 16
PART_CACHE_BYTES = 32 * 1024 * 1024
STRUCTURE_CACHE = 50_000
# The summaries a session keeps (records and columns) are at most this many and about this
# many octets (as stored), of which one read brings at most SUMMARY_READ_OCTETS (and one
# message's, or one run's, beyond it).
SUMMARY_CACHE = 4096
SUMMARY_CACHE_OCTETS = 64 * 1024 * 1024
SUMMARY_READ_OCTETS = 16 * 1024 * 1024
# A run of columns made here: (mailbox id, its (UID, blob id) pairs, columns by name).
NewRun = tuple[int, list[tuple[int, int]], dict[str, bytes]]
HEADER_SETS = 64  # HEADER.FIELDS sets a session keeps the names of (clients use one or two)


@dataclass(frozen=True)
class FetchItem:
    kind: str  # a SIMPLE name, or SECTION
    label: str = ""  # how the response names a SECTION item
    spec: str = ""
    partial: tuple[int, int] | None = None
    sets_seen: bool = False

    @property
    def needs_content(self) -> bool:
        return self.kind in (
            "ENVELOPE",
            "BODYSTRUCTURE",
            "BODY",
            "SECTION",
            "BINARY",
            "BINARY.SIZE",
        )

    @cached_property
    def in_summary(self) -> bool:
        """Whether a message's summary answers it (the top level's header, whole or some
        of its fields, and the structures)."""
        if self.kind == "SECTION":
            return self.spec.upper() == "HEADER" or self.spec.upper().startswith("HEADER.FIELDS")
        return self.kind in ("ENVELOPE", "BODYSTRUCTURE", "BODY")

    @cached_property
    def header_names(self) -> tuple[str, ...] | None:
        """The field names of a top-level HEADER.FIELDS (not .NOT), which a summary answers
        without parsing the header; None for any other item."""
        upper = self.spec.upper()
        if self.kind != "SECTION" or not upper.startswith("HEADER.FIELDS"):
            return None
        if upper.startswith("HEADER.FIELDS.NOT"):
            return None
        return tuple(
            self.spec[self.spec.find("(") + 1 : self.spec.rfind(")")].replace('"', " ").split()
        )


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
    binary = BINARY_ITEM.match(token)
    if binary is not None:
        return _binary_item(*binary.groups())
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


def _binary_item(command: str, spec: str, offset: str | None, length: str | None) -> FetchItem:
    command = command.upper()
    if command == "BINARY.SIZE":
        if offset is not None:
            raise ParseError("FETCH: BINARY.SIZE takes no partial range")
        return FetchItem("BINARY.SIZE", f"BINARY.SIZE[{spec}]", spec)
    partial = (int(offset), int(length)) if offset is not None and length is not None else None
    return FetchItem("BINARY", f"BINARY[{spec}]", spec, partial, sets_seen=command == "BINARY")


class Vanished(Exception):
    """The message's ciphertext is gone: another session expunged it meanwhile."""


class Contents:
    """Decrypted messages for one session: a few parsed trees, the summaries of the messages
    it answers (imap/summary.py: whole records, or the columns of runs of messages), and
    every computed ENVELOPE/BODYSTRUCTURE, so clients that re-fetch headers do not decrypt
    again.

    It never reads the store: the session reads the ciphertexts (`wants` and
    `unloaded` say which) on the store threads and hands them in; decrypting,
    parsing and rendering run on a work thread. A message stored without a summary gets one
    when it is parsed here; `computed` holds them, encrypted, for the session to store, as
    `runs` and `derived` hold the summary columns made here."""

    def __init__(self, key: ContentKey) -> None:
        self.key = key
        self._parts: OrderedDict[int, Part] = OrderedDict()
        self._cached_bytes = 0
        self._structures: dict[tuple[int, str], bytes] = {}
        # By blob id: the summary, None where it is unusable, absent where not loaded yet.
        self._summaries: dict[int, Summary | None] = {}
        self._summary_octets = 0  # of the summaries and columns loaded, as stored
        self._unsummarized: set[int] = set()  # loaded, and the store has none
        # By column name, by blob id: the values of the columns loaded.
        self._columns: dict[str, dict[int, bytes]] = {}
        self._headers: dict[int, Part] = {}  # parsed from the header column
        # HEADER.FIELDS sets asked for: by names their column, by column their names.
        self._set_columns: dict[tuple[str, ...], str] = {}
        self._header_sets: dict[str, tuple[str, ...]] = {}
        self.computed: list[tuple[int, bytes]] = []
        # New runs (mailbox id, (UID, blob id) pairs, columns) and columns of runs.
        self.runs: list[NewRun] = []
        self.derived: list[tuple[int, StoredColumn]] = []

    def trim(self, batch: int, loading: int) -> bool:
        """Make room for a batch's structures and for the summaries it loads (`loading` of
        them: a batch that loaded columns answer needs none), before it, so none it needs
        is dropped; whether the summaries went."""
        if len(self._structures) + 3 * batch > STRUCTURE_CACHE:
            self._structures.clear()
        loaded = max(map(len, self._columns.values()), default=0)
        if not loading or (
            max(len(self._summaries), loaded) + loading <= SUMMARY_CACHE
            and self._summary_octets + SUMMARY_READ_OCTETS <= SUMMARY_CACHE_OCTETS
        ):
            return False
        self._summary_octets = 0
        self._summaries.clear()
        self._unsummarized.clear()
        self._columns.clear()
        self._headers.clear()
        return True

    def needs(self, items: list[FetchItem]) -> list[tuple[str, ...]]:
        """The summary columns these items are answered from (each as its alternatives)."""
        needs: list[tuple[str, ...]] = []
        for item in items:
            columns = self.columns_of(item) if item.in_summary else None
            if columns is not None and columns not in needs:
                needs.append(columns)
        return needs

    def columns_of(self, item: FetchItem) -> tuple[str, ...]:
        """The summary columns that answer `item` (one `in_summary`), preferred first: a
        HEADER.FIELDS set's own answers, else the header block they are found in."""
        if item.kind != "SECTION":
            return (STRUCTURE_COLUMN[item.kind],)
        names = item.header_names
        if names is None:
            return (HEADER_COLUMN,)
        own = self._set_columns.get(names)
        if own is None:
            if len(self._set_columns) >= HEADER_SETS:
                self._set_columns.clear()
                self._header_sets.clear()
            own = self._set_columns[names] = fields_column(names, self.key.name)
            self._header_sets[own] = names
        return (own, HEADER_COLUMN)

    def _covered(self, needs: list[tuple[str, ...]]) -> set[int]:
        """The blob ids for which loaded columns answer every one of `needs`."""
        covered: set[int] = set()
        for at, need in enumerate(needs):
            answered = set().union(*(self._columns.get(name, ()) for name in need))
            covered = answered if at == 0 else covered & answered
        return covered

    def unloaded(
        self, messages: list[tuple[int, int]], needs: list[tuple[str, ...]]
    ) -> list[tuple[int, int]]:
        """Those of these (UID, blob id) pairs whose summaries are not loaded yet, neither
        as records nor as a column of each of `needs`."""
        if not self._summaries and not self._columns:
            return messages
        covered = self._covered(needs)
        loaded = self._summaries
        return [m for m in messages if m[1] not in loaded and m[1] not in covered]

    def to_load(
        self, messages: list[tuple[int, int]], needs: list[tuple[str, ...]]
    ) -> list[tuple[int, int]]:
        """The (UID, blob id) pairs of a batch whose summaries must be read, after making
        room for them (`trim`): all of them if that dropped what was loaded."""
        unloaded = self.unloaded(messages, needs)
        return messages if self.trim(len(messages), len(unloaded)) else unloaded

    def load_summaries(
        self,
        mailbox_id: int,
        messages: list[tuple[int, int]],
        stored: StoredSummaries,
        adjacent: bool,
        needs: list[tuple[str, ...]],
    ) -> None:
        """Decrypt the summaries read for some of `messages` (the mailbox's, as (UID, blob
        id) pairs in UID order; `adjacent` if no message of the mailbox lies between
        them) on a work thread. Those the store has not are computed when their message
        is parsed. Where at least COLUMNS_MIN of them came as records in a row, none in a
        run the store skipped, their columns are made, for the session to store
        (`take_columns`)."""
        self._load_columns(mailbox_id, stored.columns, needs)
        covered = self._covered(needs)
        singles = stored.singles
        for blob_id, record in singles.items():
            self._summaries[blob_id] = parse_summary(self.key.decrypt_summary(record))
            self._summary_octets += len(record)
        for blob_id in {b for _, b in messages} - covered - self._summaries.keys():
            self._summaries[blob_id] = None
            self._unsummarized.add(blob_id)
        if len(singles) < COLUMNS_MIN:  # too few records for a run: no walk in order
            return
        run: list[tuple[int, int, Summary]] = []
        longest, octets = run, 0
        taken = stored.skipped  # in a run already: no new one may take these
        firsts = [first for first, _ in taken]
        for uid, blob_id in messages:
            summary = self._summaries[blob_id] if blob_id in singles else None
            if taken and run_holding(taken, firsts, uid) is not None:
                summary = None
            if summary is None or octets + len(summary.data) > COLUMNS_OCTETS:
                run, octets = [], 0
            if summary is not None:
                run.append((uid, blob_id, summary))
                octets += len(summary.data)
                if len(run) > len(longest):
                    longest = run
        if adjacent and len(longest) >= COLUMNS_MIN:
            self._make_run(mailbox_id, longest, needs)

    def _load_columns(
        self, mailbox_id: int, columns: list[StoredColumn], needs: list[tuple[str, ...]]
    ) -> None:
        """Decrypt these columns; where a run came with its header column instead of the
        answers of a HEADER.FIELDS set it needs, make those answers a column of the run."""
        answered = {(stored.field, stored.first_uid) for stored in columns}
        for stored in columns:
            values = column_values(self.key.decrypt_column(mailbox_id, stored.field, stored.data))
            self._summary_octets += len(stored.data)
            self._columns.setdefault(stored.field, {}).update(values)
            if stored.field != HEADER_COLUMN:
                continue
            for name in self._sets(needs):
                if (name, stored.first_uid) in answered:
                    continue
                answers = [
                    header_fields(block, self._header_sets[name]) for block in values.values()
                ]
                self._columns.setdefault(name, {}).update(zip(values, answers, strict=True))
                made = self.key.encrypt_column(mailbox_id, name, column(list(values), answers))
                self._summary_octets += len(made)
                self.derived.append(
                    (mailbox_id, StoredColumn(name, stored.first_uid, stored.last_uid, made))
                )

    def _sets(self, needs: list[tuple[str, ...]]) -> list[str]:
        """The columns of the HEADER.FIELDS sets among `needs` that a run may hold (a run
        has room for MAX_RUN_COLUMNS, its fields' included): the others are answered
        from the header block, and not stored."""
        sets = [need[0] for need in needs if need[0] in self._header_sets]
        return sets[: MAX_RUN_COLUMNS - len(COLUMNS)]

    def _make_run(
        self,
        mailbox_id: int,
        run: list[tuple[int, int, Summary]],
        needs: list[tuple[str, ...]],
    ) -> None:
        """The columns of a run of messages loaded as records: every field of theirs, and
        the answers of the HEADER.FIELDS sets asked for."""
        blob_ids = [blob_id for _, blob_id, _ in run]
        summaries = [summary for _, _, summary in run]
        made = {
            name: self.key.encrypt_column(
                mailbox_id, name, column(blob_ids, [s.field(i) for s in summaries])
            )
            for i, name in enumerate(COLUMNS)
        }
        for name in self._sets(needs):
            answers = [header_fields(s.header_block, self._header_sets[name]) for s in summaries]
            made[name] = self.key.encrypt_column(mailbox_id, name, column(blob_ids, answers))
        self.runs.append((mailbox_id, [(uid, blob_id) for uid, blob_id, _ in run], made))

    def _field(self, blob_id: int, name: str) -> bytes | None:
        """A field of the message's summary, from a loaded column or its record."""
        values = self._columns.get(name)
        if values is not None:
            value = values.get(blob_id)
            if value is not None:
                return value
        summary = self._summaries.get(blob_id)
        return None if summary is None else summary.field(COLUMN_FIELD[name])

    def header_of(self, blob_id: int) -> Part | None:
        """The message's top-level header from its summary, if one is loaded."""
        summary = self._summaries.get(blob_id)
        if summary is not None:
            return summary.header
        header = self._headers.get(blob_id)
        if header is None:
            block = self._field(blob_id, HEADER_COLUMN)
            if block is None:
                return None
            header = self._headers[blob_id] = Part(block)
        return header

    def search_text(self, blob_id: int, name: str) -> str | None:
        """imap/search.py's header_texts of a SEARCH_FIELDS field, joined by NUL (which no
        IMAP string holds), from the summary; None for another field or without one."""
        column_name = SEARCH_COLUMN.get(name)
        value = None if column_name is None else self._field(blob_id, column_name)
        return None if value is None else value.decode("utf-8", "surrogatepass")

    def answer(self, blob_id: int, item: FetchItem) -> bytes | None:
        """What the message's summary answers for `item` (one `in_summary`): the structure,
        or the section's octets; None if no summary of it is loaded."""
        if item.kind != "SECTION":
            return self._field(blob_id, self.columns_of(item)[0])
        names = item.header_names
        if names is not None:
            answers = self._columns.get(self.columns_of(item)[0])
            if answers is not None:
                value = answers.get(blob_id)
                if value is not None:
                    return value
            block = self._field(blob_id, HEADER_COLUMN)
            return None if block is None else header_fields(block, names)
        header = self.header_of(blob_id)
        return None if header is None else section(header, item.spec)

    def _answers(self, item: FetchItem, blob_ids: Sequence[int]) -> list[bytes] | None:
        """`answer` for each of these messages (from the item's column at once where it is
        loaded); None if one of them has no summary loaded."""
        first = self.columns_of(item)[0]
        # The item's first column holds its answers, but the header block's: a header
        # section other than HEADER.FIELDS is cut from it.
        values = None if first == HEADER_COLUMN else self._columns.get(first)
        found: list[bytes | None] = (
            [None] * len(blob_ids) if values is None else list(map(values.get, blob_ids))
        )
        for at, value in enumerate(found):
            if value is None:
                value = self.answer(blob_ids[at], item)
                if value is None:
                    return None
                found[at] = value
        return cast(list[bytes], found)

    def summary_responses(
        self,
        view: MailboxView,
        indexes: list[int],
        items: list[FetchItem],
        stored: StoredSummaries,
        needs: list[tuple[str, ...]],
    ) -> bytes | None:
        """Load the summaries read for the view's messages at `indexes`, then render their
        FETCH responses from the summaries and the view's columns (work thread); None,
        with nothing rendered, if one of these messages has no summary."""
        self.load_summaries(view.id, view.pairs(indexes), stored, view.adjacent(indexes), needs)
        blob_ids = _pick(view.blob_ids, indexes)
        answers: dict[FetchItem, list[bytes]] = {}
        for item in items:
            if item.in_summary and item not in answers:
                values = self._answers(item, blob_ids)
                if values is None:
                    return None
                answers[item] = values
        return column_responses(view, indexes, items, answers)

    @staticmethod
    def reads_every_message(items: list[FetchItem]) -> bool:
        """Whether `wants` holds for every message, whatever is loaded: one of these items
        is a section no summary answers (BODY[], TEXT, a part) or BINARY."""
        return any(
            item.kind in ("SECTION", "BINARY", "BINARY.SIZE") and not item.in_summary
            for item in items
        )

    def wants(self, info: MessageInfo, items: list[FetchItem]) -> bool:
        """Whether answering these items may need the message's ciphertext (a parsed tree
        in the cache may be evicted while the batch is answered; structures are not)."""
        if all(
            not item.needs_content or (item.in_summary and self._answerable(info.blob_id, item))
            for item in items
        ):
            return False
        return any(
            item.kind == "SECTION"
            or (item.needs_content and (info.blob_id, item.kind) not in self._structures)
            for item in items
        )

    def _answerable(self, blob_id: int, item: FetchItem) -> bool:
        if self._summaries.get(blob_id) is not None:
            return True
        return any(blob_id in self._columns.get(name, ()) for name in self.columns_of(item))

    def raw(self, info: MessageInfo, blobs: Mapping[int, bytes]) -> bytes:
        cached = self._parts.get(info.blob_id)
        if cached is not None:
            return cached.raw
        blob = blobs.get(info.blob_id)
        if blob is None:
            raise Vanished(info.uid)
        return self.key.decrypt(blob)

    def part(self, info: MessageInfo, blobs: Mapping[int, bytes]) -> Part:
        cached = self._parts.get(info.blob_id)
        if cached is not None:
            self._parts.move_to_end(info.blob_id)
            return cached
        part = Part(self.raw(info, blobs))
        if info.blob_id in self._unsummarized:
            self._unsummarized.discard(info.blob_id)
            summary = summary_of(part)
            encrypted = self.key.encrypt_summary(summary)
            self.computed.append((info.blob_id, encrypted))
            if self._summary_octets + len(encrypted) <= SUMMARY_CACHE_OCTETS:
                self._summaries[info.blob_id] = parse_summary(summary)
                self._summary_octets += len(encrypted)
            else:  # not kept: the next read of it reads the one stored now
                del self._summaries[info.blob_id]
        self._parts[info.blob_id] = part
        self._cached_bytes += len(part.raw)
        while len(self._parts) > 1 and (
            len(self._parts) > PART_CACHE or self._cached_bytes > PART_CACHE_BYTES
        ):
            self._cached_bytes -= len(self._parts.popitem(last=False)[1].raw)
        return part

    def header(self, info: MessageInfo, blobs: Mapping[int, bytes]) -> Part:
        """The message's top-level header, from its summary where it has one."""
        header = self.header_of(info.blob_id)
        return self.part(info, blobs) if header is None else header

    def structure(self, info: MessageInfo, kind: str, blobs: Mapping[int, bytes]) -> bytes:
        cache_key = (info.blob_id, kind)
        cached = self._structures.get(cache_key)
        if cached is None:
            cached = self._field(info.blob_id, STRUCTURE_COLUMN[kind])
            if cached is None:
                part = self.part(info, blobs)
                if kind == "ENVELOPE":
                    cached = envelope(part)
                else:
                    cached = bodystructure(part, extensible=kind == "BODYSTRUCTURE")
            self._structures[cache_key] = cached
        return cached

    def take_computed(self) -> list[tuple[int, bytes]]:
        computed, self.computed = self.computed, []
        return computed

    def take_columns(self) -> tuple[list[NewRun], list[tuple[int, StoredColumn]]]:
        """The summary columns made since the last call: of new runs, and of runs stored."""
        runs, self.runs = self.runs, []
        derived, self.derived = self.derived, []
        return runs, derived

    def responses(
        self,
        messages: list[tuple[int, MessageInfo]],
        items: list[FetchItem],
        blobs: Mapping[int, bytes],
    ) -> list[list[bytes] | None]:
        """FETCH responses for a batch of messages (on a work thread); None for a message
        that vanished."""
        out: list[list[bytes] | None] = []
        for seq, info in messages:
            try:
                out.append(fetch_response(seq, info, items, self, blobs))
            except Vanished:
                out.append(None)
        return out


# The items a FETCH answers from the view alone, each with its one value.
METADATA = {
    "UID": b"UID %d",
    "FLAGS": b"FLAGS %s",
    "MODSEQ": b"MODSEQ (%d)",
    "RFC822.SIZE": b"RFC822.SIZE %d",
    "INTERNALDATE": b'INTERNALDATE "%s"',
}


def answered_by_columns(items: list[FetchItem]) -> bool:
    """Whether `column_responses` answers these items: metadata, and what summaries hold."""
    return all(item.kind in METADATA or item.in_summary for item in items)


def column_responses(
    view: MailboxView,
    indexes: list[int],
    items: list[FetchItem],
    answers: Mapping[FetchItem, list[bytes]] | None = None,
) -> bytes:
    """The FETCH responses of the view's messages at `indexes` from its columns and, for
    the items a summary answers, their `answers` (Contents.answer of each message): no
    object per message, and each flag set or date rendered once."""
    template = b"* %d FETCH (" + b" ".join(_fragment(item) for item in items) + b")\r\n"
    columns = [
        _metadata(view, item.kind, indexes)
        if item.kind in METADATA
        else _summarized(item, (answers or {})[item])
        for item in items
    ]
    return b"".join(
        [template % row for row in zip([i + 1 for i in indexes], *columns, strict=True)]
    )


def _fragment(item: FetchItem) -> bytes:
    if item.kind in METADATA:
        return METADATA[item.kind]
    if item.kind != "SECTION":
        return item.kind.encode() + b" %b"
    label = item.label.encode("utf-8", "surrogateescape")
    if item.partial is not None:
        label += b"<%d>" % item.partial[0]
    return label.replace(b"%", b"%%") + b" %b"


def _summarized(item: FetchItem, values: list[bytes]) -> list[bytes]:
    """The item's values as the response holds them (a section as a literal)."""
    if item.kind != "SECTION":
        return values
    if item.partial is not None:
        offset, length = item.partial
        values = [value[offset : offset + length] for value in values]
    return [b"{%d}\r\n%b" % (len(value), value) for value in values]


def _metadata(view: MailboxView, kind: str, indexes: list[int]) -> Sequence[Any]:
    if kind == "UID":
        return _pick(view.uids, indexes)
    if kind == "MODSEQ":
        return _pick(view.modseqs, indexes)
    if kind == "RFC822.SIZE":
        return _pick(view.sizes, indexes)
    if kind == "FLAGS":
        flags = _pick(view.flags, indexes)
        rendered = {f: flag_list(f) for f in set(flags)}
        return [rendered[f] for f in flags]
    dates = _pick(view.internal_dates, indexes)
    formatted = {d: format_internal_date(d).encode() for d in set(dates)}
    return [formatted[d] for d in dates]


def _pick(column: Sequence[T], indexes: list[int]) -> Sequence[T]:
    """column[i] for each of `indexes` (ascending), as one slice when they are a run."""
    if indexes and indexes[-1] - indexes[0] == len(indexes) - 1:
        return column[indexes[0] : indexes[-1] + 1]
    return [column[i] for i in indexes]


@lru_cache(maxsize=1024)
def _flags_item(flags: frozenset[str]) -> bytes:
    """A mailbox's messages share a few flag sets (the store hands out one set for each)."""
    return b"FLAGS " + flag_list(flags)


def _literal(data: bytes) -> list[bytes]:
    return [b"{%d}\r\n" % len(data), data]


def fetch_response(
    seq: int,
    info: MessageInfo,
    items: list[FetchItem],
    contents: Contents | None,
    blobs: Mapping[int, bytes],
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
            chunks.append(_flags_item(info.flags))
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
                raw = contents.raw(info, blobs)
            chunks += _section(item, contents, info, raw, blobs)
        elif kind in ("BINARY", "BINARY.SIZE"):
            chunks += _binary(item, contents.part(info, blobs))
        else:
            chunks.append(kind.encode() + b" " + contents.structure(info, kind, blobs))
    chunks.append(b")\r\n")
    return chunks


def _section(
    item: FetchItem,
    contents: Contents,
    info: MessageInfo,
    raw: bytes | None,
    blobs: Mapping[int, bytes],
) -> list[bytes]:
    data: bytes | None
    if item.spec == "" and raw is not None:
        data = raw
    else:
        try:
            data = contents.answer(info.blob_id, item) if item.in_summary else None
            if data is None:
                data = section(contents.part(info, blobs), item.spec)
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


def _binary(item: FetchItem, part: Part) -> list[bytes]:
    """BINARY[...] and BINARY.SIZE[...] (RFC 3516): NIL for a part that is not there,
    NO [UNKNOWN-CTE] for an encoding this server cannot undo; a literal8 when the content
    holds a NUL."""
    label = item.label.encode()
    try:
        node = locate(part, [int(n) for n in item.spec.split(".")] if item.spec else [])
    except KeyError:
        return [label, b" NIL"]
    if not item.spec:
        data = node.raw
    elif node.children or node.message is not None:
        data = node.body
    else:
        encoding = node.transfer_encoding
        if encoding not in IDENTITY_ENCODINGS and encoding not in ("base64", "quoted-printable"):
            raise no(f"[UNKNOWN-CTE] cannot decode {encoding[:40]!r} of part {item.spec}")
        data = transfer_decode(node.body, encoding)
    if item.kind == "BINARY.SIZE":
        return [label + b" %d" % len(data)]
    if item.partial is not None:
        offset, length = item.partial
        label += b"<%d>" % offset
        data = data[offset : offset + length]
    return [label, b" ~" if b"\0" in data else b" ", *_literal(data)]
