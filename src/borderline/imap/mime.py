"""A message as IMAP sees it: exact byte ranges of every MIME part, ENVELOPE, BODYSTRUCTURE.

Every part is a range of the one decrypted message, never a copy, so a deeply nested
message costs no more memory than a flat one; octets are copied only when a FETCH returns
them. Header fields are found on the raw bytes (FETCH BODY[1.2] must return exact octets,
and the email package keeps no offsets); the email package parses only the parameters of
the few fields IMAP interprets, imap/addresses.py their addresses.

Whatever a sender wrote, nothing here raises: an unknown or unusable charset decodes as
UTF-8 with replacement characters, broken transfer encodings decode as far as they go, and
the limits below bound the work one message can cause.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterator
from email.errors import MessageError
from email.header import decode_header
from email.utils import decode_params, unquote
from functools import cached_property, lru_cache

from borderline.imap.addresses import Address, parse_addresses
from borderline.imap.protocol import is_number, nstring, quoted_or_literal

# Limits on the structure of one message (Dovecot's defaults are 100 levels and 10,000
# parts, for a parser that reads a message once; each level here scans its own body).
MAX_DEPTH = 32  # containers deeper than this are leaves: their parts are not split out
MAX_PARTS = 10_000  # parts per message; later ones are left inside their container
# Structured fields (addresses, parameters, encoded words) are interpreted from their first
# FIELD_LIMIT octets; the raw field is still served whole.
FIELD_LIMIT = 64 * 1024
# Codecs that are not charsets of mail: they refuse replacement (idna, undefined), take
# quadratic time (punycode) or interpret backslashes. Text naming them decodes as UTF-8.
NOT_CHARSETS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"})
DECODE_CHUNK = 1 << 20

HEADER_END = re.compile(rb"\n\r?\n")
FIELD_REST = re.compile(rb"[^\n]*(?:\n[ \t][^\n]*)*")
UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
# What follows `--boundary` on a delimiter line: `--` if it closes, blanks, the line end.
DELIMITER_TAIL = re.compile(rb"(--)?[ \t]*(?:\r?\n|\Z)")


def codec_name(charset: str | None) -> str:
    """The Python codec for a MIME charset, UTF-8 for anything unknown or unsafe."""
    if charset:
        try:
            codec = codecs.lookup(charset.strip().strip('"'))
        except (LookupError, ValueError):
            return "utf-8"
        if codec.name not in NOT_CHARSETS and codec._is_text_encoding:
            return codec.name
    return "utf-8"


def decode_text(data: bytes, charset: str | None = None) -> str:
    return "".join(decode_chunks(data, charset))


def decode_chunks(data: bytes, charset: str | None = None) -> Iterator[str]:
    """Text in pieces of about a megabyte, so searching a large part stays small."""
    decoder = codecs.getincrementaldecoder(codec_name(charset))("replace")
    for start in range(0, len(data) + 1, DECODE_CHUNK):
        chunk = data[start : start + DECODE_CHUNK]
        final = start + DECODE_CHUNK > len(data)
        try:
            text = decoder.decode(chunk, final)
        except UnicodeError:  # some decoders raise whatever the handler (UTF-16 without BOM)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            text = decoder.decode(chunk, final)
        yield text


def transfer_decode(data: bytes, encoding: str) -> bytes:
    """Undo base64 or quoted-printable as far as the data allows; other encodings as is."""
    encoding = encoding.strip().lower()
    if encoding == "base64":
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:  # bad padding or length: keep the whole quanta
            cleaned = NOT_BASE64.sub(b"", data)
            return binascii.a2b_base64(cleaned[: len(cleaned) // 4 * 4])
    if encoding == "quoted-printable":
        return binascii.a2b_qp(_qp_lines(data))
    return data


def _qp_lines(data: bytes) -> bytes:
    """RFC 2045 6.7: whitespace at the end of a line is padding, and a line that then ends
    in "=" continues on the next (binascii keeps the padding, so "= " would stay)."""
    out = []
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        crlf = line.endswith(b"\r")
        text = line.rstrip(b"\r").rstrip(b" \t")
        if text.endswith(b"="):
            out.append(text[:-1])
        elif index < len(lines) - 1:
            out.append(text + (b"\r\n" if crlf else b"\n"))
        else:
            out.append(text)
    return b"".join(out)


def words_text(raw: bytes) -> str:
    """A header value with its RFC 2047 encoded words decoded."""
    text = raw.decode("utf-8", "replace")
    if len(raw) > FIELD_LIMIT or "=?" not in text:
        return text
    try:
        pieces = decode_header(text)
    except (ValueError, MessageError):
        return text
    # Text between encoded words comes back as raw-unicode-escape octets (email.header).
    return "".join(
        piece
        if isinstance(piece, str)
        else piece.decode("raw-unicode-escape", "replace")
        if charset is None
        else decode_text(piece, charset)
        for piece, charset in pieces
    )


# A parameter's value as the email package gives it: RFC 2231 `charset'language'text`
# comes as (charset, language, text).
ParameterValue = str | tuple[str | None, str | None, str]


def _parameter_text(value: ParameterValue) -> str:
    """A parameter's value; RFC 2231 `charset'language'text` is decoded with the charset."""
    if isinstance(value, str):
        return value
    charset, _, text = value
    try:
        octets = text.encode("latin-1")  # the percent-decoded octets, one per character
    except UnicodeEncodeError:  # raw UTF-8 where octets were due: it is text already
        return text
    return decode_text(octets, charset)


def parameters(raw: bytes | None) -> tuple[str, list[tuple[str, str]]]:
    """The value and parameters of a field like Content-Type (RFC 2045, RFC 2231)."""
    if raw is None:
        return "", []
    text = raw[:FIELD_LIMIT].decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
    pieces = _split_parameters(text)
    pairs = []
    for piece in pieces:
        name, equals, value = piece.partition("=")
        pairs.append((name.strip().lower(), value.strip()) if equals else (piece.strip(), ""))
    try:
        found = decode_params(pairs)
    except (ValueError, TypeError, MessageError):  # `a*=x; a*0=y`: None and 0 do not sort
        return pieces[0].strip(), []
    return pieces[0].strip(), [(key, _parameter_text(_unquoted(item))) for key, item in found[1:]]


PARAMETER_SEPARATORS = re.compile(r'\\"|"|;')


def _split_parameters(text: str) -> list[str]:
    """`text` split at each `;` outside a quoted string, as the email package splits it
    (`email.message._parseparam`), in one pass: that one counts the quotes before every `;`
    it tries again, so one field of 64 KiB (a quote, then semicolons) took seconds."""
    pieces, start, quoted = [], 0, False
    for separator in PARAMETER_SEPARATORS.finditer(text):
        if separator.group() == '"':
            quoted = not quoted
        elif separator.group() == ";" and not quoted:
            pieces.append(text[start : separator.start()])
            start = separator.end()
    pieces.append(text[start:])
    return pieces


def _unquoted(value: ParameterValue) -> ParameterValue:
    if isinstance(value, str):
        return unquote(value)
    charset, language, text = value
    return charset, language, unquote(text)


@lru_cache(maxsize=512)
def _first_field(name: str) -> re.Pattern[bytes]:
    """The start of a field, in a header lowercased and prefixed by LF (see Part._lowered)."""
    return re.compile(rb"\n" + re.escape(name.lower().encode("utf-8", "replace")) + rb"[ \t]*:")


@lru_cache(maxsize=256)
def _whole_field(names: tuple[str, ...]) -> re.Pattern[bytes]:
    """A whole field (continuation lines and line end included) with one of these names."""
    alternatives = b"|".join(re.escape(n.encode("utf-8", "replace")) for n in names)
    return re.compile(rb"(?:" + alternatives + rb")[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*\n?", re.I)


def _fields_at_line_starts(
    data: bytes, start: int, end: int, field: re.Pattern[bytes]
) -> Iterator[re.Match[bytes]]:
    """The fields `field` matches in data[start:end], tried at line starts only, going from
    line to line with bytes.find (a pattern anchored with ^ in MULTILINE mode is tried at
    every octet: 80% of Thunderbird's header sync)."""
    position = start
    if start and data[start - 1] != 0x0A:  # not a line start
        position = data.find(b"\n", start, end) + 1
        if not position:
            return
    while position < end:
        match = field.match(data, position, end)
        if match is not None:
            yield match
            position = match.end()
            continue
        newline = data.find(b"\n", position, end)
        if newline < 0:
            return
        position = newline + 1


class Part:
    """One MIME entity: a range [start, end) of the message, split into header and body."""

    def __init__(
        self,
        data: bytes,
        start: int = 0,
        end: int | None = None,
        default_type: str = "text/plain",
        depth: int = 0,
        budget: list[int] | None = None,
    ) -> None:
        self.data = data
        self.start = start
        self.end = len(data) if end is None else end
        self.body_start = self._header_end()
        self._default_type = default_type
        self._depth = depth
        self._budget = [MAX_PARTS] if budget is None else budget
        self._values: dict[str, bytes | None] = {}
        self._addresses: dict[str, list[Address]] = {}

    @cached_property
    def _inner(self) -> tuple[list[Part], Part | None]:
        """The parts inside, split on first use: ENVELOPE, header fields and header searches
        never scan the body. A whole subtree is split at once, depth first, so the budget
        of parts goes to the same parts whichever is asked for first."""
        budget = self._budget
        children: list[Part] = []
        if self._depth >= MAX_DEPTH:
            return children, None
        if self.content_type.startswith("multipart/"):
            boundary = self.parameter("content-type", "boundary")
            if boundary:
                child_type = "message/rfc822" if self.content_type == "multipart/digest" else None
                for first, last in split_multipart(
                    self.data, self.body_start, self.end, boundary.encode("utf-8", "replace")
                ):
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1
                    child = Part(
                        self.data, first, last, child_type or "text/plain", self._depth + 1, budget
                    )
                    _ = child._inner
                    children.append(child)
        elif self.content_type in ("message/rfc822", "message/global") and budget[0] > 0:
            budget[0] -= 1
            message = Part(
                self.data, self.body_start, self.end, "text/plain", self._depth + 1, budget
            )
            _ = message._inner
            return children, message
        return children, None

    @property
    def children(self) -> list[Part]:
        return self._inner[0]

    @property
    def message(self) -> Part | None:
        """The message a message/rfc822 part holds."""
        return self._inner[1]

    def _header_end(self) -> int:
        data, start = self.data, self.start
        if data.startswith(b"\r\n", start, self.end):
            return start + 2
        if data.startswith(b"\n", start, self.end):
            return start + 1
        match = HEADER_END.search(data, start, self.end)
        return match.end() if match else self.end

    @property
    def raw(self) -> bytes:
        if self.start == 0 and self.end == len(self.data):
            return self.data
        return self.data[self.start : self.end]

    @property
    def header(self) -> bytes:
        return self.data[self.start : self.body_start]

    @property
    def body(self) -> bytes:
        return self.data[self.body_start : self.end]

    @property
    def body_size(self) -> int:
        return self.end - self.body_start

    @cached_property
    def body_lines(self) -> int:
        """Counted once: BODY and BODYSTRUCTURE both give it, and a summary holds both."""
        lines = self.data.count(b"\n", self.body_start, self.end)
        ends_open = self.end > self.body_start and self.data[self.end - 1] != 0x0A
        return lines + ends_open

    @cached_property
    def content_type(self) -> str:
        """Read when first asked: header fields and header searches never need it."""
        raw = self.raw_value("content-type")
        if raw is None:
            return self._default_type
        kind = raw.split(b";", 1)[0].strip().lower().decode("ascii", "replace")
        maintype, slash, subtype = kind.partition("/")
        if not slash or not maintype or not subtype or " " in kind:
            return "text/plain"  # RFC 2045 5.2: an invalid Content-Type means text/plain
        return kind

    @property
    def is_multipart(self) -> bool:
        return bool(self.children)

    def subpart(self, number: int) -> Part:
        """Part `number` of this entity as a message (the top level, or one encapsulated):
        of a multipart its children, else part 1 is its body (RFC 3501 6.4.5)."""
        if self.children:
            if not 1 <= number <= len(self.children):
                raise KeyError(number)
            return self.children[number - 1]
        if number != 1:
            raise KeyError(number)
        return self

    def child(self, number: int) -> Part:
        """Part `number` below this part: of a message/rfc822 part, the parts of the message
        it holds, so BODY[2] is that whole message and BODY[2.1] its first part."""
        return (self.message or self).subpart(number)

    @cached_property
    def _lowered(self) -> bytearray:
        """LF and the header in lower case: a field starts after an LF, whatever its case.
        Index i here is octet start + i - 1 of the message."""
        lowered = bytearray(b"\n")
        lowered += memoryview(self.data)[self.start : self.body_start]
        return lowered.lower()

    def raw_value(self, name: str) -> bytes | None:
        """A header's raw, unfolded value; envelope fields are sent undecoded (RFC 3501)."""
        if name in self._values:
            return self._values[name]
        lowered = self._lowered
        match = _first_field(name).search(lowered)
        value = None
        if match is not None:
            rest = FIELD_REST.match(lowered, match.end())
            last = rest.end() if rest else len(lowered)
            raw = self.data[self.start + match.end() - 1 : self.start + last - 1]
            value = UNFOLD.sub(b"", raw).strip()
        self._values[name] = value
        return value

    def raw_values(self, name: str) -> list[bytes]:
        """Every value of a header that may repeat, raw and unfolded, in order."""
        lowered = self._lowered
        values = []
        for match in _first_field(name).finditer(lowered):
            rest = FIELD_REST.match(lowered, match.end())
            last = rest.end() if rest else len(lowered)
            raw = self.data[self.start + match.end() - 1 : self.start + last - 1]
            values.append(UNFOLD.sub(b"", raw).strip())
        return values

    def header_fields(self, names: list[str], exclude: bool) -> bytes:
        """HEADER.FIELDS (or .NOT): the named fields as they are, then the blank line; the
        last field ends in CRLF even where the header had no blank line."""
        last = self.start + len(self.header.rstrip(b"\r\n"))
        wanted = tuple(sorted({n for n in names if n}))
        view, out, position = memoryview(self.data), bytearray(), self.start
        if wanted:
            for match in _fields_at_line_starts(self.data, self.start, last, _whole_field(wanted)):
                first, position = (position, match.start()) if exclude else match.span()
                out += view[first:position]
                position = match.end()
        if exclude:
            out += view[position:last]
        if out and not out.endswith(b"\n"):
            out += b"\r\n"
        out += b"\r\n"
        return bytes(out)

    def parameter(self, field: str, name: str) -> str | None:
        for key, value in parameters(self.raw_value(field))[1]:
            if key.lower() == name:
                return value
        return None

    @property
    def charset(self) -> str | None:
        return self.parameter("content-type", "charset")

    @property
    def transfer_encoding(self) -> str:
        raw = self.raw_value("content-transfer-encoding")
        return raw.decode("ascii", "replace").strip().lower() if raw else ""


def split_multipart(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """Ranges of the body parts in data[start:end] between delimiter lines; the line end
    before a delimiter belongs to it (RFC 2046 5.1.1). A delimiter is found with bytes.find
    of the literal line break and `--boundary` (a regex without a literal prefix would be
    tried at every octet; the boundary alone, `-` say, can occur thousands of times a line)."""
    parts: list[tuple[int, int]] = []
    opening = b"--" + boundary
    line_opening = b"\n" + opening
    first: int | None = None
    at = (
        start
        if data.startswith(opening, start, end)
        else _line_start(data, line_opening, start, end)
    )
    while at >= 0:
        tail = DELIMITER_TAIL.match(data, at + len(opening), end)
        if tail is None:
            at = _line_start(data, line_opening, at, end)
            continue
        if first is not None and at > start:
            newline = at - 1
            last = newline - (data[newline - 1 : newline] == b"\r")
            parts.append((first, max(first, last)))
            if len(parts) >= MAX_PARTS:
                return parts
        if tail.group(1):
            return parts
        # A delimiter's line break comes after the previous delimiter's end.
        first = tail.end()
        at = _line_start(data, line_opening, first, end)
    if first is not None:
        parts.append((first, end))
    return parts


def _line_start(data: bytes, line_opening: bytes, start: int, end: int) -> int:
    """Where the next `line_opening` (a line break and `--boundary`) in data[start:end]
    has its `--boundary`, or -1."""
    found = data.find(line_opening, start, end)
    return found + 1 if found >= 0 else -1


def _text(part: Part, name: str) -> bytes:
    return nstring(part.raw_value(name))


def addresses(part: Part, name: str) -> list[Address]:
    """The addresses of a header field, parsed once per part (ENVELOPE, SEARCH and SORT all
    ask for From)."""
    found = part._addresses.get(name)
    if found is None:
        raw = part.raw_value(name)
        text = None if raw is None else raw[:FIELD_LIMIT].decode("utf-8", "surrogateescape")
        found = part._addresses[name] = [] if text is None else parse_addresses(text)
    return found


def _addresses(part: Part, name: str) -> bytes:
    entries = [
        b"(%s %s %s %s)" % (nstring(a.name), nstring(a.route), nstring(a.mailbox), nstring(a.host))
        for a in addresses(part, name)
    ]
    return b"(" + b"".join(entries) + b")" if entries else b"NIL"


def envelope(part: Part) -> bytes:
    """ENVELOPE (RFC 3501 7.4.2); Sender and Reply-To default to From, also when empty."""
    sender = "sender" if part.raw_value("sender") else "from"
    reply_to = "reply-to" if part.raw_value("reply-to") else "from"
    from_ = _addresses(part, "from")
    fields = [
        _text(part, "date"),
        _text(part, "subject"),
        from_,
        from_ if sender == "from" else _addresses(part, sender),
        from_ if reply_to == "from" else _addresses(part, reply_to),
        _addresses(part, "to"),
        _addresses(part, "cc"),
        _addresses(part, "bcc"),
        _text(part, "in-reply-to"),
        _text(part, "message-id"),
    ]
    return b"(" + b" ".join(fields) + b")"


def _params(params: list[tuple[str, str]]) -> bytes:
    items = [quoted_or_literal(key) + b" " + quoted_or_literal(value) for key, value in params]
    return b"(" + b" ".join(items) + b")" if items else b"NIL"


def _disposition(part: Part) -> bytes:
    raw = part.raw_value("content-disposition")
    if raw is None:
        return b"NIL"
    kind, params = parameters(raw)
    return b"(" + quoted_or_literal(kind) + b" " + _params(params) + b")"


def bodystructure(part: Part, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (or BODY without extension data when extensible is False)."""
    language = _text(part, "content-language")
    location = _text(part, "content-location")
    type_params = _params(parameters(part.raw_value("content-type"))[1])
    if part.is_multipart:
        out = b"(" + b"".join(bodystructure(c, extensible) for c in part.children)
        out += b" " + quoted_or_literal(part.content_type.partition("/")[2])
        if extensible:
            out += b" " + b" ".join([type_params, _disposition(part), language, location])
        return out + b")"
    maintype, _, subtype = part.content_type.partition("/")
    encoding = part.raw_value("content-transfer-encoding")
    items = [
        quoted_or_literal(maintype),
        quoted_or_literal(subtype),
        type_params,
        _text(part, "content-id"),
        _text(part, "content-description"),
        quoted_or_literal(b"7BIT" if encoding is None else encoding),
        str(part.body_size).encode(),
    ]
    if part.message is not None:
        items += [
            envelope(part.message),
            bodystructure(part.message, extensible),
            str(part.body_lines).encode(),
        ]
    elif maintype == "text":
        items.append(str(part.body_lines).encode())
    if extensible:
        items += [_text(part, "content-md5"), _disposition(part), language, location]
    return b"(" + b" ".join(items) + b")"


def locate(part: Part, numbers: list[int]) -> Part:
    """The part a section's numbers name (`2.1`: [2, 1]); KeyError if there is none."""
    node = part
    for depth, number in enumerate(numbers):
        node = node.child(number) if depth else node.subpart(number)
    return node


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
    node = locate(part, numbers)
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


_TRANSFER_ENCODING_FIELD = re.compile(
    rb"^content-transfer-encoding:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE
)


def binary_as_base64(data: bytes) -> bytes:
    """The message with every leaf part in `binary` transfer encoding, or holding a NUL,
    re-encoded as base64 (RFC 3516 4.3: a server that keeps no binary content converts
    it), so BODY[...] never carries a NUL; other octets stay as they were."""
    root = Part(data)
    leaves = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.children:
            stack.extend(node.children)
        elif node.message is not None:
            stack.append(node.message)
        elif node.transfer_encoding == "binary" or b"\0" in node.body:
            leaves.append(node)
    out = data
    for node in sorted(leaves, key=lambda n: n.start, reverse=True):
        fields = node.header
        for blank in (b"\r\n", b"\n"):
            if fields == blank:
                fields = b""
            elif fields.endswith(blank * 2):
                fields = fields[: -len(blank)]
        head = _TRANSFER_ENCODING_FIELD.sub(b"", fields)
        encoded = binascii.b2a_base64(node.body, newline=False)
        lines = b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        replacement = head + b"Content-Transfer-Encoding: base64\r\n\r\n" + lines + b"\r\n"
        out = out[: node.start] + replacement + out[node.end :]
    return out
