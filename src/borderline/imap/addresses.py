"""Address lists (RFC 5322 3.4 with its obsolete forms) as IMAP's ENVELOPE needs them:
groups, source routes and comments kept (RFC 3501 7.4.2), which no parser of the standard
library does at once (`email.utils.getaddresses` drops groups and routes, the header
registry drops comments and routes). Tolerant: any input gives some list, in one pass
without recursion, so nested comments cost no stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# One token from where the last one ended: whitespace, a quoted string or a domain literal
# (perhaps unterminated), a special, or an atom. Comments are read by hand (they nest).
TOKEN = re.compile(
    r'\s+|"(?:[^"\\]|\\.)*"?|\[(?:[^\]\\]|\\.)*\]?|[<>:;@,.]|[^\s()<>\[\]:;@,."\\]+|\\.?|.',
    re.DOTALL,
)
ESCAPED = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class Address:
    """An ENVELOPE address: (name route mailbox host). A group is announced by an Address
    with only `mailbox` (the group's name) and closed by one with none (RFC 3501 7.4.2)."""

    name: str | None
    route: str | None
    mailbox: str | None
    host: str | None

    @property
    def is_group_marker(self) -> bool:
        return self.host is None

    def searchable(self) -> str:
        """The address as SEARCH FROM/TO/CC/BCC compares it: `Name <mailbox@host>`."""
        spec = f"{self.mailbox}@{self.host}" if self.host else str(self.mailbox or "")
        return f"{self.name} <{spec}>" if self.name else spec


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text): kind is a special character, "word", "comment" or "literal"."""
    found: list[tuple[str, str]] = []
    position, length = 0, len(text)
    while position < length:
        if text[position] == "(":
            depth, start = 0, position + 1
            while position < length:
                char = text[position]
                if char == "\\":
                    position += 1
                elif char == "(":
                    depth += 1
                elif char == ")":
                    depth -= 1
                    if depth == 0:
                        break
                position += 1
            found.append(("comment", ESCAPED.sub(r"\1", text[start:position]).strip()))
            position += 1
            continue
        match = TOKEN.match(text, position)
        assert match is not None  # the last alternative takes any one character
        position = match.end()
        token = match.group()
        if token.isspace():
            continue
        if token[0] == '"':
            found.append(
                ("word", ESCAPED.sub(r"\1", token[1:-1] if token[-1:] == '"' else token[1:]))
            )
        elif token[0] == "[":
            found.append(("literal", token))
        elif token in ("<", ">", ":", ";", "@", ",", "."):
            found.append((token, token))
        else:
            found.append(("word", token))
    return found


def _phrase(tokens: list[tuple[str, str]]) -> str | None:
    """A display name: its words by spaces, a dot kept on the word before it."""
    text = ""
    for kind, value in tokens:
        if kind == "word":
            text += (" " if text else "") + value
        elif kind == ".":
            text += "."
    return text or None


def _spec(tokens: list[tuple[str, str]]) -> tuple[str, str]:
    """(mailbox, host) of an addr-spec: around its last @; comments dropped."""
    kept = [(kind, value) for kind, value in tokens if kind != "comment"]
    at = max((i for i, (kind, _) in enumerate(kept) if kind == "@"), default=len(kept))
    return "".join(v for _, v in kept[:at]), "".join(v for _, v in kept[at + 1 :])


def parse_addresses(text: str) -> list[Address]:
    """The addresses of an address-list header value, group markers included."""
    out: list[Address] = []
    phrase: list[tuple[str, str]] = []
    angle: list[tuple[str, str]] | None = None
    in_angle = in_group = False

    def flush() -> None:
        nonlocal phrase, angle
        if angle is not None:
            route = None
            if angle and angle[0][0] == "@":
                colon = next((i for i, (kind, _) in enumerate(angle) if kind == ":"), None)
                if colon is not None:
                    route = "".join(v for _, v in angle[:colon])
                    angle = angle[colon + 1 :]
            mailbox, host = _spec(angle)
            out.append(Address(_phrase(phrase), route, mailbox, host))
        elif any(kind != "comment" for kind, _ in phrase):
            comments = [value for kind, value in phrase if kind == "comment" and value]
            mailbox, host = _spec(phrase)
            out.append(Address(comments[-1] if comments else None, None, mailbox, host))
        phrase, angle = [], None

    for kind, value in _tokens(text):
        if in_angle:
            if kind == ">":
                in_angle = False
            else:
                assert angle is not None
                angle.append((kind, value))
        elif kind == "<":
            angle, in_angle = [], True
        elif kind == ",":
            flush()
        elif kind == ":" and not in_group:
            out.append(Address(None, None, _phrase(phrase) or "", None))
            phrase, in_group = [], True
        elif kind == ";" and in_group:
            flush()
            out.append(Address(None, None, None, None))
            in_group = False
        elif angle is None:
            phrase.append((kind, value))
    flush()
    if in_group:
        out.append(Address(None, None, None, None))
    return out
