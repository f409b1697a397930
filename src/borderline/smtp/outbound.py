"""Mail to the Internet, delivered from the sender's home region (invariant 10).

Each pass takes the due items of the outbound queue, groups them by destination domain and
plans each domain once (`outbound_route.plan`: MX hosts, MTA-STS, the TLS each MX must be
reached with). A domain's items go out over at most `connections_per_domain` connections at
once, each carrying up to `messages_per_connection` messages, with at most
`connections_per_mx` open to one MX host and `max_connections` in all. Per recipient, a
delivery or a permanent refusal is final (refusals are bounced to the sender in one DSN);
a temporary failure is retried with backoff and jitter, the sender is told once if the mail
is still queued after `delay_warning_seconds`, and it is bounced when the retry window or
the attempts run out.

Every item succeeds or fails on its own: its own problems (a message the destination cannot
take, a blob that does not open) are that item's failures, a broken connection fails only
the items of that connection not yet sent, and a domain that cannot be planned only that
domain's items.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

import aiosmtplib
import dns.asyncresolver
import dns.resolver

from borderline import observe
from borderline.cloud import Region
from borderline.config import Config, DnsSection
from borderline.delivery import header_block
from borderline.domains import ascii_domain
from borderline.smtp.dsn import GIVEN_UP, Failure, delivery_report
from borderline.smtp.ingress import GroupCommitter
from borderline.smtp.outbound_route import (
    Hop,
    IpAddress,
    MtaSts,
    Route,
    RouteError,
    StsMode,
    TlsRequirement,
    plan,
    public_address,
    tls_context,
)
from borderline.smtp.queue import (
    COMMAND_TIMEOUT,
    QueueWorker,
    backoff,
    guarded_transaction,
    jittered,
    observe_attempt,
)
from borderline.store import OutboundItem

log = logging.getLogger(__name__)

BATCH = 500  # due items per pass
LOOKUPS = 16  # domains planned at once (each lookup is bounded by outbound_route's limits)
# A connection with nothing more to send is kept this long for the next pass (Postfix's
# smtp_connection_cache_time_limit), so a steady flow of mail to a domain reuses it.
IDLE_SECONDS = 2.0
# RFC 3463 codes for what is decided here, without a reply from the destination.
NO_CONNECTION = "4.4.1"  # no answer from host
TLS_REFUSED = "4.7.5"  # cryptographic failure: MTA-STS forbids sending without valid TLS
NON_ASCII_ADDRESS = "5.6.7"  # RFC 6531 3.5: SMTPUTF8 needed for an address, not offered
UTF8_HEADER = "5.6.9"  # RFC 6531 3.5, RFC 6532: a UTF-8 header the destination cannot take
EIGHT_BIT = "5.6.3"  # RFC 6152: 8-bit data and no 8BITMIME (converting would break DKIM)
TOO_BIG = "5.3.4"  # RFC 1870: over the destination's SIZE
UNREADABLE = "5.3.0"  # the queued message does not decrypt: it never will

Outcome = tuple[OutboundItem, dict[str, Failure], bytes | None]


class _NoConnection(Exception):
    """No MX host of the route could be reached as its TLS requirement demands."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.text)
        self.failure = failure


class _TlsFailed(Exception):
    """STARTTLS was missing or failed on a connection."""


class _SenderGone(Exception):
    """The sender's account is no longer here: nobody to tell, nothing to send."""


# (domain, MX host, TLS requirement, MTA-STS testing): what a kept connection may be used for
SessionKey = tuple[str, str, TlsRequirement, bool]


@dataclass(eq=False)
class _Session:
    client: aiosmtplib.SMTP
    mx: str  # the MX host name, for DSNs and logs
    tls: str  # "validated", "unvalidated" or "none"
    key: SessionKey
    sent: int = 0  # messages this connection carried
    idle_since: float = 0.0


@functools.lru_cache(maxsize=4096)
def _a_label(domain: str) -> str:
    """Cached: IDNA checks take about 0.2 ms a domain, and a pass asks for the same few."""
    return ascii_domain(domain) or domain


def wire_address(address: str) -> str:
    """An address as it goes on the wire: the domain as an A-label, so only a non-ASCII
    local part needs SMTPUTF8 (RFC 6531 3.2)."""
    local, at, domain = address.rpartition("@")
    return f"{local}@{_a_label(domain)}" if at else address


def make_resolver(settings: DnsSection) -> dns.asyncresolver.Resolver:
    """The configured DNS servers, or the system's; answers cached for their TTL."""
    try:
        resolver = dns.asyncresolver.Resolver(configure=not settings.servers)
    except dns.resolver.NoResolverConfiguration:
        log.warning("no /etc/resolv.conf: asking a resolver on 127.0.0.1 for outbound mail")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
    if settings.servers:
        resolver.nameservers = list(settings.servers)
        resolver.port = settings.port
    resolver.cache = dns.resolver.LRUCache(10_000)
    return resolver


class OutboundWorker(QueueWorker):
    # Mail submitted together goes out together: each pass plans, connects and records
    # once for all it takes, which is most of what a message costs here.
    gather_seconds = 0.05

    def __init__(self, region: Region, config: Config, committer: GroupCommitter) -> None:
        super().__init__(region, committer)
        self.config = config
        self.settings = config.outbound
        self.allowed: Callable[[IpAddress], bool] = (
            (lambda address: True) if self.settings.allow_private_addresses else public_address
        )
        self.resolver: dns.asyncresolver.Resolver | None = None
        self.mta_sts: MtaSts | None = None
        self._connections = asyncio.Semaphore(self.settings.max_connections)
        self._per_mx: dict[str, asyncio.Semaphore] = {}
        self._mx_users: Counter[str] = Counter()
        # Domains being delivered to, each by a task of its own: a pass starts the others,
        # so a slow or silent destination holds up its own mail only.
        self._busy: dict[str, asyncio.Task[int]] = {}
        self._lookups = asyncio.Semaphore(LOOKUPS)
        self._idle: dict[SessionKey, list[_Session]] = defaultdict(list)
        # Certificate failures MTA-STS testing mode delivered anyway, per domain: what a
        # TLS-RPT report (RFC 8460) would send.
        self.tls_failures: Counter[str] = Counter()
        committer.on_outbound_queued = self.wake

    @functools.cached_property
    def _validated(self) -> ssl.SSLContext:
        """Made at the first delivery that needs it: loading the CA store takes a while."""
        return tls_context(TlsRequirement.VALIDATED, self.settings.ca_file)

    @functools.cached_property
    def _unvalidated(self) -> ssl.SSLContext:
        return tls_context(TlsRequirement.OPPORTUNISTIC)

    def start(self) -> None:
        self.resolver = make_resolver(self.config.dns)
        cache = self.region.root / "mta-sts"
        cache.mkdir(mode=0o700, exist_ok=True)
        self.mta_sts = MtaSts(
            cache,
            self.resolver,
            https_port=self.settings.mta_sts_port,
            ca_file=self.settings.ca_file,
            allowed=self.allowed,
        )
        super().start()

    async def stop(self) -> None:
        await super().stop()
        busy = list(self._busy.values())
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
        await self._close_idle(everything=True)
        if self.mta_sts is not None:
            self.mta_sts.close()
            self.mta_sts = None

    async def run_once(self) -> int:
        """One pass: the due items of every domain not being delivered to already are
        handed to a task per domain; bounced ones are reported. How many items were
        handed on (or reported)."""
        due = await asyncio.to_thread(self.region.store.due_outbound, time.time(), BATCH)
        by_domain: dict[str, list[OutboundItem]] = defaultdict(list)
        given_up = []
        for item in due:
            if item.bounce is not None:
                given_up.append(item)
            elif item.domain not in self._busy:
                by_domain[item.domain].append(item)
        for domain, items in by_domain.items():
            task = asyncio.get_running_loop().create_task(self._domain(domain, items))
            self._busy[domain] = task
            task.add_done_callback(functools.partial(self._done, domain))
        await self._give_up(given_up)
        await self._close_idle()
        return len(given_up) + sum(len(items) for items in by_domain.values())

    def _done(self, domain: str, task: asyncio.Task[int]) -> None:
        del self._busy[domain]
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "region %s: delivery to %s failed: %r", self.region.id, domain, task.exception()
            )
        self.wake()  # its domain's next items may be due

    async def _give_up(self, items: list[OutboundItem]) -> int:
        """Items an operator bounced: a failure report for every recipient left, no try."""
        outcomes: list[Outcome] = []
        for item in items:
            failure = Failure(None, f"bounced by the operator: {item.bounce}", GIVEN_UP)
            outcomes.append((item, dict.fromkeys(item.rcpts, failure), None))
        return await self._settle(outcomes) if outcomes else 0

    async def _domain(self, domain: str, items: list[OutboundItem]) -> int:
        assert self.resolver is not None and self.mta_sts is not None
        try:
            async with self._lookups:
                route = await plan(domain, self.resolver, self.mta_sts, allowed=self.allowed)
        except RouteError as error:
            log.info("region %s: no route to %s: %s", self.region.id, domain, error)
            failure = Failure(None, str(error), enhanced=error.status)
            return await self._settle([(i, dict.fromkeys(i.rcpts, failure), None) for i in items])
        except Exception as exc:
            log.exception("region %s: planning %s failed", self.region.id, domain)
            failure = Failure(None, f"{type(exc).__name__}: {exc}")
            return await self._settle([(i, dict.fromkeys(i.rcpts, failure), None) for i in items])
        lanes = min(self.settings.connections_per_domain, len(items))
        sent = await asyncio.gather(*(self._lane(route, items[n::lanes]) for n in range(lanes)))
        return sum(sent)

    async def _lane(self, route: Route, items: list[OutboundItem]) -> int:
        """One connection after another, each carrying up to messages_per_connection items
        in all; each connection's items are settled as soon as it is done with them."""
        sent = 0
        while items:
            outcomes = await self._send(route, items)
            items = items[len(outcomes) :]
            sent += await self._settle(outcomes)
        return sent

    async def _send(self, route: Route, items: list[OutboundItem]) -> list[Outcome]:
        """The outcomes of the first items, as many as one connection carries."""
        results: list[Outcome] = []
        batch = items
        try:
            async with self._session(route) as session:
                batch = items[: self.settings.messages_per_connection - session.sent]
                for item in batch:
                    results.append(await self._send_item(session, item))
                    session.sent += 1
        except _NoConnection as error:
            results += [(i, dict.fromkeys(i.rcpts, error.failure), None) for i in batch]
        except Exception as exc:
            # The connection broke: every item it was to carry and did not yet waits.
            log.warning("region %s: delivery to %s: %r", self.region.id, route.domain, exc)
            failure = Failure(None, f"{type(exc).__name__}: {exc}", enhanced=NO_CONNECTION)
            unsent = batch[len(results) :]
            results += [(item, dict.fromkeys(item.rcpts, failure), None) for item in unsent]
        return results

    @contextlib.asynccontextmanager
    async def _session(self, route: Route) -> AsyncIterator[_Session]:
        """A connection to the first MX host (in the route's order) that takes one as its
        TLS requirement says, a kept one if there is one, holding a slot of the connection
        limits while it is in use; kept afterwards if it can carry more."""
        problems: list[str] = []
        async with self._connections:
            for hop in route.hops:
                async with self._mx_slot(hop.mx.name):
                    session = await self._connect(route, hop, problems)
                    if session is None:
                        continue
                    try:
                        yield session
                    except BaseException:
                        await self._close(session)
                        raise
                    await self._keep(session)
                    return
        status = TLS_REFUSED if route.hops[0].tls is TlsRequirement.VALIDATED else NO_CONNECTION
        raise _NoConnection(Failure(None, "; ".join(problems)[:900], enhanced=status))

    @contextlib.asynccontextmanager
    async def _mx_slot(self, name: str) -> AsyncIterator[None]:
        """One of the connections_per_mx slots of an MX host; the host's entry is dropped
        when nobody holds or waits for one, so the table stays as small as the traffic."""
        slot = self._per_mx.setdefault(name, asyncio.Semaphore(self.settings.connections_per_mx))
        self._mx_users[name] += 1
        try:
            async with slot:
                yield
        finally:
            self._mx_users[name] -= 1
            if not self._mx_users[name]:
                del self._mx_users[name], self._per_mx[name]

    async def _connect(self, route: Route, hop: Hop, problems: list[str]) -> _Session | None:
        """A kept connection for this hop that still answers (RSET), else a new one to the
        first address that takes it; None (the reasons added to `problems`) if none does."""
        key = self._key(route, hop)
        kept = self._idle.get(key, [])
        while kept:
            session = kept.pop()
            try:
                await session.client.rset()
                return session
            except Exception:
                await self._close(session)
        for address in hop.mx.addresses:
            try:
                return await self._open(route, hop, address)
            except (OSError, aiosmtplib.SMTPException, _TlsFailed) as exc:
                problems.append(f"{hop.mx.name}[{address}]: {exc}")
        return None

    @staticmethod
    def _key(route: Route, hop: Hop) -> SessionKey:
        testing = route.policy is not None and route.policy.mode is StsMode.TESTING
        return (route.domain, hop.mx.name, hop.tls, testing)

    async def _keep(self, session: _Session) -> None:
        kept = sum(len(sessions) for sessions in self._idle.values())
        if session.sent >= self.settings.messages_per_connection or (
            kept >= self.settings.max_connections
        ):
            await self._close(session)
            return
        session.idle_since = time.monotonic()
        self._idle[session.key].append(session)

    async def _close_idle(self, everything: bool = False) -> None:
        """Close kept connections idle for IDLE_SECONDS (or all of them)."""
        limit = time.monotonic() - IDLE_SECONDS
        for key, sessions in list(self._idle.items()):
            stale = [s for s in sessions if everything or s.idle_since <= limit]
            sessions[:] = [s for s in sessions if s not in stale]
            if not sessions:
                del self._idle[key]
            for session in stale:
                await self._close(session)

    @staticmethod
    async def _close(session: _Session) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.client.quit(), 10)
        session.client.close()

    async def _open(self, route: Route, hop: Hop, address: str) -> _Session:
        """Connect and say EHLO, then STARTTLS as the hop requires: MTA-STS enforce needs a
        certificate valid for the MX name (or nothing is sent); testing tries that, and
        delivers without it, counting the failure; otherwise TLS without checks when the
        server offers it, and in the clear when it offers none or the handshake fails."""
        testing = route.policy is not None and route.policy.mode is StsMode.TESTING
        if hop.tls is TlsRequirement.VALIDATED:
            modes = ["validated"]
        elif testing:
            modes = ["validated", "unvalidated", "none"]
        else:
            modes = ["unvalidated", "none"]
        for mode in modes:
            client = aiosmtplib.SMTP(
                hostname=address,
                port=self.settings.smtp_port,
                timeout=COMMAND_TIMEOUT,
                start_tls=False,
                local_hostname=self.region.host_name,
            )
            await client.connect(timeout=self.settings.connect_timeout_seconds)
            try:
                await client.ehlo()
                if mode == "none" or not client.supports_extension("starttls"):
                    if hop.tls is TlsRequirement.VALIDATED:
                        raise _TlsFailed("no STARTTLS, which the domain's MTA-STS policy requires")
                    if testing:
                        self._tls_failure(route, hop, "no STARTTLS")
                    return _Session(client, hop.mx.name, "none", self._key(route, hop))
                context = self._validated if mode == "validated" else self._unvalidated
                try:
                    await client.starttls(tls_context=context, server_hostname=hop.mx.name)
                except (ssl.SSLError, aiosmtplib.SMTPException) as exc:
                    raise _TlsFailed(f"STARTTLS failed: {exc}") from exc
                await client.ehlo()
                return _Session(client, hop.mx.name, mode, self._key(route, hop))
            except _TlsFailed as exc:
                client.close()
                if mode == modes[-1] or hop.tls is TlsRequirement.VALIDATED:
                    raise
                if mode == "validated":
                    self._tls_failure(route, hop, str(exc))
            except BaseException:
                client.close()
                raise
        raise _TlsFailed("no way to connect")  # every mode returns or raises before this

    def _tls_failure(self, route: Route, hop: Hop, why: str) -> None:
        self.tls_failures[route.domain] += 1
        log.warning(
            "region %s: MTA-STS testing: %s (%s): %s; delivering anyway",
            self.region.id,
            route.domain,
            hop.mx.name,
            why,
        )

    async def _send_item(self, session: _Session, item: OutboundItem) -> Outcome:
        """One message over the session: the recipients that failed (none: all delivered),
        and the message's header lines for a DSN."""
        try:
            content = await asyncio.to_thread(self._open_item, item)
        except Exception as exc:
            log.error("region %s: outbound %d does not open: %s", self.region.id, item.id, exc)
            failure = Failure(None, f"the queued message cannot be read: {exc}", UNREADABLE)
            return item, dict.fromkeys(item.rcpts, failure), None
        if content is None:
            return item, {}, None  # gone since the pass began: nothing left to send
        headers = header_block(content)
        refusal = self._refusal(session, item, content, headers)
        if refusal is not None:
            return item, dict.fromkeys(item.rcpts, refusal), headers
        options = []
        client = session.client
        if self._needs_smtputf8(item, headers):
            options.append("SMTPUTF8")
        if not content.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if client.supports_extension("size"):
            options.append(f"SIZE={len(content)}")
        failures = await guarded_transaction(
            client,
            wire_address(item.mail_from),
            [wire_address(r) for r in item.rcpts],
            lambda: content,
            options,
            remote_mta=session.mx,
        )
        by_wire = {wire_address(r): r for r in item.rcpts}
        return item, {by_wire[r]: f for r, f in failures.items()}, headers

    def _headers(self, item: OutboundItem) -> bytes | None:
        """The queued message's header lines for a report, when it still opens."""
        try:
            content = self._open_item(item)
        except Exception:
            return None  # the report goes without them
        return None if content is None else header_block(content)

    def _open_item(self, item: OutboundItem) -> bytes | None:
        blob = self.region.store.outbound_blob(item.id)
        if blob is None:
            return None
        return self.region.vault.open_outbound(item.mail_from, item.domain, blob)

    @staticmethod
    def _needs_smtputf8(item: OutboundItem, headers: bytes) -> bool:
        addresses = [item.mail_from, *item.rcpts]
        return not (all(wire_address(a).isascii() for a in addresses) and headers.isascii())

    def _refusal(
        self, session: _Session, item: OutboundItem, content: bytes, headers: bytes
    ) -> Failure | None:
        """Why the destination cannot take this message as it is, decided before sending
        it: RFC 6531 (SMTPUTF8), RFC 6152 (8BITMIME), RFC 1870 (SIZE)."""
        client = session.client
        where = f"{session.mx} does not offer"
        if not client.supports_extension("smtputf8"):
            addresses = [item.mail_from, *item.rcpts]
            if not all(wire_address(a).isascii() for a in addresses):
                why = f"{where} SMTPUTF8, which the address needs"
                return Failure(None, why, NON_ASCII_ADDRESS)
            if not headers.isascii():
                why = f"{where} SMTPUTF8, which the UTF-8 header needs"
                return Failure(None, why, UTF8_HEADER)
        if not content.isascii() and not client.supports_extension("8bitmime"):
            return Failure(None, f"{where} 8BITMIME, which the 8-bit message needs", EIGHT_BIT)
        limit = client.esmtp_extensions.get("size", "")
        if limit.isdigit() and 0 < int(limit) < len(content):
            return Failure(None, f"{session.mx} takes at most {limit} octets", TOO_BIG)
        return None

    async def _settle(self, outcomes: list[Outcome]) -> int:
        """Record each item's outcome: delivered or bounced recipients leave the item, an
        item with none left leaves the queue (in one commit for all of them); the others
        are due again after their backoff. How many items reached every recipient."""
        now = time.time()
        settings = self.settings
        done: list[int] = []
        sent = 0
        for item, failures, headers in outcomes:
            expired = (
                now - item.created > settings.retry_window_seconds
                or item.attempts + 1 >= settings.max_attempts
            )
            final = {r: f for r, f in failures.items() if f.permanent or expired}
            waiting = {r: f for r, f in failures.items() if r not in final}
            try:
                if final:
                    await self._report(item, final, headers, "failed")
                warn = (
                    bool(waiting)
                    and not item.delay_notified
                    and now - item.created >= settings.delay_warning_seconds
                )
                if warn:
                    await self._report(item, waiting, headers, "delayed")
            except _SenderGone:
                log.warning("region %s: outbound %d: its sender is gone", self.region.id, item.id)
                done.append(item.id)
                continue
            except Exception:
                log.exception("region %s: DSN for outbound %d failed", self.region.id, item.id)
                waiting = failures  # nothing is final until the sender could be told
                warn = False
            self._observe(item, failures, [r for r in final if r not in waiting], bool(waiting))
            if not failures:
                sent += 1
            if not waiting:
                done.append(item.id)
                continue
            error = str(next(iter(waiting.values())))
            delay = jittered(
                backoff(item.attempts, settings.first_retry_seconds, settings.max_retry_seconds)
            )
            await asyncio.to_thread(
                self.region.store.outbound_retry,
                item.id,
                [r for r in item.rcpts if r in waiting],
                error,
                now + delay,
                item.delay_notified or warn,
            )
        # A crash before this commit sends these again: mail to the Internet is delivered
        # at least once, as with every MTA.
        await asyncio.to_thread(self.region.store.outbound_done, done)
        return sent

    def _observe(
        self, item: OutboundItem, failures: dict[str, Failure], bounced: list[str], deferred: bool
    ) -> None:
        if item.bounce is not None:
            observe.operator_bounce(self.region.id, "outbound", item.id)
            return
        observe_attempt(
            self.region.id,
            "outbound",
            item.id,
            item.domain,
            rcpts=len(item.rcpts),
            failures=failures,
            attempts=item.attempts + 1,
            created=item.created,
            bounced=len(bounced),
            deferred=deferred,
        )

    async def _report(
        self,
        item: OutboundItem,
        failures: dict[str, Failure],
        headers: bytes | None,
        action: Literal["failed", "delayed"],
    ) -> None:
        """A DSN (RFC 3464) to the sender, who is an account of this region."""
        if self.region.directory.home(item.mail_from) != self.region.id:
            raise _SenderGone(item.mail_from)
        if headers is None:
            headers = await asyncio.to_thread(self._headers, item)
        report = delivery_report(
            reporting_mta=self.region.host_name,
            remote_mta=None,
            postmaster=f"MAILER-DAEMON@{self.config.primary_domain}",
            sender=item.mail_from,
            failures=failures,
            arrival=item.created,
            attempts=item.attempts + 1,
            action=action,
            will_retry_until=item.created + self.settings.retry_window_seconds,
            original_headers=headers,
        )
        log.info(
            "region %s: outbound %d %s for %d recipient(s)",
            self.region.id,
            item.id,
            action,
            len(failures),
        )
        await self.bounce(item.mail_from, report)
