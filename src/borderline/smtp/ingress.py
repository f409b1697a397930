"""SMTP ingress and submission: accept, commit durably, and only then answer 250."""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from borderline.cloud import Region
from borderline.delivery import Envelope as MailEnvelope
from borderline.delivery import RelayRejected, is_relay_message
from borderline.directory import DirectoryError, normalize_address
from borderline.store import Delivery, OutboundRelay
from borderline.throttle import LoginThrottle

log = logging.getLogger(__name__)

MAX_BATCH = 512


@dataclass
class _Pending:
    envelope: MailEnvelope
    done: asyncio.Future[str]


class GroupCommitter:
    """Collects accepted messages and commits them together: one fsync for many 250s."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.on_relay_queued: Callable[[], None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def commit(self, envelope: MailEnvelope) -> str:
        """Returns a queue id once the message is durable; raises if it is not."""
        pending = _Pending(envelope, asyncio.get_running_loop().create_future())
        await self._queue.put(pending)
        return await pending.done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                errors, queued_relays = await loop.run_in_executor(None, self._commit, batch)
                if queued_relays and self.on_relay_queued is not None:
                    self.on_relay_queued()
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

    def _commit(self, batch: Sequence[_Pending]) -> tuple[list[Exception | None], bool]:
        deliveries: list[Delivery] = []
        relays: list[OutboundRelay] = []
        errors: list[Exception | None] = []
        for pending in batch:
            try:
                plan = self.region.planner.plan(pending.envelope)
            except Exception as exc:
                errors.append(exc)
                continue
            deliveries.extend(plan.deliveries)
            relays.extend(plan.relays)
            errors.append(None)
        if deliveries or relays:
            self.region.store.deliver(deliveries, relays)
        return errors, bool(relays)


class IngressHandler:
    """aiosmtpd hooks for one region's MX (port 25) or submission listener."""

    def __init__(
        self,
        region: Region,
        committer: GroupCommitter,
        submission: bool,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.region = region
        self.committer = committer
        self.submission = submission
        self.throttle = throttle or LoginThrottle()

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4616 PLAIN, with the password check off the event loop and throttled: aiosmtpd
        calls its `authenticator` synchronously, and argon2 takes ~0.1 s per check."""
        if len(args) == 1:
            response = await server.challenge_auth("")
            if response is MISSING:
                return AuthResult(success=False)
        else:
            try:
                response = base64.b64decode(args[1].encode(), validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        try:
            authzid, login_bytes, password_bytes = bytes(response).split(b"\0")
        except ValueError:
            await server.push("501 5.5.2 Malformed PLAIN response")
            return AuthResult(success=False, handled=True)
        login = login_bytes.decode(errors="replace").strip().lower()
        if authzid and authzid.decode(errors="replace").lower() != login:
            return AuthResult(
                success=False, handled=False, message="535 5.7.8 Authorization identity mismatch"
            )
        peer = server.session.peer if server.session is not None else None
        ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if self.throttle.locked(login, ip):
            return AuthResult(
                success=False,
                handled=False,
                message="454 4.7.0 Too many failed logins; try again later",
            )
        password = password_bytes.decode(errors="replace")
        home_here = self.region.directory.home(login) == self.region.id
        ok = await self.throttle.attempt(
            lambda: self.region.check_password(login, password) and home_here, login, ip
        )
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.submission and address.lower() != str(session.auth_data).lower():
            return "553 5.7.1 Sender address must be the authenticated account"
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
        try:
            normalized = normalize_address(address)
        except DirectoryError:
            return "501 5.1.3 Bad recipient address syntax"
        home = self.region.directory.home(normalized)
        if home is None:
            domain = normalized.rpartition("@")[2]
            if domain in self.region.domains:
                return f"550 5.1.1 <{normalized}>: no such user here"
            return "550 5.7.1 Relaying denied: this cloud only accepts mail for its own domains"
        envelope.rcpt_tos.append(normalized)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if isinstance(content, str):
            content = content.encode()
        received = time.time()
        if is_relay_message(content):
            try:
                mail = self._open_relay(content, envelope.rcpt_tos)
            except RelayRejected as exc:
                log.warning("region %s: relay rejected: %s", self.region.id, exc)
                return f"554 5.7.0 Relay envelope rejected: {exc}"
        else:
            trace = self._received_header(session, envelope, received)
            mail = MailEnvelope(
                mail_from=envelope.mail_from or "",
                rcpts=tuple(envelope.rcpt_tos),
                content=trace + content,
                received=received,
            )
        try:
            queue_id = await self.committer.commit(mail)
        except Exception as exc:
            log.error("region %s: message not committed: %s", self.region.id, exc)
            return "451 4.3.0 Message not stored, try again later"
        return f"250 2.0.0 OK: queued as {queue_id}"

    def _open_relay(self, content: bytes, rcpts: Sequence[str]) -> MailEnvelope:
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

    def _received_header(self, session: Session, envelope: Envelope, received: float) -> bytes:
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        protocol = "ESMTP"
        if session.ssl is not None:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        helo = (session.host_name or "unknown").replace("\r", "").replace("\n", "")[:255]
        stamp = email.utils.formatdate(received, usegmt=True)
        return (
            f"Received: from {helo} ([{peer}])\r\n\tby {self.region.host_name}"
            f" with {protocol}; {stamp}\r\n"
        ).encode()
