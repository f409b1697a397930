"""SMTP ingress and submission: accept, commit durably, and only then answer 250."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from borderline.cloud import Region
from borderline.delivery import Envelope as MailEnvelope
from borderline.delivery import RelayRejected, is_relay_message
from borderline.directory import DirectoryError, normalize_address
from borderline.store import Delivery, OutboundRelay

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

    def __init__(self, region: Region, committer: GroupCommitter, submission: bool) -> None:
        self.region = region
        self.committer = committer
        self.submission = submission

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode(errors="replace").lower()
        password = auth_data.password.decode(errors="replace")
        if self.region.directory.home(login) != self.region.id:
            return AuthResult(success=False, handled=False)
        ok = self.region.check_password(login, password)
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
        mail = self.region.planner.open_relay_message(content)
        for rcpt in mail.rcpts:
            if self.region.directory.home(rcpt) != self.region.id:
                raise RelayRejected(f"{rcpt} is not homed in {self.region.id}")
        if set(mail.rcpts) - {r.lower() for r in rcpts}:
            raise RelayRejected("sealed recipients differ from the SMTP envelope")
        return mail

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
            f"Received: from {helo} ([{peer}])\r\n\tby {self.region.id}.borderline"
            f" with {protocol}; {stamp}\r\n"
        ).encode()
