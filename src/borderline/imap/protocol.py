"""IMAP wire syntax (RFC 3501 section 9): command tokens, sequence sets, strings, dates.

Hand-written because no maintained library parses IMAP *commands* (client libraries parse
responses); the grammar is small and the RFC is the reference.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Characters that end an atom. '*', '%' and ']' are allowed so that sequence sets, LIST
# patterns and flag names parse as atoms; '[' opens a section that may hold spaces.
ATOM_END = frozenset(b' ()"{\r\n')
LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}\r?\n\Z")
# Parenthesized lists nest at most this deep: real commands use three levels, and every level
# is a stack frame here (deeper input used to end in RecursionError).
MAX_NESTING = 100


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() then refuses."""
    return text.isascii() and text.isdigit()


class ParseError(Exception):
    """The client sent something that is not IMAP; the text goes into a BAD response."""


class Atom(str):
    """An unquoted token: keywords, flags, sequence sets, NIL."""


class Literal(bytes):
    """A string sent as a literal: APPEND tells its message apart from a quoted date-time."""


Token = Atom | bytes | list["Token"]


class Tokenizer:
    """Splits one complete command (with its literals inlined, as on the wire) into tokens."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def tokens(self) -> list[Token]:
        return self._sequence(depth=0)

    def _sequence(self, depth: int) -> list[Token]:
        if depth > MAX_NESTING:
            raise ParseError(f"parentheses nested more than {MAX_NESTING} deep")
        top = depth == 0
        items: list[Token] = []
        data = self.data
        while True:
            if self.pos >= len(data) or data[self.pos] in b"\r\n":
                if not top:
                    raise ParseError("unterminated parenthesized list")
                return items
            char = data[self.pos]
            if char == 0x20:
                self.pos += 1
                continue
            if char == 0x28:  # (
                self.pos += 1
                items.append(self._sequence(depth + 1))
            elif char == 0x29:  # )
                if top:
                    raise ParseError("unexpected ')'")
                self.pos += 1
                return items
            elif char == 0x22:  # "
                items.append(self._quoted())
            elif char == 0x7B or (char == 0x7E and data[self.pos + 1 : self.pos + 2] == b"{"):
                items.append(self._literal())
            else:
                items.append(self._atom())

    def _quoted(self) -> bytes:
        data = self.data
        out = bytearray()
        pos = self.pos + 1
        while pos < len(data):
            char = data[pos]
            if char == 0x5C:  # backslash
                if pos + 1 >= len(data) or data[pos + 1] not in b'"\\':
                    raise ParseError("bad escape in quoted string")
                out.append(data[pos + 1])
                pos += 2
            elif char == 0x22:
                self.pos = pos + 1
                return bytes(out)
            elif char in b"\r\n":
                break
            else:
                out.append(char)
                pos += 1
        raise ParseError("unterminated quoted string")

    def _literal(self) -> bytes:
        data = self.data
        if data[self.pos] == 0x7E:  # literal8 (RFC 3516): same framing
            self.pos += 1
        match = re.compile(rb"\{(\d{1,20})\+?\}\r\n").match(data, self.pos)
        if match is None:
            raise ParseError("bad literal syntax")
        size = int(match[1])
        start = match.end()
        if start + size > len(data):
            raise ParseError("literal is shorter than announced")
        self.pos = start + size
        return Literal(data[start : self.pos])

    def _atom(self) -> Atom:
        data = self.data
        start = pos = self.pos
        while pos < len(data) and data[pos] not in ATOM_END:
            if data[pos] == 0x5B:  # [ ... ] may contain spaces and parentheses
                end = data.find(b"]", pos, _line_end(data, pos))
                # Without a "]" it is a plain atom character (a mailbox name may have one).
                pos = pos + 1 if end < 0 else end + 1
            elif data[pos] < 0x20 or data[pos] == 0x7F:
                raise ParseError("control character in command")
            else:
                pos += 1
        if pos == start:
            raise ParseError(f"unexpected {chr(data[pos])!r}")
        self.pos = pos
        try:
            return Atom(data[start:pos].decode("utf-8"))
        except UnicodeDecodeError:
            raise ParseError("an atom is not valid UTF-8") from None


def _line_end(data: bytes, pos: int) -> int:
    ends = [i for i in (data.find(b"\r", pos), data.find(b"\n", pos)) if i >= 0]
    return min(ends, default=len(data))


def tokenize(data: bytes) -> list[Token]:
    return Tokenizer(data).tokens()


class Args:
    """A cursor over a command's arguments with typed accessors that raise ParseError."""

    def __init__(self, tokens: list[Token], what: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.what = what

    def more(self) -> bool:
        return self.pos < len(self.tokens)

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.more() else None

    def next(self, expected: str) -> Token:
        if not self.more():
            raise ParseError(f"{self.what}: missing {expected}")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def atom(self, expected: str) -> Atom:
        token = self.next(expected)
        if not isinstance(token, Atom):
            raise ParseError(f"{self.what}: expected {expected}")
        return token

    def astring(self, expected: str) -> str:
        return as_text(self.next(expected), f"{self.what}: expected {expected}")

    def raw(self, expected: str) -> bytes:
        token = self.next(expected)
        if isinstance(token, list):
            raise ParseError(f"{self.what}: expected {expected}")
        return token.encode("utf-8") if isinstance(token, str) else token

    def list(self, expected: str) -> list[Token]:
        token = self.next(expected)
        if not isinstance(token, list):
            raise ParseError(f"{self.what}: expected a parenthesized {expected}")
        return token

    def end(self) -> None:
        if self.more():
            raise ParseError(f"{self.what}: unexpected extra arguments")


def as_text(token: Token, error: str) -> str:
    if isinstance(token, list):
        raise ParseError(error)
    if isinstance(token, bytes):
        try:
            return token.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"{error}: the string is not valid UTF-8") from None
    return str(token)


# Sequence sets (RFC 3501 section 9, sequence-set)


@dataclass(frozen=True)
class SequenceSet:
    """Ranges with '*' kept symbolic (None) until the mailbox size is known."""

    ranges: tuple[tuple[int | None, int | None], ...]

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        ranges: list[tuple[int | None, int | None]] = []
        for item in text.split(","):
            low, sep, high = item.partition(":")
            first = _seq_number(low)
            ranges.append((first, _seq_number(high) if sep else first))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, numbers: list[int]) -> SequenceSet:
        """The set of these ascending numbers (none: an empty set, which matches nothing)."""
        return cls(tuple(_runs(numbers)))

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Concrete (low, high) pairs; '*' is the largest number in use (RFC 3501 6.4.8)."""
        out = []
        for low, high in self.ranges:
            a = largest if low is None else low
            b = largest if high is None else high
            out.append((min(a, b), max(a, b)))
        return out

    def contains(self, number: int, largest: int) -> bool:
        return any(low <= number <= high for low, high in self.resolve(largest))


def _seq_number(text: str) -> int | None:
    if text == "*":
        return None
    if not is_number(text) or text.startswith("0") or len(text) > 10:
        raise ParseError(f"bad sequence number {text!r}")
    number = int(text)
    if number > 0xFFFFFFFF:
        raise ParseError(f"sequence number {text} is too large")
    return number


def uid_set_text(uids: list[int]) -> str:
    """Compact a sorted UID list into a sequence set ("1:3,7") for UIDPLUS responses."""
    parts: list[str] = []
    for start, end in _runs(uids):
        parts.append(str(start) if start == end else f"{start}:{end}")
    return ",".join(parts)


def _runs(numbers: list[int]) -> Iterator[tuple[int, int]]:
    if not numbers:
        return
    start = prev = numbers[0]
    for number in numbers[1:]:
        if number != prev + 1:
            yield start, prev
            start = number
        prev = number
    yield start, prev


# Output strings


def quoted_or_literal(value: bytes | str, utf8: bool = False) -> bytes:
    """A string as IMAP output: quoted when safe, otherwise a literal. With UTF8=ACCEPT
    enabled, quoted strings may carry UTF-8 (RFC 6855)."""
    data = _octets(value) if isinstance(value, str) else value
    if (
        len(data) < 1024
        and not any(c in data for c in b"\r\n\0")
        and (data.isascii() or (utf8 and _is_utf8(data)))
    ):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def _octets(text: str) -> bytes:
    """UTF-8, with octets that arrived undecodable (surrogate escapes) restored as they were."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no decoder of ours produces
        return text.encode("utf-8", "replace")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def nstring(value: bytes | str | None) -> bytes:
    return b"NIL" if value is None else quoted_or_literal(value)


def flag_list(flags: frozenset[str] | set[str]) -> bytes:
    return b"(" + " ".join(sorted(flags)).encode("utf-8", "surrogateescape") + b")"


# Dates (RFC 3501 date-time and date)


def format_internal_date(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return f"{moment.day:02d}-{MONTHS[moment.month - 1]}-{moment.year} {moment:%H:%M:%S} +0000"


DATE_TIME = re.compile(
    r"^\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$"
)


def parse_date_time(text: str) -> float:
    match = DATE_TIME.match(text)
    if match is None:
        raise ParseError(f"bad date-time {text!r}")
    day, month, year, hh, mm, ss, sign, zh, zm = match.groups()
    try:
        offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == "-" else 1)
        moment = datetime(
            int(year),
            _month(month),
            int(day),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=timezone(offset),
        )
    except ValueError as exc:
        raise ParseError(f"bad date-time {text!r}") from exc
    return moment.timestamp()


def parse_date(text: str) -> tuple[int, int, int]:
    """A search date (d-Mon-yyyy) as (year, month, day)."""
    day, _, rest = text.partition("-")
    month, _, year = rest.partition("-")
    if not (is_number(day) and is_number(year) and len(year) == 4):
        raise ParseError(f"bad date {text!r}")
    try:
        datetime(int(year), _month(month), int(day))
    except ValueError as exc:
        raise ParseError(f"bad date {text!r}") from exc
    return int(year), _month(month), int(day)


def _month(name: str) -> int:
    try:
        return [m.lower() for m in MONTHS].index(name.lower()) + 1
    except ValueError:
        raise ParseError(f"bad month {name!r}") from None


def utc_day(timestamp: float) -> tuple[int, int, int]:
    moment = time.gmtime(timestamp)
    return moment.tm_year, moment.tm_mon, moment.tm_mday


# Mailbox names: modified UTF-7 (RFC 3501 5.1.3) unless the client enabled UTF8=ACCEPT.


def encode_mailbox(name: str) -> bytes:
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.extend(b"&" + base64.b64encode(utf16).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.extend(b"&-" if char == "&" else char.encode())
        else:
            pending.append(char)
    flush()
    return bytes(out)


def decode_mailbox(name: str) -> str:
    if "&" not in name:
        return name
    out: list[str] = []
    pos = 0
    while pos < len(name):
        amp = name.find("&", pos)
        if amp < 0:
            out.append(name[pos:])
            break
        out.append(name[pos:amp])
        end = name.find("-", amp)
        if end < 0:
            raise ParseError(f"bad modified UTF-7 in mailbox name {name!r}")
        chunk = name[amp + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                out.append(base64.b64decode(b64 + "=" * (-len(b64) % 4)).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ParseError(f"bad modified UTF-7 in mailbox name {name!r}") from exc
        pos = end + 1
    return "".join(out)


def literal_announced(line: bytes) -> tuple[int, bool] | None:
    """(size, non-synchronizing) when a command line ends with a literal announcement."""
    match = LITERAL_AT_END.search(line)
    if match is None:
        return None
    return int(match[1]), bool(match[2])
