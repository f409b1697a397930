"""Relays sealed mail to its home region over SMTP, with retry, backoff and bounces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
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
BATCH = 500  # due items per pass
LANES = 4  # connections per destination region


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
        due = await asyncio.to_thread(store.due_relays, time.time(), BATCH)
        by_dest: dict[str, list[RelayItem]] = defaultdict(list)
        for item in due:
            by_dest[item.dest_region].append(item)
        lanes = [items[lane::LANES] for items in by_dest.values() for lane in range(LANES)]
        outcomes = await asyncio.gather(*(self._send_lane(lane) for lane in lanes if lane))
        relayed = 0
        done: list[int] = []
        for item, failures in (pair for outcome in outcomes for pair in outcome):
            expired = time.time() - item.created > self.retry_window
            if any(not e.startswith("5") for e in failures.values()) and not expired:
                first = next(iter(failures.values()))
                await asyncio.to_thread(
                    store.relay_failed, item.id, first, time.time() + backoff(item.attempts)
                )
                continue
            if failures:
                log.warning("region %s: relay %d bounced: %s", self.region.id, item.id, failures)
                await self._bounce(item, failures)
            if len(failures) < len(item.rcpts):
                relayed += 1
            done.append(item.id)
        if done:
            # One commit for the pass; a crash before it only resends, and the home region
            # stores each relay id once.
            await asyncio.to_thread(store.relay_done, done)
        return relayed

    async def _send_lane(self, items: list[RelayItem]) -> list[tuple[RelayItem, dict[str, str]]]:
        """Send items to one region over one connection, in order. Each comes back with the
        recipients that failed and why (none: delivered); a permanent failure starts with
        '5'. A retry resends to every recipient: the home region stores a relay id once.
        Parallel lanes let the home region group-commit what they carry."""
        dest = self.config.region(items[0].dest_region).smtp
        results: list[tuple[RelayItem, dict[str, str]]] = []
        try:
            async with aiosmtplib.SMTP(
                hostname=dest.host, port=dest.port, timeout=30, validate_certs=False
            ) as client:
                for item in items:
                    data = self.region.planner.relay_message(item.dest_region, item.sealed)
                    try:
                        refused, _ = await client.sendmail(item.mail_from, list(item.rcpts), data)
                        failures = {r: f"{e.code} {e.message}" for r, e in refused.items()}
                    except aiosmtplib.SMTPRecipientsRefused as exc:
                        failures = {r.recipient: f"{r.code} {r.message}" for r in exc.recipients}
                        await client.rset()
                    except aiosmtplib.SMTPResponseException as exc:
                        failures = dict.fromkeys(item.rcpts, f"{exc.code} {exc.message}")
                        await client.rset()
                    results.append((item, failures))
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = f"4xx {type(exc).__name__}: {exc}"
            results += [(item, dict.fromkeys(item.rcpts, error)) for item in items[len(results) :]]
        return results

    async def _bounce(self, item: RelayItem, failures: dict[str, str]) -> None:
        """A DSN (RFC 3464) to the sender, without the sealed content we cannot read."""
        if not item.mail_from or self.region.directory.home(item.mail_from) is None:
            return
        domain = self.config.primary_domain
        boundary = f"dsn-{uuid.uuid4().hex}"
        per_recipient = "".join(
            f"\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.0.0\r\n"
            f"Diagnostic-Code: smtp; {error}\r\n"
            for rcpt, error in failures.items()
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
            f"Your message to {', '.join(failures)} could not be delivered to region"
            f" {item.dest_region} after {item.attempts + 1} attempt(s).\r\n\r\n"
            + "".join(f"{rcpt}: {error}\r\n" for rcpt, error in failures.items())
            + f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
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
