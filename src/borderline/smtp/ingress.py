"""SMTP ingress and submission: accept, commit durably, and only then answer 250.

A message's plaintext lives only until it is encrypted (or sealed): the committer holds
the only reference to it and drops it as soon as it is planned, before the store write.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import logging
import secrets
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from borderline import observe
from borderline.cloud import Region
from borderline.delivery import Content, Plan, RelayRejected, is_relay_message
from borderline.delivery import Envelope as MailEnvelope
from borderline.directory import POSTMASTER, DirectoryError, normalize_address
from borderline.smtp.inbound_auth import InboundAuthenticator
from borderline.smtp.limits import SendingLimit
from borderline.smtp.submission import sender_refusal
from borderline.smtp.transaction import Transaction, queued
from borderline.store import (
    Delivery,
    MailboxNotFound,
    OutboundMessage,
    OutboundRelay,
    StoreError,
)
from borderline.throttle import Guesses, LoginThrottle

log = logging.getLogger(__name__)

MAX_BATCH = 512
NULL_REVERSE_PATH = "<>"
OVER_SENDING_LIMIT = "451 4.7.0 This account's sending limit is reached; try again later"


@dataclass
class _Pending:
    envelope: MailEnvelope | None  # dropped once planned: the plaintext goes with it
    done: asyncio.Future[str]


class GroupCommitter:
    """Collects accepted messages and commits them together: one fsync for many 250s."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.on_relay_queued: Callable[[], None] | None = None
        self.on_outbound_queued: Callable[[], None] | None = None
        # Called on the loop with the ids of the mailboxes a commit delivered to (IMAP's
        # IDLE sessions hear of new mail at once; runtime.py wires it).
        self.on_delivered: Callable[[set[int]], None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def commit(self, envelope: MailEnvelope) -> str:
        """Returns a queue id once the message is durable; raises if it is not. Call it
        holding no other reference to the envelope, so its plaintext can go once planned."""
        pending = _Pending(envelope, asyncio.get_running_loop().create_future())
        del envelope
        await self._queue.put(pending)
        return await pending.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit_batch(batch)
            del batch  # nothing of a committed message outlives its commit

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            errors, relayed, sent, mailboxes = await loop.run_in_executor(None, self._commit, batch)
            if relayed and self.on_relay_queued is not None:
                self.on_relay_queued()
            if sent and self.on_outbound_queued is not None:
                self.on_outbound_queued()
            if mailboxes and self.on_delivered is not None:
                self.on_delivered(mailboxes)
        except Exception as exc:
            log.exception("region %s: store commit failed", self.region.id)
            errors = [exc] * len(batch)
        for pending, error in zip(batch, errors, strict=True):
            if pending.done.done():
                continue
            if error is None:
                pending.done.set_result(secrets.token_hex(6).upper())
            else:
                pending.done.set_exception(error)

    def _commit(
        self, batch: Sequence[_Pending]
    ) -> tuple[list[Exception | None], bool, bool, set[int]]:
        """Plan and commit a batch: each message's error (None: committed), whether relays
        and mail to the Internet were queued, and the mailboxes delivered to."""
        deliveries: list[Delivery] = []
        relays: list[OutboundRelay] = []
        outbound: list[OutboundMessage] = []
        errors: list[Exception | None] = []
        for pending in batch:
            try:
                plan = self._plan(pending)
            except Exception as exc:
                errors.append(exc)
                continue
            deliveries.extend(plan.deliveries)
            relays.extend(plan.relays)
            outbound.extend(plan.outbound)
            errors.append(None)
        placed = (
            self.region.store.deliver(deliveries, relays, outbound)
            if deliveries or relays or outbound
            else []
        )
        return errors, bool(relays), bool(outbound), {placement.mailbox_id for placement in placed}

    def _plan(self, pending: _Pending) -> Plan:
        envelope, pending.envelope = pending.envelope, None
        assert envelope is not None
        plan = self.region.planner.plan(envelope, consume=True)
        if envelope.mailbox == "INBOX":
            return plan
        # An account may have deleted its Junk folder: its mail still arrives.
        return replace(plan, deliveries=tuple(map(self._to_existing_mailbox, plan.deliveries)))

    def _to_existing_mailbox(self, delivery: Delivery) -> Delivery:
        try:
            self.region.store.mailbox(delivery.account, delivery.mailbox)
        except MailboxNotFound:
            return replace(delivery, mailbox="INBOX")
        return delivery


class IngressHandler:
    """aiosmtpd hooks for one region's MX (port 25) or submission listener."""

    def __init__(
        self,
        region: Region,
        committer: GroupCommitter,
        submission: bool,
        summaries: Executor,
        throttle: LoginThrottle | None = None,
        hostname: str = "localhost",
        max_recipients: int = 1000,
        authenticator: InboundAuthenticator | None = None,
        sending: SendingLimit | None = None,
    ) -> None:
        self.region = region
        self.sending = sending
        self.authenticator = authenticator
        self.committer = committer
        self.submission = submission
        self.summaries = summaries
        self.throttle = throttle or LoginThrottle()
        self.hostname = hostname
        self.max_recipients = max_recipients
        # Each connection's guesses, gone with the connection (see throttle.Guesses).
        self._guesses: weakref.WeakKeyDictionary[SMTP, Guesses] = weakref.WeakKeyDictionary()
        # Each logged-in connection's count of its account's deletions at the login.
        self._logins: weakref.WeakKeyDictionary[SMTP, int] = weakref.WeakKeyDictionary()

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4616 PLAIN, with the password check off the event loop and throttled: aiosmtpd
        calls its `authenticator` synchronously, and argon2 takes ~0.1 s per check."""
        if len(args) == 1:
            response = await _challenge(server, "")
            if response is None:
                return AuthResult(success=False, handled=True)
        else:
            response = await _initial_response(server, args[1])
            if response is None:
                return AuthResult(success=False, handled=True)
        try:
            authzid, login_bytes, password_bytes = response.split(b"\0")
        except ValueError:
            await server.push("501 5.5.2 Malformed PLAIN response")
            return AuthResult(success=False, handled=True)
        login = login_bytes.decode(errors="replace").strip().lower()
        if authzid and authzid.decode(errors="replace").lower() != login:
            return AuthResult(
                success=False, handled=False, message="535 5.7.8 Authorization identity mismatch"
            )
        return await self._login(server, login, password_bytes)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """The LOGIN mechanism many mail clients still use (draft-murchison-sasl-login): the
        user name (in the AUTH command or after a challenge), then the password; checked and
        throttled as PLAIN is. Offered only over TLS, as PLAIN."""
        if len(args) == 1:
            login_bytes = await _challenge(server, "Username:")
        else:
            login_bytes = await _initial_response(server, args[1])
        if login_bytes is None:
            return AuthResult(success=False, handled=True)
        password_bytes = await _challenge(server, "Password:")
        if password_bytes is None:
            return AuthResult(success=False, handled=True)
        login = login_bytes.decode(errors="replace").strip().lower()
        return await self._login(server, login, password_bytes)

    async def _login(self, server: SMTP, login: str, password_bytes: bytes) -> AuthResult:
        """Check a password through the region's login throttle (shared with IMAP)."""
        peer = server.session.peer if server.session is not None else None
        ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if self.throttle.locked(login, ip):
            observe.login(self.region.id, "submission", "locked", address=login, ip=ip)
            return AuthResult(
                success=False,
                handled=False,
                message="454 4.7.0 Too many failed logins; try again later",
            )
        password = password_bytes.decode(errors="replace")
        # Before the check: an account deleted meanwhile (its address maybe given to a new
        # owner) must not be logged into with the password it had.
        generation = self.region.deletions[login]
        home_here = self.region.directory.home(login) == self.region.id
        guesses = self._guesses.get(server)
        if guesses is None:
            guesses = self._guesses[server] = Guesses(self.throttle)
        ok = await guesses.attempt(
            lambda: self.region.check_password(login, password) and home_here,
            login,
            ip,
            password,
        )
        ok = ok and self.region.deletions[login] == generation
        observe.login(self.region.id, "submission", "ok" if ok else "failed", address=login, ip=ip)
        if ok:
            self._logins[server] = generation
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._account_gone(server, session):
            return self._hang_up(server)
        if self.submission and not may_send_as(self.region, str(session.auth_data), address):
            return "553 5.7.1 Sender address must be the authenticated account"
        if self.sending is not None and not self.sending.allows(str(session.auth_data)):
            return OVER_SENDING_LIMIT
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"  # RFC 5321 4.5.3.1.10
        if self.sending is not None and not self.sending.allows(
            str(session.auth_data), len(envelope.rcpt_tos) + 1
        ):
            return OVER_SENDING_LIMIT
        if address.lower() == POSTMASTER:  # RFC 5321 4.5.1: no domain, this host's
            address = f"{POSTMASTER}@{self.region.domains[0]}"
        try:
            normalized: str | None = normalize_address(address)
        except DirectoryError:  # a quoted local part, an address literal, one label
            normalized = None
        account = None if normalized is None else self.region.account_for(normalized)
        if account is None:
            domain = address.rpartition("@")[2].lower()
            if domain in self.region.domains:
                return f"550 5.1.1 <{address.lower()}>: no such user here"
            if not (self.submission and session.authenticated):
                return "550 5.7.1 Relaying denied: this cloud only accepts mail for its own domains"
            if normalized is None:
                return (
                    "553 5.1.3 Not sent out: a quoted local part, an address literal or a"
                    " one-label domain"
                )
            # Mail to the Internet, from an account homed here: it leaves from here.
            account = normalized
        envelope.rcpt_tos.append(account)  # an alias, a tag, a role address: its account
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._account_gone(server, session):  # deleted while the message came in
            return self._hang_up(server)
        accepted = await self._accept(session, envelope)
        if isinstance(accepted, str):
            return accepted
        sender, recipients = str(session.auth_data), len(envelope.rcpt_tos)
        if self.sending is not None and not self.sending.take(sender, recipients):
            return OVER_SENDING_LIMIT  # other connections of the account spent it meanwhile
        planner = self.region.planner
        if not planner.cheap_to_summarize(accepted.content):
            accepted = await asyncio.get_running_loop().run_in_executor(
                self.summaries, planner.summarized, accepted
            )
        # The committer gets the only reference to the message (see GroupCommitter.commit).
        commit = self.committer.commit(accepted)
        del accepted
        try:
            queue_id = await commit
        except Exception as exc:
            # A store that fails is logged by the committer, with its traceback; anything
            # else is a bug planning this message, whose traceback is the only clue.
            log.error(
                "region %s: message not committed: %s",
                self.region.id,
                exc,
                exc_info=not isinstance(exc, StoreError),
            )
            if self.sending is not None:
                self.sending.give_back(sender, recipients)
            return "451 4.3.0 Message not stored, try again later"
        queued(envelope, queue_id)
        return f"250 2.0.0 OK: queued as {queue_id}"

    def _account_gone(self, server: SMTP, session: Session) -> bool:
        """Whether the account this session logged in as was deleted since: its address
        may even be a new account's by now, which this login must not send as."""
        at_login = self._logins.get(server)
        return at_login is not None and self.region.deletions[str(session.auth_data)] != at_login

    def _hang_up(self, server: SMTP) -> str:
        """The reply that ends the session; the connection closes once it is written
        (aiosmtpd writes a handler's reply before it next yields to the loop, and a closing
        transport sends what was written first)."""
        if server.transport is not None:
            asyncio.get_running_loop().call_soon(server.transport.close)
        return f"421 4.7.0 {self.hostname} This account no longer exists"

    async def _accept(self, session: Session, envelope: Envelope) -> MailEnvelope | str:
        """The message to commit, or the reply that refuses it. It takes the content from
        aiosmtpd's envelope, so nothing else keeps the plaintext."""
        assert isinstance(envelope, Transaction)
        content: Content = envelope.message or bytearray()
        envelope.message = None
        if is_relay_message(content):
            try:  # verifying and opening a large envelope takes a while: not on the loop
                return await asyncio.to_thread(self._open_relay, content, envelope.rcpt_tos)
            except RelayRejected as exc:
                log.debug("region %s: relay rejected: %s", self.region.id, exc)
                return f"554 5.7.0 Relay envelope rejected: {exc}"
        if self.submission:
            account = str(session.auth_data)
            refusal = await asyncio.to_thread(
                sender_refusal, content, lambda address: may_send_as(self.region, account, address)
            )
            if refusal is not None:
                return refusal
        received = time.time()
        # aiosmtpd keeps the null reverse-path (RFC 5321 4.5.5) as "<>".
        reverse_path = envelope.mail_from or ""
        mail_from = "" if reverse_path == NULL_REVERSE_PATH else reverse_path
        trace = self._received_header(session, received)
        mailbox = "INBOX"
        if self.authenticator is not None and not self.submission:
            # The checks take bytes (DKIM's copies the body anyway): the buffer goes.
            content = bytes(content)
            verdict = await self.authenticator.verdict(
                content,
                _peer_ip(session),
                mail_from,
                session.host_name or "",
                envelope.rcpt_tos,
            )
            if verdict.refusal is not None:
                return verdict.refusal
            content, trace, mailbox = verdict.content, trace + verdict.header, verdict.mailbox
        return MailEnvelope(
            mail_from=mail_from,
            rcpts=tuple(envelope.rcpt_tos),
            content=content,
            received=received,
            trace=trace,
            submitted=self.submission,
            mailbox=mailbox,
        )

    def _open_relay(self, content: Content, rcpts: Sequence[str]) -> MailEnvelope:
        """Open a relay envelope and deliver it to the SMTP recipients this region accepted:
        each must be one the sender sealed (no recipient can be added on the way)."""
        mail = self.region.planner.open_relay_message(content)
        accepted = {r.lower() for r in rcpts}
        if accepted - set(mail.rcpts):
            raise RelayRejected("the SMTP envelope names recipients the sealed one does not")
        for rcpt in accepted:
            if self.region.directory.home(rcpt) != self.region.id:
                raise RelayRejected(f"{rcpt} is not homed in {self.region.id}")
        return replace(mail, rcpts=tuple(r for r in mail.rcpts if r in accepted))

    def _received_header(self, session: Session, received: float) -> bytes:
        """RFC 5321 4.4 trace line. The HELO name is the client's: only printable
        characters of it are kept, so it cannot add header lines."""
        peer = _peer_ip(session)
        protocol = "ESMTP"
        if session.ssl is not None:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        helo = session.host_name or ""
        if not (helo.isascii() and helo.isprintable() and " " not in helo):
            helo = "".join(c if c.isprintable() and not c.isspace() else "?" for c in helo)
        stamp = email.utils.formatdate(received, usegmt=True)
        return (
            f"Received: from {helo[:255] or 'unknown'} ([{peer}])\r\n\tby {self.hostname}"
            f" with {protocol}; {stamp}\r\n"
        ).encode(errors="replace")


def _peer_ip(session: Session) -> str:
    return str(session.peer[0]) if isinstance(session.peer, tuple) else str(session.peer)


async def _challenge(server: SMTP, prompt: str) -> bytes | None:
    """The client's base64 answer to a 334 challenge, or None once the refusal is sent
    (aiosmtpd sends it for a cancelled exchange or bad base64)."""
    try:
        response = await server.challenge_auth(prompt)
    except ValueError:  # an answer longer than a line may be: the reader's limit
        await server.push("500 5.5.6 Authentication exchange line is too long")
        return None
    return None if response is MISSING else bytes(response)


async def _initial_response(server: SMTP, argument: str) -> bytes | None:
    """The initial response given with AUTH (RFC 4954 4; "=" is an empty one), or None once
    the refusal is sent."""
    if argument == "=":
        return b""
    try:
        return base64.b64decode(argument.encode(errors="surrogateescape"), validate=True)
    except binascii.Error:
        await server.push("501 5.5.2 Can't decode base64")
        return None


def may_send_as(region: Region, account: str, address: str) -> bool:
    """Whether an authenticated account may send as an address: one delivered to it (its
    own, its aliases and tagged forms, postmaster@ and abuse@ for the role account)."""
    try:
        return region.account_for(normalize_address(address)) == normalize_address(account)
    except DirectoryError:
        return False
