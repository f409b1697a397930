"""What the relay and the outbound worker share: a loop that runs a pass when mail is queued
or every half second, backoff with jitter, one SMTP transaction with an outcome per
recipient, and bounces to local senders."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence

import aiosmtplib

from borderline import observe
from borderline.cloud import Region
from borderline.delivery import Envelope
from borderline.smtp.dsn import Failure
from borderline.smtp.ingress import GroupCommitter
from borderline.smtp.streamed_data import send_data

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# RFC 5321 4.5.3.2, client side: 5 minutes for the greeting and each command, 10 for the
# reply to the end of data (which covers sending it).
COMMAND_TIMEOUT = 300.0
DATA_TIMEOUT = 600.0
JITTER = 0.25  # a retry comes up to a quarter earlier or later than its backoff says


def backoff(attempts: int, first: float, cap: float) -> float:
    """Seconds until the next try after `attempts` failures: `first`, doubling, capped."""
    return min(first * 2.0 ** max(attempts, 0), cap)


def observe_attempt(
    region: str,
    queue: observe.QueueName,
    item_id: int,
    destination: str,
    *,
    rcpts: int,
    failures: dict[str, Failure],
    attempts: int,
    created: float,
    bounced: int,
    deferred: bool,
) -> None:
    """One attempt at a queued item, as the relay and the outbound worker both report it:
    `failures` among its `rcpts` recipients, `bounced` of them for good."""
    delivered = rcpts - len(failures)
    failure = next(iter(failures.values()), None)
    observe.delivery_attempt(
        region,
        queue,
        item_id,
        destination,
        "deferred" if deferred else "delivered" if delivered else "bounced",
        attempts=attempts,
        delivered=delivered,
        bounced=bounced,
        latency=None if deferred or not delivered else time.time() - created,
        error_code=None if failure is None else failure.code,
        error=None if failure is None else str(failure),
    )


def jittered(seconds: float) -> float:
    """Spread retries of items that failed together, so they do not all come back at once."""
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


class QueueWorker(ABC):
    """Runs `run_once` whenever woken (mail was queued) and at least every POLL_SECONDS; a
    pass that fails is logged and the next one runs as usual. Woken, it waits
    `gather_seconds` first, so that mail arriving together is sent in one pass."""

    gather_seconds = 0.0

    def __init__(self, region: Region, committer: GroupCommitter) -> None:
        self.region = region
        self.committer = committer
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
                log.exception("region %s: %s pass failed", self.region.id, type(self).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                await asyncio.sleep(self.gather_seconds)
            self._wake.clear()

    @abstractmethod
    async def run_once(self) -> int:
        """One pass over the due items; how many it sent, or handed on (each subclass
        says which)."""

    async def bounce(self, sender: str, report: bytes) -> None:
        """Deliver a DSN to a sender of this cloud, as mail from the null reverse-path."""
        await self.committer.commit(
            Envelope(mail_from="", rcpts=(sender,), content=report, received=time.time())
        )


async def guarded_transaction(
    client: aiosmtplib.SMTP,
    mail_from: str,
    rcpts: Sequence[str],
    data: Callable[[], bytes | Iterator[bytes]],
    options: Sequence[str] = (),
    remote_mta: str | None = None,
) -> dict[str, Failure]:
    """MAIL, each RCPT, and DATA (made by `data`) if any recipient was accepted: the
    recipients that failed and why (none: delivered to all). Addresses go as UTF-8 when
    SMTPUTF8 is among the options. Replies are failures, and so is anything about this
    item alone that goes wrong (an address the client library will not send, say: a
    temporary one); a broken connection is raised for the caller's other items."""
    try:
        return await _transaction(client, mail_from, rcpts, data, options, remote_mta)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError):
        raise
    except Exception as exc:
        log.exception("transaction from %s failed", mail_from)
        await client.rset()
        return dict.fromkeys(rcpts, Failure(None, f"{type(exc).__name__}: {exc}"))


async def _transaction(
    client: aiosmtplib.SMTP,
    mail_from: str,
    rcpts: Sequence[str],
    data: Callable[[], bytes | Iterator[bytes]],
    options: Sequence[str],
    remote_mta: str | None,
) -> dict[str, Failure]:
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    try:
        await client.mail(mail_from, options=list(options), encoding=encoding)
    except aiosmtplib.SMTPResponseException as exc:
        await client.rset()
        return dict.fromkeys(rcpts, Failure(exc.code, exc.message, remote_mta=remote_mta))
    failures: dict[str, Failure] = {}
    for rcpt in rcpts:
        try:
            await client.rcpt(rcpt, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            failures[rcpt] = Failure(exc.code, exc.message, remote_mta=remote_mta)
    if len(failures) == len(rcpts):
        await client.rset()
        return failures
    try:
        await send_data(client, data(), DATA_TIMEOUT)
    except aiosmtplib.SMTPResponseException as exc:
        failure = Failure(exc.code, exc.message, remote_mta=remote_mta)
        failures |= {rcpt: failure for rcpt in rcpts if rcpt not in failures}
    return failures
