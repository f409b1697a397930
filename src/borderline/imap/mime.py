"""A message as IMAP sees it: exact byte ranges of every MIME part, ENVELOPE, BODYSTRUCTURE.

The email package parses header fields, parameters and addresses; it keeps no byte offsets
of parts, and FETCH BODY[1.2] must return the exact octets, so the part boundaries are
found here on the raw bytes using the boundary the email package extracted.
"""

from __future__ import annotations

import email.utils
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import cached_property

from borderline.imap.protocol import is_number, nstring, quoted_or_literal

HEADER_END = re.compile(rb"\r?\n\r?\n")
FIELD_START = re.compile(rb"^(?=[^ \t\r\n])", re.MULTILINE)
UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
MAX_DEPTH = 32
MAX_PARTS = 4096
_HEADER_PARSER = BytesHeaderParser(policy=compat32)


class Part:
    """One MIME entity: its header block (with the blank line), body, children."""

    def __init__(self, raw: bytes, default_type: str = "text/plain", depth: int = 0) -> None:
        if raw.startswith((b"\r\n", b"\n")):
            split = 2 if raw.startswith(b"\r\n") else 1
        else:
            match = HEADER_END.search(raw)
            split = match.end() if match else len(raw)
        self.raw = raw
        self.header = raw[:split]
        self.body = raw[split:]
        self._default_type = default_type
        self.children: list[Part] = []
        self.message: Part | None = None
        self.content_type = self._content_type()
        if depth >= MAX_DEPTH:
            return
        if self.content_type.startswith("multipart/"):
            boundary = self.fields.get_boundary()
            if boundary:
                child_type = "message/rfc822" if self.content_type == "multipart/digest" else None
                self.children = [
                    Part(chunk, child_type or "text/plain", depth + 1)
                    for chunk in split_multipart(self.body, boundary.encode("utf-8", "replace"))
                ]
        elif self.content_type in ("message/rfc822", "message/global"):
            self.message = Part(self.body, "text/plain", depth + 1)

    def _content_type(self) -> str:
        """The type without parsing the whole header: ENVELOPE-only fetches stay cheap."""
        raw = self.raw_value("content-type")
        if raw is None:
            return self._default_type
        kind = raw.split(b";", 1)[0].strip().lower().decode("ascii", "replace")
        maintype, slash, subtype = kind.partition("/")
        if not slash or not maintype or not subtype or " " in kind:
            return "text/plain"  # RFC 2045 5.2: an invalid Content-Type means text/plain
        return kind

    @cached_property
    def fields(self) -> Message:
        """The header parsed by the email package, for parameters (RFC 2231) and charsets."""
        fields = _HEADER_PARSER.parsebytes(self.header)
        fields.set_default_type(self._default_type)
        return fields

    @property
    def is_multipart(self) -> bool:
        return bool(self.children)

    def child(self, number: int) -> Part:
        """Part `number` below this one (RFC 3501 6.4.5 section numbering)."""
        part = self.message if self.message is not None else self
        if part.children:
            if not 1 <= number <= len(part.children):
                raise KeyError(number)
            return part.children[number - 1]
        if number != 1:
            raise KeyError(number)
        return part

    @cached_property
    def header_lines(self) -> list[tuple[bytes, bytes]]:
        """(lowercased name, raw field with its folding and CRLF) for every header field."""
        block = self.header.rstrip(b"\r\n") + b"\r\n" if self.header.strip() else b""
        out = []
        for field in FIELD_START.split(block):
            if not field:
                continue
            name = field.partition(b":")[0].strip().lower()
            out.append((name, field))
        return out

    def header_fields(self, names: list[str], exclude: bool) -> bytes:
        wanted = {n.lower().encode() for n in names}
        kept = [raw for name, raw in self.header_lines if (name in wanted) != exclude]
        return b"".join(kept) + b"\r\n"

    def raw_value(self, name: str) -> bytes | None:
        """A header's raw, unfolded value; envelope fields are sent undecoded (RFC 3501)."""
        target = name.lower().encode()
        for field_name, field in self.header_lines:
            if field_name == target:
                value = field.partition(b":")[2]
                return UNFOLD.sub(b"", value).strip()
        return None


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """Body parts between delimiter lines; the CRLF before a delimiter belongs to it."""
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : match.start()])
            if len(parts) >= MAX_PARTS:
                return parts
        if match.group(1):
            return parts
        start = match.end()
    if start is not None:
        parts.append(body[start:])
    return parts


def _text(part: Part, name: str) -> bytes:
    return nstring(part.raw_value(name))


def _addresses(part: Part, name: str) -> bytes:
    raw = part.raw_value(name)
    if raw is None:
        return b"NIL"
    entries = []
    for display, address in email.utils.getaddresses([raw.decode("utf-8", "surrogateescape")]):
        if not display and not address:
            continue
        mailbox, at, host = address.rpartition("@")
        if not at:
            mailbox, host = address, ""
        entries.append(
            b"("
            + nstring(display or None)
            + b" NIL "
            + nstring(mailbox)
            + b" "
            + nstring(host or None)
            + b")"
        )
    return b"(" + b"".join(entries) + b")" if entries else b"NIL"


def envelope(part: Part) -> bytes:
    """ENVELOPE (RFC 3501 7.4.2); Sender and Reply-To default to From."""
    sender = b"sender" if part.raw_value("sender") is not None else b"from"
    reply_to = b"reply-to" if part.raw_value("reply-to") is not None else b"from"
    fields = [
        _text(part, "date"),
        _text(part, "subject"),
        _addresses(part, "from"),
        _addresses(part, sender.decode()),
        _addresses(part, reply_to.decode()),
        _addresses(part, "to"),
        _addresses(part, "cc"),
        _addresses(part, "bcc"),
        _text(part, "in-reply-to"),
        _text(part, "message-id"),
    ]
    return b"(" + b" ".join(fields) + b")"


def _params(fields: Message, header: str) -> bytes:
    params = fields.get_params(header=header)
    if not params:
        return b"NIL"
    items = []
    for key, value in params[1:]:
        text = email.utils.collapse_rfc2231_value(value)
        items.append(quoted_or_literal(key) + b" " + quoted_or_literal(text))
    return b"(" + b" ".join(items) + b")" if items else b"NIL"


def _disposition(fields: Message) -> bytes:
    value = fields.get("content-disposition")
    if value is None:
        return b"NIL"
    kind = str(value).split(";", 1)[0].strip()
    return b"(" + quoted_or_literal(kind) + b" " + _params(fields, "content-disposition") + b")"


def _lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def bodystructure(part: Part, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (or BODY without extension data when extensible is False)."""
    fields = part.fields
    language = nstring(fields.get("content-language"))
    location = nstring(fields.get("content-location"))
    if part.is_multipart:
        out = b"(" + b"".join(bodystructure(c, extensible) for c in part.children)
        out += b" " + quoted_or_literal(part.content_type.partition("/")[2])
        if extensible:
            out += b" " + b" ".join(
                [_params(fields, "content-type"), _disposition(fields), language, location]
            )
        return out + b")"
    maintype, _, subtype = part.content_type.partition("/")
    items = [
        quoted_or_literal(maintype),
        quoted_or_literal(subtype),
        _params(fields, "content-type"),
        nstring(fields.get("content-id")),
        nstring(fields.get("content-description")),
        quoted_or_literal(str(fields.get("content-transfer-encoding", "7BIT")).strip()),
        str(len(part.body)).encode(),
    ]
    if part.message is not None:
        items += [
            envelope(part.message),
            bodystructure(part.message, extensible),
            str(_lines(part.body)).encode(),
        ]
    elif maintype == "text":
        items.append(str(_lines(part.body)).encode())
    if extensible:
        items += [nstring(fields.get("content-md5")), _disposition(fields), language, location]
    return b"(" + b" ".join(items) + b")"


def section(part: Part, spec: str) -> bytes:
    """The octets of BODY[spec] (RFC 3501 6.4.5); raises KeyError for a missing part."""
    numbers: list[int] = []
    rest = spec
    while rest:
        head, dot, tail = rest.partition(".")
        if not is_number(head):
            break
        numbers.append(int(head))
        rest = tail if dot else ""
    node = part
    for number in numbers:
        node = node.child(number)
    upper = rest.upper()
    if not upper:
        return node.raw if not numbers else node.body
    if upper == "MIME":
        if not numbers:
            raise KeyError(spec)
        return node.header
    message = node if not numbers else node.message
    if message is None:
        raise KeyError(spec)
    if upper == "HEADER":
        return message.header
    if upper == "TEXT":
        return message.body
    if upper.startswith("HEADER.FIELDS"):
        exclude = upper.startswith("HEADER.FIELDS.NOT")
        names = rest[rest.find("(") + 1 : rest.rfind(")")].replace('"', " ").split()
        return message.header_fields(names, exclude)
    raise KeyError(spec)
