"""Relays sealed mail to its home region over SMTP, with retry, backoff and bounces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from email.utils import formatdate, make_msgid

import aiosmtplib

from borderline.cloud import Region
from borderline.config import Config
from borderline.delivery import Envelope
from borderline.smtp.ingress import GroupCommitter
from borderline.store import RelayItem

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 3600.0
POLL_SECONDS = 0.5


def backoff(attempts: int) -> float:
    """Seconds until the next try after `attempts` failures: 5 s doubling, capped at an hour."""
    return min(FIRST_RETRY_SECONDS * 2.0 ** max(attempts, 0), MAX_RETRY_SECONDS)


class RelayWorker:
    def __init__(self, region: Region, config: Config, committer: GroupCommitter) -> None:
        self.region = region
        self.config = config
        self.committer = committer
        self.retry_window = config.cloud.relay_retry_window_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        committer.on_relay_queued = self.wake

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("region %s: relay pass failed", self.region.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()

    async def run_once(self) -> int:
        """One pass over due items; returns how many were relayed."""
        store = self.region.store
        due = await asyncio.to_thread(store.due_relays, time.time())
        relayed = 0
        for item in due:
            error = await self._send(item)
            if error is None:
                await asyncio.to_thread(store.relay_done, item.id)
                relayed += 1
            elif error.startswith("5") or time.time() - item.created > self.retry_window:
                log.warning("region %s: relay %d bounced: %s", self.region.id, item.id, error)
                await self._bounce(item, error)
                await asyncio.to_thread(store.relay_done, item.id)
            else:
                await asyncio.to_thread(
                    store.relay_failed, item.id, error, time.time() + backoff(item.attempts)
                )
        return relayed

    async def _send(self, item: RelayItem) -> str | None:
        """None on success, else the error; a permanent one starts with '5'."""
        dest = self.config.region(item.dest_region).smtp
        data = self.region.planner.relay_message(item.dest_region, item.sealed)
        try:
            async with aiosmtplib.SMTP(
                hostname=dest.host, port=dest.port, timeout=30, validate_certs=False
            ) as client:
                await client.sendmail(item.mail_from, list(item.rcpts), data)
        except aiosmtplib.SMTPResponseException as exc:
            return f"{exc.code} {exc.message}"
        except (aiosmtplib.SMTPException, OSError) as exc:
            return f"4xx {type(exc).__name__}: {exc}"
        return None

    async def _bounce(self, item: RelayItem, error: str) -> None:
        """A DSN (RFC 3464) to the sender, without the sealed content we cannot read."""
        if not item.mail_from or self.region.directory.home(item.mail_from) is None:
            return
        domain = self.config.primary_domain
        boundary = f"dsn-{uuid.uuid4().hex}"
        per_recipient = "".join(
            f"\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.0.0\r\n"
            f"Diagnostic-Code: smtp; {error}\r\n"
            for rcpt in item.rcpts
        )
        report = (
            f"From: Mail Delivery System <MAILER-DAEMON@{domain}>\r\n"
            f"To: <{item.mail_from}>\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"Message-ID: {make_msgid(domain=domain)}\r\n"
            "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
            f"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Your message to {', '.join(item.rcpts)} could not be delivered to region"
            f" {item.dest_region} after {item.attempts + 1} attempts.\r\n\r\n"
            f"Last error: {error}\r\n"
            f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; {self.region.id}.borderline\r\n{per_recipient}"
            f"\r\n--{boundary}--\r\n"
        )
        await self.committer.commit(
            Envelope(
                mail_from="",
                rcpts=(item.mail_from,),
                content=report.encode(),
                received=time.time(),
            )
        )
