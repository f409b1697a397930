"""One log line (and one count) per SMTP transaction, whichever way it ends.

A transaction starts with MAIL. It ends at the reply to its data; or, without data, at a
refused MAIL, or when RSET, HELO/EHLO, STARTTLS, QUIT or a hang-up drops it: then its result
is its last refused RCPT, or `abandoned` when nothing was refused (a client that hung up in
the middle of its data, say).
"""

from __future__ import annotations

from aiosmtpd.smtp import Envelope, Session

from borderline import observe

REFUSED = ("4", "5")


class Transaction(Envelope):
    """aiosmtpd's envelope, with what the transaction's log line needs."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_id: str | None = None
        self.refusal: str | None = None  # the last refused RCPT's reply
        self.refused = 0
        self.ended = False  # logged, at its data or when dropped (a refused MAIL opens none)
        # The data, instead of aiosmtpd's `content`: a buffer the handler takes, so that it
        # holds the only reference and may encrypt the message over it (ingress.py).
        self.message: bytearray | None = None


def queued(envelope: Envelope, queue_id: str) -> None:
    """The transaction's message is committed as `queue_id`."""
    if isinstance(envelope, Transaction):
        envelope.queue_id = queue_id


class TransactionLog:
    """Reports the transactions of one connection to a region's listener."""

    def __init__(self, region: str, submission: bool) -> None:
        self.region = region
        self.kind: observe.SmtpKind = "submission" if submission else "inbound"

    def mail(self, envelope: Envelope | None, session: Session | None, reply: str) -> None:
        """After a MAIL command: one refused outside a transaction is one that ended there
        (a MAIL refused inside an open transaction leaves that transaction open)."""
        if isinstance(envelope, Transaction) and not envelope.mail_from and _refused(reply):
            self._end(envelope, session, reply, "mail")

    def rcpt(self, envelope: Envelope | None, reply: str) -> None:
        if isinstance(envelope, Transaction) and envelope.mail_from and _refused(reply):
            envelope.refusal = reply
            envelope.refused += 1

    def data(
        self, envelope: Envelope | None, session: Session | None, reply: str, size: int, relay: bool
    ) -> None:
        """The reply to the transaction's data (`relay`: a sealed relay from another region)."""
        if isinstance(envelope, Transaction):
            envelope.ended = True
            self._end(envelope, session, reply, "data", size, "relay" if relay else None)

    def dropped(self, envelope: Envelope | None, session: Session | None) -> None:
        """The envelope is being replaced or the connection lost: an open transaction ends."""
        if isinstance(envelope, Transaction) and envelope.mail_from and not envelope.ended:
            envelope.ended = True
            self._end(envelope, session, envelope.refusal, "rcpt")

    def _end(
        self,
        envelope: Transaction,
        session: Session | None,
        reply: str | None,
        stage: observe.SmtpStage,
        size: int | None = None,
        kind: observe.SmtpKind | None = None,
    ) -> None:
        peer = session.peer if session is not None else None
        observe.smtp_transaction(
            self.region,
            envelope.queue_id,
            reply,
            kind=kind or self.kind,
            stage=stage,
            recipients=len(envelope.rcpt_tos),
            refused=envelope.refused,
            size=size,
            sender=envelope.mail_from,
            rcpts=envelope.rcpt_tos,
            peer=str(peer[0]) if isinstance(peer, tuple) else None,
        )


def _refused(reply: str) -> bool:
    return reply.startswith(REFUSED)
