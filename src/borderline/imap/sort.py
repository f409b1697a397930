"""SORT keys (RFC 5256 3, RFC 5957): what each sort criterion compares, and the base
subject (RFC 5256 2.1) that SUBJECT sorts by."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC
from functools import cmp_to_key
from typing import Any

from borderline.imap.mime import Part, addresses, words_text
from borderline.store import MessageInfo

# RFC 5256's, and RFC 5957's DISPLAYFROM and DISPLAYTO (SORT=DISPLAY).
CRITERIA = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
# Criteria that read the message; ARRIVAL and SIZE are in the store's metadata.
CONTENT_CRITERIA = CRITERIA - {"ARRIVAL", "SIZE"}
# Base subjects are extracted from this much of the decoded Subject at most: the extraction
# loops over prefixes, and no two real subjects first differ after this many characters.
SUBJECT_LIMIT = 4096

_WHITESPACE = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:\(fwd\)| )+$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\] ?"
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?) ?(?:{_BLOB})?:| +", re.IGNORECASE)
_LEADING_BLOB = re.compile(_BLOB)
_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}

Key = Any
Criterion = tuple[str, bool]  # (name, reversed)


def base_subject(subject: str) -> str:
    """RFC 5256 2.1: the subject without reply/forward markers and list tags, compared
    under i;ascii-casemap (ASCII letters folded to upper case)."""
    return subject_parts(subject)[0]


def subject_parts(subject: str) -> tuple[str, bool]:
    """The base subject, and whether extracting it removed a reply or forward marker (what
    THREAD=REFERENCES calls a reply, RFC 5256 4 step 5)."""
    text = _WHITESPACE.sub(" ", subject[:SUBJECT_LIMIT])  # step 1
    reply = False
    while True:
        trimmed = _TRAILER.sub("", text)  # step 2
        reply |= trimmed.strip() != text.strip()
        text = trimmed
        while True:  # steps 3 to 5
            before = text
            while (leader := _LEADER.match(text)) is not None and leader.end():
                reply |= bool(leader[0].strip())
                text = text[leader.end() :]
            blob = _LEADING_BLOB.match(text)
            if blob is not None and text[blob.end() :]:
                text = text[blob.end() :]
            if text == before:
                break
        if text[:5].lower() == "[fwd:" and text.endswith("]"):  # step 6
            text = text[5:-1]
            reply = True
            continue
        return text.translate(_ASCII_UPPER), reply


def _first_mailbox(part: Part, field: str) -> str:
    """RFC 5256 3: the addr-mailbox of the field's first address ("" without one)."""
    found = addresses(part, field)
    return (found[0].mailbox or "").translate(_ASCII_UPPER) if found else ""


def _display(part: Part, field: str) -> str:
    """RFC 5957: the first address's display name (its encoded words decoded), else its
    address ("" without one), compared case-insensitively."""
    found = addresses(part, field)
    if not found:
        return ""
    first = found[0]
    if first.name:
        return words_text(first.name.encode("utf-8", "surrogateescape")).casefold()
    spec = f"{first.mailbox}@{first.host}" if first.host else (first.mailbox or "")
    return spec.casefold()


def sent_date(part: Part, info: MessageInfo) -> float:
    """The Date header in UTC; the internal date when it is missing or unparseable."""
    raw = part.raw_value("date")
    if raw is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(raw[:200].decode("ascii", "replace"))
        except (TypeError, ValueError, IndexError):
            return info.internal_date
        if parsed.tzinfo is None:  # "-0000": no zone known, taken as UTC
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return info.internal_date


def sort_keys(criteria: list[Criterion], info: MessageInfo, part: Part | None) -> list[Key]:
    """The message's value for each criterion (work thread); `part` is None when no
    criterion reads content."""
    keys: list[Key] = []
    for name, _ in criteria:
        if name == "ARRIVAL":
            keys.append(info.internal_date)
        elif name == "SIZE":
            keys.append(info.size)
        else:
            assert part is not None
            if name == "DATE":
                keys.append(sent_date(part, info))
            elif name == "SUBJECT":
                raw = part.raw_value("subject")
                keys.append(base_subject(words_text(raw)) if raw is not None else "")
            elif name.startswith("DISPLAY"):
                keys.append(_display(part, name[len("DISPLAY") :].lower()))
            else:
                keys.append(_first_mailbox(part, name.lower()))
    return keys


def ordered(criteria: list[Criterion], rows: list[tuple[int, list[Key]]]) -> list[int]:
    """The sequence numbers of `rows` ((seq, keys)) in sort order; messages equal under
    every criterion stay in mailbox order (RFC 5256 3), REVERSE or not."""

    def compare(a: tuple[int, list[Key]], b: tuple[int, list[Key]]) -> int:
        for (_, reverse), x, y in zip(criteria, a[1], b[1], strict=True):
            if x != y:
                return (1 if x > y else -1) * (-1 if reverse else 1)
        return a[0] - b[0]

    return [seq for seq, _ in sorted(rows, key=cmp_to_key(compare))]


def needs_content(criteria: list[Criterion]) -> bool:
    return any(name in CONTENT_CRITERIA for name, _ in criteria)
