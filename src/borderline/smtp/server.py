"""Starts one region's SMTP listeners (MX, submission with STARTTLS, submission over
implicit TLS), its relay worker and its worker for mail to the Internet."""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
from concurrent.futures import ThreadPoolExecutor

from borderline.cloud import Region
from borderline.config import Config, Listen
from borderline.delivery import is_relay_message, relay_size_limit
from borderline.smtp.inbound_auth import InboundAuthenticator
from borderline.smtp.ingress import GroupCommitter, IngressHandler
from borderline.smtp.limits import SendingLimit
from borderline.smtp.outbound import OutboundWorker
from borderline.smtp.protocol import FastDataSMTP
from borderline.smtp.relay import RelayWorker
from borderline.smtp.transaction import TransactionLog
from borderline.throttle import ConnectionLimiter

# aiosmtpd 1.4 sets its own deprecated Session.login_data on every successful AUTH and logs
# a warning about it each time: about aiosmtpd, not about this server.
logging.getLogger("mail.log").addFilter(
    lambda record: "Session.login_data is deprecated" not in record.getMessage()
)


# How long a client of the implicit-TLS port may take over its handshake (asyncio's default
# is a minute): a connection comes under the caps only once it is done.
TLS_HANDSHAKE_SECONDS = 30.0


class Port(enum.Enum):
    MX = "mx"
    SUBMISSION = "submission"  # STARTTLS, then AUTH (RFC 6409)
    SUBMISSIONS = "submissions"  # TLS from the first byte, then AUTH (RFC 8314)


class RegionSmtp:
    """A region's MX and submission listeners; `ingest_only` workers run just the MX."""

    def __init__(
        self, region: Region, config: Config, ingest_only: bool = False, reuse_port: bool = False
    ) -> None:
        self.region = region
        self.name = f"{region.id} SMTP"
        self.config = config
        self.ingest_only = ingest_only
        self.reuse_port = reuse_port
        self.committer = GroupCommitter(region)
        # The summaries of the messages accepted here that are not cheap to compute
        # (DeliveryPlanner.summarized), a thread for each connection that needs one: a
        # message that costs seconds to summarize takes its share of the CPU, never a thread
        # another session's message waits for.
        self.summaries = ThreadPoolExecutor(
            config.smtp.max_connections, thread_name_prefix=f"{region.id}-summary"
        )
        self.relay = RelayWorker(region, config, self.committer)
        self.outbound = OutboundWorker(region, config, self.committer)
        self.hostname = region.host_name
        self.tls = region.tls
        self._servers: list[asyncio.Server] = []
        self.throttle = region.logins
        # One per region, for both submission ports: accounts homed here (the only ones
        # that can log in here) are counted in their home region.
        self.sending = SendingLimit(
            config.smtp.submission_messages_per_hour, config.smtp.submission_recipients_per_hour
        )
        inbound = config.inbound
        self.authenticator = (
            InboundAuthenticator(inbound, config.primary_domain, config.dns)
            if inbound.authenticate or inbound.rspamd_url is not None
            else None
        )

    async def start(self) -> None:
        self.committer.start()
        section = self.region.section
        self._servers.append(await self._listen(section.smtp, Port.MX))
        if self.ingest_only:
            return
        self.relay.start()
        self.outbound.start()
        if section.submission is not None:
            self._servers.append(await self._listen(section.submission, Port.SUBMISSION))
        if section.submissions is not None:
            self._servers.append(await self._listen(section.submissions, Port.SUBMISSIONS))

    async def _listen(self, address: Listen, port: Port) -> asyncio.Server:
        limits = self.config.smtp
        submission = port is not Port.MX
        implicit_tls = port is Port.SUBMISSIONS
        handler = IngressHandler(
            self.region,
            self.committer,
            submission=submission,
            summaries=self.summaries,
            throttle=self.throttle,
            hostname=self.hostname,
            max_recipients=limits.max_recipients,
            authenticator=None if submission else self.authenticator,
            sending=self.sending if submission else None,
        )
        limiter = ConnectionLimiter(limits.max_connections, limits.max_connections_per_ip)
        max_size = self.config.cloud.max_message_size
        relay_max = relay_size_limit(max_size)

        def size_limit_for(head: bytes) -> int:
            # A relay envelope carries a message of up to max_size, sealed and in base64.
            return relay_max if is_relay_message(head) else max_size

        def protocol() -> FastDataSMTP:
            return FastDataSMTP(
                handler,
                transactions=TransactionLog(self.region.id, submission),
                limiter=limiter,
                data_timeout=limits.data_timeout_seconds,
                size_limit_for=size_limit_for,
                data_size_limit=max_size,
                hostname=self.hostname,
                ident=f"Borderline ESMTP ({self.region.id})",
                tls_context=None if implicit_tls else self.tls,
                require_starttls=port is Port.SUBMISSION,
                implicit_tls=implicit_tls,
                offer_auth=submission,
                auth_required=submission,
                auth_require_tls=True,
                enable_SMTPUTF8=True,
                timeout=limits.command_timeout_seconds,
            )

        server = await asyncio.get_running_loop().create_server(
            protocol,
            address.host,
            address.port,
            reuse_address=True,
            reuse_port=self.reuse_port and not submission,
            ssl=self.tls if implicit_tls else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS if implicit_tls else None,
        )
        for sock in server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return server

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        await self.relay.stop()
        await self.outbound.stop()
        await self.committer.stop()
        self.summaries.shutdown(wait=False)
        if self.authenticator is not None:
            self.authenticator.close()
