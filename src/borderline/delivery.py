"""Where accepted mail goes: encrypted into this region's store, sealed for its home, or
(mail an account of this region submitted to the Internet) signed and queued here to leave
from here.

Pure planning and crypto, no network: SMTP ingress, the relay and IMAP APPEND share it.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import io
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from borderline.directory import Directory, DirectoryError
from borderline.domains import ascii_domain
from borderline.store import Delivery, OutboundMessage, OutboundRelay
from borderline.vault import SealedMessageError, Vault, seal

log = logging.getLogger(__name__)
RELAY_HEADER = b"X-Borderline-Relay"
SIGNATURE_HEADER = b"X-Borderline-Signature"
# Base64 in lines of 996 characters and a <CR><LF>, within RFC 5321's 1,000 octets: 998
# bytes on the wire for 747 sealed. Long lines because the SMTP client (aiosmtplib) rewrites
# every line ending of the data through a regular expression, whose pieces cost more memory
# than the message itself when the lines are short (76 characters: 6.4x the message).
RELAY_LINE = 747
RELAY_LINE_CHARS = RELAY_LINE * 4 // 3
# The shortest lines a region of an older version sends (76 characters); the home region's
# size limit leaves room for them, so a message at the limit crosses during an upgrade.
SHORTEST_RELAY_LINE = 57
# Room in a sealed message besides its content: the header that names the recipients
# (at most 1,000 of up to 254 octets), the trace lines, the HPKE key and tag.
SEALED_OVERHEAD = 512 * 1024


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
    content: bytes
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


def complete_header(content: bytes, domain: str, received: float) -> bytes:
    """A submitted message with the Date and Message-ID an author's client left out added
    (RFC 6409 8.2 and 8.3), so what leaves is a complete RFC 5322 message."""
    end = content.find(b"\r\n\r\n")
    head = content if end < 0 else content[: end + 2]
    names = {line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n")}
    added = b""
    if b"date" not in names:
        added += b"Date: " + email.utils.formatdate(received, usegmt=True).encode() + b"\r\n"
    if b"message-id" not in names:
        added += b"Message-ID: " + email.utils.make_msgid(domain=domain).encode() + b"\r\n"
    return added + content if added else content


def _relay_signed_bytes(from_region: str, dest_region: str, sealed: bytes) -> bytes:
    return f"borderline-relay-v1\n{from_region}\n{dest_region}\n".encode() + sealed


class DeliveryPlanner:
    """Splits an accepted message by recipient home region (invariants 1 and 2)."""

    def __init__(self, region_id: str, vault: Vault, directory: Directory) -> None:
        self.region_id = region_id
        self.vault = vault
        self.directory = directory
        # What IMAP reads of a message (head, content) instead of the message: set by the
        # composition root (runtime.py), since computing it is IMAP's business. Without it
        # messages are stored with no summary, and the first session to read one adds it.
        self.summarize: Callable[[bytes, bytes], bytes] | None = None
        # Whether summarize() of a message's content is cheap enough to run inside the group
        # commit (also wired by runtime.py); the accepting session computes the others.
        self.cheap_to_summarize: Callable[[bytes], bool] = lambda content: False

    def local_delivery(
        self,
        address: str,
        content: bytes,
        received: float,
        mailbox: str = "INBOX",
        flags: frozenset[str] = frozenset(),
        relay_id: str | None = None,
        head: bytes = b"",
        summary: bytes | Pending | None = Pending.LATER,
    ) -> Delivery:
        """`head`: header lines this server adds before the content; `summary`: the
        message's, computed already (one message to many recipients is summarized once)."""
        if summary is Pending.LATER:
            summary = self._summary(head, content)
        return Delivery(
            account=address,
            blob=self.vault.encrypt(address, head, content),
            size=len(head) + len(content),
            internal_date=received,
            mailbox=mailbox,
            flags=flags,
            relay_id=relay_id,
            summary=None if summary is None else self.vault.encrypt_summary(address, summary),
        )

    def _summary(self, head: bytes, content: bytes) -> bytes | None:
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

    def plan(self, envelope: Envelope) -> Plan:
        deliveries: list[Delivery] = []
        remote: dict[str, list[str]] = {}
        internet: dict[str, list[str]] = {}
        head = _head(envelope)
        summary = envelope.summary
        for rcpt in dict.fromkeys(r.lower() for r in envelope.rcpts):
            home = self.directory.home(rcpt)
            if home is None:
                if not (envelope.submitted and self._sends_from_here(envelope.mail_from)):
                    raise ValueError(f"{rcpt} has no home region")
                domain = rcpt.rpartition("@")[2]
                internet.setdefault(ascii_domain(domain) or domain, []).append(rcpt)
            elif home == self.region_id:
                if summary is Pending.LATER:
                    summary = self._summary(head, envelope.content)
                deliveries.append(
                    self.local_delivery(
                        rcpt,
                        envelope.content,
                        envelope.received,
                        mailbox=envelope.mailbox,
                        relay_id=envelope.relay_id,
                        head=head,
                        summary=summary,
                    )
                )
            else:
                remote.setdefault(home, []).append(rcpt)
        relays = tuple(
            OutboundRelay(
                dest_region=home,
                mail_from=envelope.mail_from,
                rcpts=tuple(rcpts),
                sealed=self._seal_for(home, envelope, rcpts),
            )
            for home, rcpts in remote.items()
        )
        return Plan(tuple(deliveries), relays, self._outbound(envelope, internet))

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

    def _seal_for(self, home: str, envelope: Envelope, rcpts: Sequence[str]) -> bytes:
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
        return seal(
            keys.sealing_key, home, b"".join((header, b"\n", envelope.trace, envelope.content))
        )

    def relay_message(self, dest_region: str, sealed: bytes) -> bytes:
        """The SMTP DATA that carries sealed mail to its home region, signed by this one."""
        signature = self.vault.signing_key.sign(
            _relay_signed_bytes(self.region_id, dest_region, sealed)
        )
        message = io.BytesIO()
        message.write(
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
        step = RELAY_LINE * 4096
        for start in range(0, len(sealed), step):
            lines = binascii.b2a_base64(view[start : start + step], newline=False)
            for line in range(0, len(lines), RELAY_LINE_CHARS):
                message.write(lines[line : line + RELAY_LINE_CHARS])
                message.write(b"\r\n")
        return message.getvalue()

    def open_relay_message(self, data: bytes) -> Envelope:
        """Verify and open an inbound relay envelope addressed to this region."""
        end = data.find(b"\r\n\r\n")
        head, body = (data, b"") if end < 0 else (data[:end], memoryview(data)[end + 4 :])
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
        try:
            sealed = binascii.a2b_base64(body)
            signature = base64.b64decode(fields.get(SIGNATURE_HEADER.lower(), b""))
            Ed25519PublicKey.from_public_bytes(keys.signing_key).verify(
                signature, _relay_signed_bytes(from_region, self.region_id, sealed)
            )
        except (InvalidSignature, ValueError, binascii.Error) as exc:
            raise RelayRejected(f"relay envelope from {from_region!r} fails verification") from exc
        try:
            header, _, content = self.vault.open_sealed(sealed).partition(b"\n")
            meta = json.loads(header)
            envelope = Envelope(
                mail_from=str(meta["mail_from"]),
                rcpts=tuple(str(r) for r in meta["rcpts"]),
                content=content,
                received=float(meta["received"]),
                relay_id=str(meta["id"]),
                mailbox="Junk" if meta.get("mailbox") == "Junk" else "INBOX",
            )
        except (SealedMessageError, ValueError, KeyError, TypeError) as exc:
            raise RelayRejected(f"sealed relay envelope is malformed: {exc}") from exc
        if meta.get("from_region") != from_region:
            raise RelayRejected("sealed header names another sending region")
        return envelope


def is_relay_message(data: bytes) -> bool:
    return data[: len(RELAY_HEADER) + 1].lower() == RELAY_HEADER.lower() + b":"


def relay_size_limit(max_message_size: int) -> int:
    """The largest relay envelope a message of the size limit can need: sealing and base64
    make it about 1.37 times the message, so the home region accepts it from a region that
    accepted the message."""
    lines = (max_message_size + SEALED_OVERHEAD) // SHORTEST_RELAY_LINE + 1
    return lines * (SHORTEST_RELAY_LINE * 4 // 3 + 2) + 4096
