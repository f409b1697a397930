"""What a running cloud tells its operator: structured log events and Prometheus metrics.

Every adapter reports through the typed functions here, one call per event, so an event's
log line and its metrics never disagree and no call site formats anything. Log lines and
metric labels carry no message content and no personal data (mail addresses, client IP
addresses): those go only on a separate DEBUG record beside the event (`_personal`), and
the log warns at start when DEBUG is on. Metrics are counted in this process (the default
prometheus_client registry); what lives in a store or on disk (queue depths, log sizes) is
read when /metrics is scraped (api/ops.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TextIO

import structlog
from prometheus_client import Counter, Gauge, Histogram

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
# Where an SMTP transaction ended: at a refused MAIL, before its data, or at its data.
SmtpStage = Literal["mail", "rcpt", "data"]
SmtpKind = Literal["inbound", "submission", "relay"]
QueueName = Literal["relay", "outbound"]
AttemptResult = Literal["delivered", "deferred", "bounced"]
LoginProtocol = Literal["imap", "submission"]
LoginResult = Literal["ok", "failed", "locked", "referred"]

_SHARED: list[structlog.typing.Processor] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
# Events go to the standard library's loggers, so the libraries' records and ours share one
# handler, one level and one format (configure_logging).
structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,
        *_SHARED,
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)
log: structlog.stdlib.BoundLogger = structlog.get_logger("borderline")
# aiosmtpd logs every command and reply, with their addresses, on "mail.log".
PROTOCOL_TRACE = "mail.log"

SMTP_MESSAGES = Counter(
    "borderline_smtp_messages",
    "SMTP transactions ended, by the class of the reply that ended them (2xx: accepted)"
    " or abandoned.",
    ["region", "kind", "result"],
)
DELIVERY_ATTEMPTS = Counter(
    "borderline_delivery_attempts",
    "Attempts to deliver a queued item, by queue, destination and result.",
    ["region", "queue", "destination", "result"],
)
DELIVERY_LATENCY = Histogram(
    "borderline_delivery_latency_seconds",
    "Time from queueing to delivery of a queued item.",
    ["region", "queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)
IMAP_SESSIONS = Gauge("borderline_imap_sessions", "IMAP sessions open now.", ["region"])
LOGINS = Counter(
    "borderline_logins",
    "Login attempts (IMAP and SMTP submission), by result.",
    ["region", "protocol", "result"],
)
KEY_RELEASES = Counter(
    "borderline_key_releases",
    "Account keys released by the vault, by justification.",
    ["region", "justification"],
)
OPERATOR_BOUNCES = Counter(
    "borderline_operator_bounces",
    "Queued items bounced because an operator asked (borderline queue bounce).",
    ["region", "queue"],
)


# -- logging ---------------------------------------------------------------------------


@dataclass
class _Settings:
    """The command line's choices, which win over the config's [log] section on reload."""

    level: LogLevel | None = None
    format: LogFormat | None = None


_pinned = _Settings()


class _ProtocolTraceToDebug(logging.Filter):
    """aiosmtpd's INFO and WARNING lines are a protocol trace (commands, addresses, client
    IPs, unknown commands): DEBUG records here. Its errors stay errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class _Handler(logging.StreamHandler[TextIO]):
    """The one handler this module installs on the root logger (replaced on reconfigure)."""


def pin(level: LogLevel | None = None, format: LogFormat | None = None) -> None:
    """Settings from the command line (`-v`, `--log-format`): a reload keeps them."""
    _pinned.level, _pinned.format = level, format


def configure_logging(
    level: LogLevel, format: LogFormat = "text", stream: TextIO | None = None
) -> tuple[LogLevel, LogFormat]:
    """Send every log record, ours and the libraries', through one structlog formatter:
    readable key=value text, or one JSON object per line. Settings pinned on the command
    line win over the arguments; returns those in force. Called again (SIGHUP), it replaces
    the handler."""
    level = _pinned.level or level
    format = _pinned.format or format
    # Tracebacks without their frames' local variables: those hold passwords and mail.
    renderer: list[structlog.typing.Processor] = (
        [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ]
        if format == "json"
        else [
            structlog.dev.ConsoleRenderer(
                colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    trace = logging.getLogger(PROTOCOL_TRACE)
    if not any(isinstance(f, _ProtocolTraceToDebug) for f in trace.filters):
        trace.addFilter(_ProtocolTraceToDebug())
    if level == "debug":
        log.warning(
            "logging.debug",
            note="DEBUG records carry mail addresses and client IP addresses (personal data)",
        )
    return level, format


def _personal(event: str, **fields: object) -> None:
    """The personal data of an event, on a DEBUG record of its own, so a log read at INFO
    or above never holds any."""
    log.debug(event + ".personal", **fields)


# -- events ----------------------------------------------------------------------------


def smtp_transaction(
    region: str,
    queue_id: str | None,
    reply: str | None,
    *,
    kind: SmtpKind,
    stage: SmtpStage,
    recipients: int,
    refused: int,
    size: int | None = None,
    sender: str | None = None,
    rcpts: Sequence[str] = (),
    peer: str | None = None,
) -> None:
    """One SMTP transaction ended (smtp/transaction.py says when). `queue_id` is set for a
    message accepted; `reply` is the reply that ended it (None: abandoned), of which only
    the codes are logged: reply texts may quote addresses."""
    code = None if reply is None else reply[:3]
    result = "abandoned" if code is None else f"{code[:1]}xx"
    status = reply[4:].split(" ", 1)[0] if reply is not None and reply[4:5].isdigit() else None
    SMTP_MESSAGES.labels(region, kind, result).inc()
    log.info(
        "smtp.transaction",
        region=region,
        queue_id=queue_id,
        result=result,
        code=code,
        status=status,
        kind=kind,
        stage=stage,
        recipients=recipients,
        refused=refused,
        size=size,
    )
    _personal(
        "smtp.transaction", region=region, queue_id=queue_id, sender=sender, rcpts=rcpts, peer=peer
    )


def delivery_attempt(
    region: str,
    queue: QueueName,
    item_id: int,
    destination: str,
    result: AttemptResult,
    *,
    attempts: int,
    delivered: int,
    bounced: int,
    latency: float | None = None,
    error_code: int | None = None,
    error: str | None = None,
) -> None:
    """One attempt to deliver a queued item (relay: to its home region; outbound: to the
    Internet) and what came of it. `attempts` counts this one; `error_code` is the reply
    code of the failure kept (None for no reply, such as a refused connection), and its text
    (`error`), which may quote addresses, goes on the DEBUG record only."""
    DELIVERY_ATTEMPTS.labels(region, queue, destination, result).inc()
    if latency is not None:
        DELIVERY_LATENCY.labels(region, queue).observe(latency)
    log.info(
        f"{queue}.attempt",
        region=region,
        queue_id=item_id,
        destination=destination,
        result=result,
        attempts=attempts,
        delivered=delivered,
        bounced=bounced,
        latency=None if latency is None else round(latency, 3),
        error_code=error_code,
    )
    if error is not None:
        _personal(f"{queue}.attempt", region=region, queue_id=item_id, error=error)


def operator_bounce(region: str, queue: QueueName, item_id: int) -> None:
    """A queued item was bounced, as an operator asked (`borderline queue bounce`)."""
    OPERATOR_BOUNCES.labels(region, queue).inc()
    log.info(f"{queue}.operator_bounce", region=region, queue_id=item_id)


def login(
    region: str,
    protocol: LoginProtocol,
    result: LoginResult,
    *,
    address: str | None = None,
    ip: str | None = None,
) -> None:
    """A login attempt: ok, failed (wrong password or account), locked (refused by the
    throttle before any check) or referred (IMAP: right password, homed elsewhere)."""
    LOGINS.labels(region, protocol, result).inc()
    log.info(f"{protocol}.login", region=region, result=result)
    _personal(f"{protocol}.login", region=region, address=address, ip=ip)


def imap_session_opened(region: str) -> None:
    IMAP_SESSIONS.labels(region).inc()


def imap_session_closed(region: str) -> None:
    IMAP_SESSIONS.labels(region).dec()


def key_release(region: str, justification: str, sealed: bool) -> None:
    """The vault released an account's key, after logging it (sealed: under a
    nondisclosure order, so the log holds a commitment until the order lapses)."""
    KEY_RELEASES.labels(region, justification).inc()
    log.info("vault.release", region=region, justification=justification, sealed=sealed)


def check_failed(region: str, check: str, error: Exception) -> None:
    """A readiness check (/readyz) failed: why, for the operator (the public reply says
    less). Store and log errors are about connections and files, not about mail."""
    log.warning(
        "ops.check_failed", region=region, check=check, error=f"{type(error).__name__}: {error}"
    )
