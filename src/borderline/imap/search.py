"""SEARCH keys (RFC 3501 6.4.4) parsed into a predicate tree over one message at a time."""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from borderline.imap.mime import Part, addresses, decode_chunks, transfer_decode, words_text
from borderline.imap.protocol import (
    Args,
    Atom,
    ParseError,
    SequenceSet,
    Token,
    as_text,
    is_number,
    parse_date,
    utc_day,
)


class Candidate(Protocol):
    """One message as a search sees it; `part` parses the content only when a key needs it,
    `header` gives the top-level header (from the message's summary where it has one)."""

    @property
    def seq(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> frozenset[str]: ...
    @property
    def size(self) -> int: ...
    @property
    def internal_date(self) -> float: ...
    @property
    def modseq(self) -> int: ...
    @property
    def largest_seq(self) -> int: ...
    @property
    def largest_uid(self) -> int: ...
    def part(self) -> Part: ...
    def header(self) -> Part: ...
    def texts(self, name: str) -> str | None:
        """A SEARCH_FIELDS field's header_texts joined by NUL, from the summary; None if
        the message has none."""


Predicate = Callable[[Candidate], bool]

FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "OLD": ("\\Recent", False),
    "RECENT": ("\\Recent", True),
}
ADDRESS_KEYS = ("BCC", "CC", "FROM", "TO", "SUBJECT")
ADDRESS_FIELDS = frozenset({"bcc", "cc", "from", "to", "sender", "reply-to"})
SEARCH_FIELDS = ("bcc", "cc", "from", "to", "subject")  # summaries keep their header_texts
# NOT, OR and parentheses nest keys; each level is a few stack frames when parsing and when
# matching, so the depth is bounded (a chain of 50 ORs is the deepest real clients send).
MAX_SEARCH_DEPTH = 100


def header_texts(part: Part, name: str) -> Iterator[str]:
    """What a search of the header looks in, casefolded: each of its fields (it may repeat)
    as decoded text and, for an address field, `Name <mailbox@host>` of its addresses (so
    `FROM a@b` finds `<a (comment) @ b>`, as Dovecot does)."""
    for raw in part.raw_values(name):
        yield words_text(raw).casefold()
    if name in ADDRESS_FIELDS:
        for address in addresses(part, name):
            yield address.searchable().casefold()


def header_matches(part: Part, name: str, folded: str) -> bool:
    """Whether the header's texts contain the casefolded needle."""
    return any(folded in text for text in header_texts(part, name))


def _contains(chunks: Iterator[str], needle: str) -> bool:
    """Whether casefolded text, read in pieces, contains the casefolded needle."""
    tail = ""
    keep = len(needle) - 1
    for chunk in chunks:
        text = tail + chunk.casefold()
        if needle in text:
            return True
        tail = text[-keep:] if keep else ""
    return False


def body_contains(part: Part, needle: str) -> bool:
    """Whether any leaf part's text, transfer- and charset-decoded, contains the needle."""
    if part.message is not None:
        return body_contains(part.message, needle)
    if part.children:
        return any(body_contains(child, needle) for child in part.children)
    data = transfer_decode(part.body, part.transfer_encoding)
    return _contains(decode_chunks(data, part.charset), needle)


def text_contains(part: Part, needle: str) -> bool:
    """SEARCH TEXT: the header (as UTF-8) or the body."""
    return _contains(decode_chunks(part.header), needle) or body_contains(part, needle)


class BadCharset(ParseError):
    """Answered with NO [BADCHARSET] rather than BAD (RFC 3501 6.4.4)."""


class SearchParser:
    def __init__(self, args: Args, saved: Sequence[int] = (), depth: int = 0) -> None:
        self.args = args
        # The UIDs `$` names (SEARCHRES, RFC 5182): what the last SEARCH RETURN (SAVE) found.
        self.saved = saved
        self.depth = depth
        self.needs_content = False
        # What of the messages' summaries the keys read: SEARCH_FIELDS' texts by field
        # name, and "header" for the header block.
        self.summary_reads: set[str] = set()
        self.uses_modseq = False
        self.predicate: Predicate = lambda c: True

    def parse_all(self) -> Predicate:
        first = self.args.peek()
        if isinstance(first, Atom) and first.upper() == "CHARSET":
            self.args.next("CHARSET")
            charset = self.args.astring("charset").upper()
            if charset not in ("UTF-8", "US-ASCII"):
                raise BadCharset(charset)
        keys = [self.key()]
        while self.args.more():
            keys.append(self.key())
        return _all(keys)

    def key(self) -> Predicate:
        if self.depth >= MAX_SEARCH_DEPTH:
            raise ParseError(f"SEARCH: keys nested more than {MAX_SEARCH_DEPTH} deep")
        self.depth += 1
        try:
            return self._key()
        finally:
            self.depth -= 1

    def _key(self) -> Predicate:
        token = self.args.next("search key")
        if isinstance(token, list):
            nested = SearchParser(Args(token, "SEARCH"), self.saved, self.depth)
            predicate = nested.parse_all()
            self.needs_content |= nested.needs_content
            self.summary_reads |= nested.summary_reads
            self.uses_modseq |= nested.uses_modseq
            return predicate
        if not isinstance(token, Atom):
            raise ParseError("SEARCH: expected a search key")
        name = token.upper()
        if name == "ALL":
            return lambda c: True
        if name == "NEW":  # RFC 3501 6.4.4: RECENT UNSEEN
            return lambda c: "\\Recent" in c.flags and "\\Seen" not in c.flags
        if name in FLAG_KEYS:
            flag, present = FLAG_KEYS[name]
            return lambda c: (flag in c.flags) == present
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword = self.args.astring("keyword")
            present = name == "KEYWORD"
            return lambda c: (keyword in c.flags) == present
        if name == "NOT":
            inner = self.key()
            return lambda c: not inner(c)
        if name == "OR":
            left, right = self.key(), self.key()
            return lambda c: left(c) or right(c)
        if name in ("LARGER", "SMALLER"):
            size = self._number()
            if name == "LARGER":
                return lambda c: c.size > size
            return lambda c: c.size < size
        if name in ("BEFORE", "ON", "SINCE"):
            day = parse_date(self.args.astring("date"))
            return _compare_day(name, day, lambda c: utc_day(c.internal_date))
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            day = parse_date(self.args.astring("date"))
            self.needs_content = True
            self.summary_reads.add("header")
            return _compare_day(name[4:], day, _sent_day)
        if name == "MODSEQ":  # RFC 7162 3.1.5; the optional entry name and type are ignored
            if isinstance(self.args.peek(), bytes):
                self.args.next("entry name")
                self.args.atom("entry type")
            modseq = self._number()
            self.uses_modseq = True
            return lambda c: c.modseq >= modseq
        if name == "UID":
            text = self.args.atom("UID set")
            if text == "$":
                return self._saved()
            uids = SequenceSet.parse(text)
            return lambda c: uids.contains(c.uid, c.largest_uid)
        if name == "$":
            return self._saved()
        if name in ADDRESS_KEYS:
            return self._header(name.lower(), self.args.astring("search string"))
        if name == "HEADER":
            field = self.args.astring("header field name")
            return self._header(field, self.args.astring("search string"))
        if name in ("BODY", "TEXT"):
            needle = self.args.astring("search string").casefold()
            self.needs_content = True
            if name == "BODY":
                return lambda c: body_contains(c.part(), needle)
            return lambda c: text_contains(c.part(), needle)
        if is_number(name[:1]) or name[:1] == "*":
            numbers = SequenceSet.parse(name)
            return lambda c: numbers.contains(c.seq, c.largest_seq)
        raise ParseError(f"SEARCH: unknown search key {as_text(token, '')!r}")

    def _saved(self) -> Predicate:
        """`$` and `UID $`: the same messages, whatever numbers the saving SEARCH answered."""
        saved = frozenset(self.saved)
        return lambda c: c.uid in saved

    def _number(self) -> int:
        text = self.args.atom("number")
        if not is_number(text):
            raise ParseError(f"SEARCH: {text!r} is not a number")
        return int(text)

    def _header(self, field: str, needle: str) -> Predicate:
        self.needs_content = True
        folded = needle.casefold()
        name = field.lower()
        texts = folded and "\0" not in folded and name in SEARCH_FIELDS
        self.summary_reads.add(name if texts else "header")
        if not folded:
            return lambda c: c.header().raw_value(field) is not None
        return lambda c: _header_matches(c, name, folded)


def _header_matches(candidate: Candidate, name: str, folded: str) -> bool:
    texts = None if "\0" in folded else candidate.texts(name)
    if texts is None:
        return header_matches(candidate.header(), name, folded)
    return folded in texts


def _all(keys: list[Predicate]) -> Predicate:
    if len(keys) == 1:
        return keys[0]
    return lambda c: all(key(c) for key in keys)


def _sent_day(candidate: Candidate) -> tuple[int, int, int]:
    raw = candidate.header().raw_value("date")
    parsed = None
    if raw is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(raw.decode("ascii", "replace"))
        except (TypeError, ValueError, IndexError):
            parsed = None
    if parsed is None:
        return utc_day(candidate.internal_date)
    return parsed.year, parsed.month, parsed.day


def _compare_day(
    kind: str, day: tuple[int, int, int], of: Callable[[Candidate], tuple[int, int, int]]
) -> Predicate:
    if kind == "BEFORE":
        return lambda c: of(c) < day
    if kind == "ON":
        return lambda c: of(c) == day
    return lambda c: of(c) >= day


def parse_search(tokens: list[Token], saved: Sequence[int] = ()) -> SearchParser:
    """The parsed keys: `.predicate`, whether they read message content (which needs a key
    release), what of the summaries they read (which answer header keys) and whether they
    use MODSEQ (CONDSTORE); `$` among them names the UIDs `saved`."""
    parser = SearchParser(Args(tokens, "SEARCH"), saved)
    parser.predicate = parser.parse_all()
    return parser
