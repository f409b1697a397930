"""Sender authentication on the MX (and optional spam scoring): what `mailauth` and rspamd
decide, turned into an SMTP reply, a mailbox and an `Authentication-Results` header.

The region that accepts a message evaluates it at the end of DATA: only it knows the
client's address, HELO name and envelope sender, and only then can a DMARC reject be a
550 the sending MTA sees (RFC 7489 10.3). The header travels with the message (sealed with
it when the recipient is homed elsewhere) and the home region stores it with the message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import dns.resolver

from borderline.config import DnsSection, InboundSection
from borderline.delivery import header_block
from borderline.mailauth import Disposition, Limits, authenticate, strip_forged_results
from borderline.smtp.spam import Rspamd

log = logging.getLogger(__name__)

# Messages evaluated at once per region; more wait their turn (their clients, in DATA).
THREADS = 16
HEADER_LIMIT = Limits().max_header_bytes


@dataclass(frozen=True)
class Verdict:
    """What to do with one message: `refusal` (the SMTP reply) or deliver `content` (the
    sender's, with forged results of ours removed) into `mailbox`, `header` before it."""

    refusal: str | None
    content: bytes
    header: bytes = b""
    mailbox: str = "INBOX"


def make_resolver(settings: DnsSection) -> dns.resolver.Resolver:
    """The blocking resolver `mailauth` asks. With no servers configured and none in
    /etc/resolv.conf, every query fails as a temporary error: nothing is rejected for it."""
    resolver = dns.resolver.Resolver(configure=False)
    if settings.servers:
        resolver.nameservers = list(settings.servers)
    else:
        try:
            resolver.nameservers = dns.resolver.Resolver().nameservers
        except dns.resolver.NoResolverConfiguration:
            log.warning("no DNS resolver configured: inbound SPF/DKIM/DMARC give temperror")
    resolver.port = settings.port
    return resolver


class InboundAuthenticator:
    """One region's judgement of mail from the Internet: sender authentication and, when
    configured, spam scoring by rspamd. It blocks (DNS, signatures, rspamd) for up to the
    DNS deadline of `mailauth.Limits` plus rspamd's timeout, which a sender's own slow name
    servers can spend: so it runs in threads of its own, and a flood of such mail cannot
    hold the threads the store commits in."""

    def __init__(
        self, settings: InboundSection, authserv_id: str, resolvers: DnsSection | None = None
    ) -> None:
        self.authenticate = settings.authenticate
        self.authserv_id = settings.authserv_id or authserv_id
        self.trusted_arc_sealers = frozenset(d.lower() for d in settings.trusted_arc_sealers)
        self.resolver = make_resolver(resolvers or DnsSection())
        self.rspamd = (
            None
            if settings.rspamd_url is None
            else Rspamd(settings.rspamd_url, settings.rspamd_timeout_seconds)
        )
        self.junk_score = settings.spam_junk_score
        self.reject_score = settings.spam_reject_score
        self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix="mailauth")

    async def verdict(
        self, content: bytes, ip: str, mail_from: str, helo: str, rcpts: Sequence[str]
    ) -> Verdict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, self.check, content, ip, mail_from, helo, rcpts
        )

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    def check(
        self, content: bytes, ip: str, mail_from: str, helo: str, rcpts: Sequence[str]
    ) -> Verdict:
        verdict = Verdict(None, content)
        if self.authenticate:
            verdict = self._authenticated(content, ip, mail_from, helo)
            if verdict.refusal is not None:
                return verdict
        if self.rspamd is None:
            return verdict
        score = self.rspamd.score(verdict.content, ip, helo, mail_from, rcpts)
        if score is None or score < self.junk_score:
            return verdict
        if score >= self.reject_score:
            return replace(verdict, refusal=f"550 5.7.1 Message refused as spam ({score:.1f})")
        return replace(verdict, mailbox="Junk")

    def _authenticated(self, content: bytes, ip: str, mail_from: str, helo: str) -> Verdict:
        try:
            # RFC 8601 5: results that claim to be ours and are not are removed. (A header
            # section past the limit is refused by `authenticate` anyway.)
            if b"authentication-results" in header_block(content)[:HEADER_LIMIT].lower():
                content = strip_forged_results(content, self.authserv_id)
            result = authenticate(
                content,
                ip=ip,
                mail_from=mail_from,
                helo=helo,
                resolver=self.resolver,
                trusted_arc_sealers=self.trusted_arc_sealers,
            )
        except Exception:  # a library failing on hostile input must not let it past DMARC
            log.exception("sender authentication failed")
            return Verdict("451 4.7.0 Sender authentication failed, try again later", content)
        domain = result.dmarc.from_domain
        if result.disposition is Disposition.REJECT:
            shown = domain.encode("ascii", "replace").decode()[:253] or "its From domain"
            return Verdict(
                f"550 5.7.1 Message refused: DMARC policy of {shown} ({result.dmarc.result})",
                content,
            )
        mailbox = "Junk" if result.disposition is Disposition.QUARANTINE else "INBOX"
        return Verdict(None, content, result.header(self.authserv_id).encode(), mailbox)
