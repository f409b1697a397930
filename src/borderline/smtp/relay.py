"""Relays sealed mail to its home region over SMTP, with retry, backoff and bounces.

Every queued item succeeds or fails on its own: whatever goes wrong with one (a refusal,
an address the client library will not send, a region no longer configured) gives that
item a failure, never the pass. Each lane settles its items as soon as it is done, so no
item is sent again because another one failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import partial

import aiosmtplib

from borderline import observe
from borderline.cloud import Region
from borderline.config import Config
from borderline.smtp.dsn import GIVEN_UP, Failure, delivery_report
from borderline.smtp.ingress import GroupCommitter
from borderline.smtp.queue import (
    COMMAND_TIMEOUT,
    QueueWorker,
    guarded_transaction,
    jittered,
    observe_attempt,
)
from borderline.smtp.queue import backoff as _backoff
from borderline.store import RelayItem

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 3600.0
BATCH = 500  # due items per pass
LANES = 4  # connections per destination region

Outcome = tuple[RelayItem, dict[str, Failure]]


def operator_bounce(item: RelayItem, reason: str) -> dict[str, Failure]:
    """Every recipient of an item an operator bounced, with why, for the sender's DSN."""
    text = f"bounced by the operator after {item.attempts} attempts: {reason}"
    if item.last_error:
        text += f" (last error: {item.last_error})"
    return dict.fromkeys(item.rcpts, Failure(None, text, GIVEN_UP))


def backoff(attempts: int) -> float:
    """Seconds until the next try after `attempts` failures: 5 s doubling, capped at an hour
    (each retry is then jittered)."""
    return _backoff(attempts, FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS)


class RelayWorker(QueueWorker):
    def __init__(self, region: Region, config: Config, committer: GroupCommitter) -> None:
        super().__init__(region, committer)
        self.config = config
        self.retry_window = config.cloud.relay_retry_window_seconds
        committer.on_relay_queued = self.wake

    async def run_once(self) -> int:
        """One pass over due items; returns how many were relayed. Items an operator
        bounced are bounced without being sent. Passes never overlap, so an item is never
        sent and bounced at once."""
        due = await asyncio.to_thread(self.region.store.due_relays, time.time(), BATCH)
        bounced = [(item, operator_bounce(item, item.bounce)) for item in due if item.bounce]
        if bounced:
            await self._settle(bounced)
        by_dest: dict[str, list[RelayItem]] = defaultdict(list)
        for item in due:
            if not item.bounce:
                by_dest[item.dest_region].append(item)
        lanes = [items[lane::LANES] for items in by_dest.values() for lane in range(LANES)]
        relayed = await asyncio.gather(*(self._relay_lane(lane) for lane in lanes if lane))
        return sum(relayed)

    async def _relay_lane(self, items: list[RelayItem]) -> int:
        return await self._settle(await self._send_lane(items))

    async def _settle(self, outcomes: Sequence[Outcome]) -> int:
        """Record each item's outcome: relayed (or bounced) and removed in one commit, or
        due again after its backoff. Returns how many reached their home region."""
        store = self.region.store
        relayed = 0
        done: list[Outcome] = []
        retry: list[Outcome] = []
        for item, failures in outcomes:
            expired = item.bounce is not None or time.time() - item.created > self.retry_window
            if any(not f.permanent for f in failures.values()) and not expired:
                retry.append((item, failures))
                continue
            if failures:
                try:
                    await self._bounce(item, failures)
                except Exception:
                    log.exception("region %s: bounce of relay %d failed", self.region.id, item.id)
                    retry.append((item, failures))
                    continue
            if len(failures) < len(item.rcpts):
                relayed += 1
            done.append((item, failures))
        if done:
            # One commit for the lane; a crash before it only resends, and the home region
            # stores each relay id once.
            await asyncio.to_thread(store.relay_done, [item.id for item, _ in done])
        for item, failures in done:
            self._observe(item, failures, deferred=False)
        for item, failures in retry:
            error = str(next(iter(failures.values())))
            next_attempt = time.time() + jittered(backoff(item.attempts))
            await asyncio.to_thread(store.relay_failed, item.id, error, next_attempt)
            self._observe(item, failures, deferred=True)
        return relayed

    def _observe(self, item: RelayItem, failures: dict[str, Failure], deferred: bool) -> None:
        if item.bounce is not None:  # deferred: its DSN could not be committed, see above
            if not deferred:
                observe.operator_bounce(self.region.id, "relay", item.id)
            return
        observe_attempt(
            self.region.id,
            "relay",
            item.id,
            item.dest_region,
            rcpts=len(item.rcpts),
            failures=failures,
            attempts=item.attempts + 1,
            created=item.created,
            bounced=0 if deferred else len(failures),
            deferred=deferred,
        )

    async def _send_lane(self, items: list[RelayItem]) -> list[Outcome]:
        """Send items to one region over one connection, in order. Each comes back with the
        recipients that failed and why (none: delivered). A retry resends to every
        recipient: the home region stores a relay id once. Parallel lanes let the home
        region group-commit what they carry."""
        results: list[Outcome] = []
        try:
            dest = self.config.region(items[0].dest_region).smtp
            async with aiosmtplib.SMTP(
                hostname=dest.host,
                port=dest.port,
                timeout=COMMAND_TIMEOUT,
                validate_certs=False,
                local_hostname=self.config.host_name(self.region.id),
            ) as client:
                for item in items:
                    results.append((item, await self._send_item(client, item)))
        except Exception as exc:
            # The connection (or the destination) failed: every item not yet sent waits.
            log.warning("region %s: relay to %s: %r", self.region.id, items[0].dest_region, exc)
            failure = Failure(None, f"{type(exc).__name__}: {exc}")
            unsent = items[len(results) :]
            results += [(item, dict.fromkeys(item.rcpts, failure)) for item in unsent]
        return results

    async def _send_item(self, client: aiosmtplib.SMTP, item: RelayItem) -> dict[str, Failure]:
        """Read (one item's sealed bytes at a time, not a pass's), sign, then send."""
        planner, store = self.region.planner, self.region.store
        signed = await asyncio.to_thread(
            planner.signed_relay, item.dest_region, partial(store.relay_sealed, item.id)
        )
        if signed is None:
            return {}  # gone since the pass began (an operator removed it): nothing to send
        international = not (item.mail_from.isascii() and all(r.isascii() for r in item.rcpts))
        return await guarded_transaction(
            client,
            item.mail_from,
            item.rcpts,
            lambda: planner.relay_pieces(item.dest_region, *signed),
            ["SMTPUTF8"] if international else [],
        )

    async def _bounce(self, item: RelayItem, failures: dict[str, Failure]) -> None:
        """A DSN to the sender. None for the null reverse-path (RFC 5321 6.1: never answer a
        bounce with a bounce); none for a sender outside this cloud: the mail came from the
        Internet, its sender may be forged, and a bounce to it would be backscatter."""
        if not item.mail_from:
            return
        if self.region.directory.home(item.mail_from) is None:
            log.warning("region %s: no route for the bounce of relay %d", self.region.id, item.id)
            return
        report = delivery_report(
            reporting_mta=self.config.host_name(self.region.id),
            remote_mta=self.config.host_name(item.dest_region),
            postmaster=f"MAILER-DAEMON@{self.config.primary_domain}",
            sender=item.mail_from,
            failures=failures,
            arrival=item.created,
            attempts=item.attempts + 1,
        )
        await self.bounce(item.mail_from, report)
