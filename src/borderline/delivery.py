"""Where accepted mail goes: encrypted into this region's store, sealed for its home, or
(mail an account of this region submitted to the Internet) signed and queued here to leave
from here.

Pure planning and crypto, no network: SMTP ingress, the relay and IMAP APPEND share it.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from borderline.directory import Directory, DirectoryError
from borderline.domains import ascii_domain
from borderline.store import Delivery, OutboundMessage, OutboundRelay
from borderline.vault import SealedMessageError, Vault, seal_in_place

log = logging.getLogger(__name__)
RELAY_HEADER = b"X-Borderline-Relay"
SIGNATURE_HEADER = b"X-Borderline-Signature"
# Base64 in lines of 996 characters and a <CR><LF>, within RFC 5321's 1,000 octets: 998
# bytes on the wire for 747 sealed. Long lines because the SMTP client (aiosmtplib) rewrites
# every line ending of the data through a regular expression, whose pieces cost more memory
# than the message itself when the lines are short (76 characters: 6.4x the message).
RELAY_LINE = 747
RELAY_LINE_CHARS = RELAY_LINE * 4 // 3
RELAY_LINES_AT_ONCE = 256  # a window of about 256 KB on the wire
# The shortest lines a region of an older version sends (76 characters); the home region's
# size limit leaves room for them, so a message at the limit crosses during an upgrade.
SHORTEST_RELAY_LINE = 57
# Room in a sealed message besides its content: the header that names the recipients
# (at most 1,000 of up to 254 octets), the trace lines, the HPKE key and tag.
SEALED_OVERHEAD = 512 * 1024
DECODE_STEP = 256 * 1024  # base64 decoded at a time in a relay envelope

# A message's octets. A bytearray where SMTP hands over its DATA buffer, which the last
# encryption of the message may overwrite (DeliveryPlanner.plan, `consume`).
Content = bytes | bytearray


class RelayRejected(Exception):
    """An inbound relay envelope that is forged, misrouted or does not open."""


class Pending(Enum):
    """A summary not computed yet (None is one that could not be)."""

    LATER = "later"


@dataclass(frozen=True)
class Envelope:
    """Accepted mail. `trace` holds the header lines the accepting server puts before the
    content (RFC 5321 4.4), kept apart so the content, however large, is never copied."""

    mail_from: str  # "" for the null reverse-path
    rcpts: tuple[str, ...]
    content: Content
    received: float
    relay_id: str | None = None
    trace: bytes = b""
    # Submitted by the account `mail_from`, homed here: recipients outside the cloud are
    # mail to the Internet, which leaves from here (invariant 10). Nothing else may be.
    submitted: bool = False
    mailbox: str = "INBOX"  # or "Junk": what sender authentication made of it
    # What IMAP reads of it: computed by the session that accepted it (see
    # DeliveryPlanner.summarized; None: none could be), or LATER by plan().
    summary: bytes | Pending | None = Pending.LATER


@dataclass(frozen=True)
class Plan:
    deliveries: tuple[Delivery, ...]
    relays: tuple[OutboundRelay, ...]
    outbound: tuple[OutboundMessage, ...] = ()


def _head(envelope: Envelope) -> bytes:
    """The header lines this server puts before the content: the reverse-path, which the
    delivering server records (RFC 5321 4.4), and the trace."""
    return b"Return-Path: <" + envelope.mail_from.encode() + b">\r\n" + envelope.trace


def header_block(content: Content) -> bytes:
    """The message's header lines, without the body (which may be large)."""
    if content.startswith(b"\r\n"):
        return b""
    end = content.find(b"\r\n\r\n")
    return bytes(content if end < 0 else content[: end + 2])  # bytes: itself, uncopied


def complete_header(content: Content, domain: str, received: float) -> Content:
    """A submitted message with the Date and Message-ID an author's client left out added
    (RFC 6409 8.2 and 8.3), so what leaves is a complete RFC 5322 message."""
    lines = header_block(content).split(b"\r\n")
    names = {line.split(b":", 1)[0].strip().lower() for line in lines}
    added = b""
    if b"date" not in names:
        added += b"Date: " + email.utils.formatdate(received, usegmt=True).encode() + b"\r\n"
    if b"message-id" not in names:
        added += b"Message-ID: " + email.utils.make_msgid(domain=domain).encode() + b"\r\n"
    return added + content if added else content


def _relay_signed_prefix(from_region: str, dest_region: str) -> bytes:
    """What a relay signature covers before the sealed bytes."""
    return f"borderline-relay-v1\n{from_region}\n{dest_region}\n".encode()


class DeliveryPlanner:
    """Splits an accepted message by recipient home region (invariants 1 and 2)."""

    def __init__(self, region_id: str, vault: Vault, directory: Directory) -> None:
        self.region_id = region_id
        self.vault = vault
        self.directory = directory
        # What IMAP reads of a message (head, content) instead of the message: set by the
        # composition root (runtime.py), since computing it is IMAP's business. Without it
        # messages are stored with no summary, and the first session to read one adds it.
        self.summarize: Callable[[bytes, Content], bytes] | None = None
        # Whether summarize() of a message's content is cheap enough to run inside the group
        # commit (also wired by runtime.py); the accepting session computes the others.
        self.cheap_to_summarize: Callable[[Content], bool] = lambda content: False

    def local_delivery(
        self,
        address: str,
        content: Content,
        received: float,
        mailbox: str = "INBOX",
        flags: frozenset[str] = frozenset(),
        relay_id: str | None = None,
        head: bytes = b"",
        summary: bytes | Pending | None = Pending.LATER,
        overwrite: bool = False,
    ) -> Delivery:
        """`head`: header lines this server adds before the content; `summary`: the
        message's, computed already (one message to many recipients is summarized once);
        `overwrite`: `content` is a bytearray no one reads any more, which becomes the blob
        (the message is then in memory once, not beside its ciphertext)."""
        if summary is Pending.LATER:
            summary = self._summary(head, content)
        size = len(head) + len(content)
        if overwrite and isinstance(content, bytearray):
            blob: bytes | bytearray = self.vault.encrypt_in_place(address, head, content)
        else:
            blob = self.vault.encrypt(address, head, content)
        return Delivery(
            account=address,
            blob=blob,
            size=size,
            internal_date=received,
            mailbox=mailbox,
            flags=flags,
            relay_id=relay_id,
            summary=None if summary is None else self.vault.encrypt_summary(address, summary),
        )

    def _summary(self, head: bytes, content: Content) -> bytes | None:
        """The message's summary; none (sessions read the message) if computing it fails,
        for a bug there must not refuse mail."""
        if self.summarize is None:
            return None
        try:
            return self.summarize(head, content)
        except Exception:
            log.exception("the summary of a message could not be computed; stored without")
            return None

    def summarized(self, envelope: Envelope) -> Envelope:
        """`envelope` with the summary plan() stores for its recipients homed here (none if
        there are none). For a message that is not cheap to summarize the accepting session
        calls this on a thread of its own: for thousands of parts it takes seconds, which in
        plan() would hold up the commit of every message accepted meanwhile (issue 15
        item 3). The others are summarized in plan(): a thread hop per message cost more
        than their summary (about 0.3 ms of CPU per message at 100 KB, bench/RESULTS.md)."""
        summary = None
        if any(self.directory.home(rcpt) == self.region_id for rcpt in envelope.rcpts):
            summary = self._summary(_head(envelope), envelope.content)
        return replace(envelope, summary=summary)

    def plan(self, envelope: Envelope, consume: bool = False) -> Plan:
        """`consume`: the caller hands over the only reference to the envelope's content,
        so the last encryption of it (the last local recipient's) may overwrite it."""
        local: list[str] = []
        remote: dict[str, list[str]] = {}
        internet: dict[str, list[str]] = {}
        for rcpt in dict.fromkeys(r.lower() for r in envelope.rcpts):
            home = self.directory.home(rcpt)
            if home is None:
                if not (envelope.submitted and self._sends_from_here(envelope.mail_from)):
                    raise ValueError(f"{rcpt} has no home region")
                domain = rcpt.rpartition("@")[2]
                internet.setdefault(ascii_domain(domain) or domain, []).append(rcpt)
            elif home == self.region_id:
                local.append(rcpt)
            else:
                remote.setdefault(home, []).append(rcpt)
        # Everything that only reads the content comes first.
        outbound = self._outbound(envelope, internet)
        last_home = None if local or not remote else list(remote)[-1]
        relays = tuple(
            OutboundRelay(
                dest_region=home,
                mail_from=envelope.mail_from,
                rcpts=tuple(rcpts),
                sealed=self._seal_for(
                    home, envelope, rcpts, overwrite=consume and home == last_home
                ),
            )
            for home, rcpts in remote.items()
        )
        head = _head(envelope)
        summary = envelope.summary
        if local and summary is Pending.LATER:
            summary = self._summary(head, envelope.content)
        deliveries = tuple(
            self.local_delivery(
                rcpt,
                envelope.content,
                envelope.received,
                mailbox=envelope.mailbox,
                relay_id=envelope.relay_id,
                head=head,
                summary=summary,
                overwrite=consume and rcpt == local[-1],
            )
            for rcpt in local
        )
        return Plan(deliveries, relays, outbound)

    def _sends_from_here(self, sender: str) -> bool:
        return bool(sender) and self.directory.home(sender) == self.region_id

    def _outbound(
        self, envelope: Envelope, by_domain: dict[str, list[str]]
    ) -> tuple[OutboundMessage, ...]:
        """The message DKIM-signed with this region's key for the sender's domain, then
        encrypted for the queue once per destination domain."""
        if not by_domain:
            return ()
        sender_domain = envelope.mail_from.rpartition("@")[2].lower()
        content = complete_header(envelope.content, sender_domain, envelope.received)
        signed = self.vault.dkim_sign(envelope.trace + content, sender_domain)
        return tuple(
            OutboundMessage(
                domain=domain,
                mail_from=envelope.mail_from,
                rcpts=tuple(rcpts),
                blob=self.vault.encrypt_outbound(envelope.mail_from, domain, signed),
                size=len(signed),
            )
            for domain, rcpts in by_domain.items()
        )

    def _seal_for(
        self, home: str, envelope: Envelope, rcpts: Sequence[str], overwrite: bool
    ) -> bytearray:
        """The sealed header, trace and content; sealed over the content itself when it may
        be overwritten, else over one copy of it (not a copy and then the sealed one)."""
        header = json.dumps(
            {
                "v": 1,
                "id": secrets.token_hex(16),
                "from_region": self.region_id,
                "mail_from": envelope.mail_from,
                "rcpts": list(rcpts),
                "received": envelope.received,
                "mailbox": envelope.mailbox,
            },
            separators=(",", ":"),
        ).encode()
        keys = self.directory.region_keys(home)
        front = header + b"\n" + envelope.trace
        if overwrite and isinstance(envelope.content, bytearray):
            plaintext = envelope.content
            plaintext[0:0] = front  # a move within the buffer
        else:
            plaintext = bytearray(front)
            plaintext += envelope.content
        return seal_in_place(keys.sealing_key, home, plaintext)

    def signed_relay(
        self, dest_region: str, read_sealed: Callable[[int], bytearray | None]
    ) -> tuple[bytes, memoryview] | None:
        """A queued relay's sealed bytes, read by `read_sealed` after the room it is asked
        to leave, and this region's signature over them; None if they are gone. What the
        signature covers before them goes into that room, so signing copies nothing."""
        prefix = _relay_signed_prefix(self.region_id, dest_region)
        buffer = read_sealed(len(prefix))
        if buffer is None:
            return None
        buffer[: len(prefix)] = prefix
        return self.vault.signing_key.sign(buffer), memoryview(buffer)[len(prefix) :]

    def relay_pieces(
        self, dest_region: str, signature: bytes, sealed: bytes | memoryview
    ) -> Iterator[bytes]:
        """The SMTP DATA that carries sealed mail to its home region, signed by this one
        (`signed_relay`), as it goes on the wire (CRLF lines, none starting with a dot), a
        window at a time: the envelope is never whole in memory."""
        yield (
            RELAY_HEADER
            + f": v1; from={self.region_id}; to={dest_region}\r\n".encode()
            + SIGNATURE_HEADER
            + b": "
            + base64.b64encode(signature)
            + b"\r\nDate: "
            + email.utils.formatdate(usegmt=True).encode()
            + b"\r\nContent-Type: application/octet-stream\r\n"
            + b"Content-Transfer-Encoding: base64\r\n\r\n"
        )
        view = memoryview(sealed)
        step = RELAY_LINE * RELAY_LINES_AT_ONCE
        for start in range(0, len(sealed), step):
            lines = memoryview(binascii.b2a_base64(view[start : start + step], newline=False))
            yield b"".join(
                piece
                for line in range(0, len(lines), RELAY_LINE_CHARS)
                for piece in (lines[line : line + RELAY_LINE_CHARS], b"\r\n")
            )

    def open_relay_message(self, data: Content) -> Envelope:
        """Verify and open an inbound relay envelope addressed to this region. It is opened
        over a buffer of its own (a bytearray passed in is taken as that buffer): the base64
        decoded into the bytes it was read from, the signature checked there, the sealed
        message opened where it lies, and what is left of the buffer is the content. The
        envelope is the largest thing in memory (1.37x the message), nothing beside it."""
        buffer = data if isinstance(data, bytearray) else bytearray(data)
        del data
        end = buffer.find(b"\r\n\r\n")
        head = bytes(buffer if end < 0 else buffer[:end])
        fields: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        params = dict(
            part.strip().split(b"=", 1)
            for part in fields.get(RELAY_HEADER.lower(), b"").split(b";")[1:]
            if b"=" in part
        )
        from_region = params.get(b"from", b"").decode(errors="replace")
        if params.get(b"to", b"").decode(errors="replace") != self.region_id:
            raise RelayRejected("relay envelope is addressed to another region")
        try:
            keys = self.directory.region_keys(from_region)
        except DirectoryError as exc:
            raise RelayRejected(f"relay envelope from unknown region {from_region!r}") from exc
        # What the signature covers, put before the sealed bytes: the header they were
        # decoded after is longer than it (it names both regions too).
        signed = _relay_signed_prefix(from_region, self.region_id)
        try:
            signature = base64.b64decode(fields.get(SIGNATURE_HEADER.lower(), b""))
            signed_end = _decode_base64_over(buffer, len(buffer) if end < 0 else end + 4, signed)
            del buffer[signed_end:]
            with memoryview(buffer) as view:
                Ed25519PublicKey.from_public_bytes(keys.signing_key).verify(signature, view)
        except (InvalidSignature, ValueError, binascii.Error) as exc:
            raise RelayRejected(f"relay envelope from {from_region!r} fails verification") from exc
        del buffer[: len(signed)]  # from the front: nothing is copied
        try:
            self.vault.open_sealed_in_place(buffer)
            header_end = buffer.find(b"\n")
            header_end = len(buffer) if header_end < 0 else header_end
            meta = json.loads(bytes(buffer[:header_end]))
            del buffer[: header_end + 1]
            envelope = Envelope(
                mail_from=str(meta["mail_from"]),
                rcpts=tuple(str(r) for r in meta["rcpts"]),
                content=buffer,
                received=float(meta["received"]),
                relay_id=str(meta["id"]),
                mailbox="Junk" if meta.get("mailbox") == "Junk" else "INBOX",
            )
        except (SealedMessageError, ValueError, KeyError, TypeError) as exc:
            raise RelayRejected(f"sealed relay envelope is malformed: {exc}") from exc
        if meta.get("from_region") != from_region:
            raise RelayRejected("sealed header names another sending region")
        return envelope


def _decode_base64_over(buffer: bytearray, start: int, prefix: bytes) -> int:
    """Decode the base64 lines from `start` on into `buffer` itself, after `prefix` written
    at its start; where the decoded bytes end. Each step decodes whole lines (a multiple of
    four characters each, as every region writes them) and writes behind what it read."""
    if len(prefix) > start:
        raise ValueError("the relay envelope's header is shorter than what it signs")
    buffer[: len(prefix)] = prefix
    read, write = start, len(prefix)
    while read < len(buffer):
        stop = buffer.find(b"\n", min(read + DECODE_STEP, len(buffer)) - 1)
        stop = len(buffer) if stop < 0 else stop + 1
        decoded = binascii.a2b_base64(buffer[read:stop])
        buffer[write : write + len(decoded)] = decoded
        read, write = stop, write + len(decoded)
    return write


def is_relay_message(data: Content) -> bool:
    return data[: len(RELAY_HEADER) + 1].lower() == RELAY_HEADER.lower() + b":"


def relay_size_limit(max_message_size: int) -> int:
    """The largest relay envelope a message of the size limit can need: sealing and base64
    make it about 1.37 times the message, so the home region accepts it from a region that
    accepted the message."""
    lines = (max_message_size + SEALED_OVERHEAD) // SHORTEST_RELAY_LINE + 1
    return lines * (SHORTEST_RELAY_LINE * 4 // 3 + 2) + 4096
