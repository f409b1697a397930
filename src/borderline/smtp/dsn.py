"""Delivery status notifications (RFC 3464) for relayed mail that could not be delivered."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.policy import SMTP
from email.utils import formatdate, make_msgid

# Lines up to the RFC 5322 limit, so no field is folded into encoded words.
POLICY = SMTP.clone(max_line_length=998)
ENHANCED_CODE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
DIAGNOSTIC_MAX = 900
# RFC 3463: "4.4.7 Delivery time expired".
EXPIRED = "4.4.7"


@dataclass(frozen=True)
class Failure:
    """Why one recipient was not delivered: an SMTP reply, or (code None) no reply at all,
    such as a connection that failed."""

    code: int | None
    text: str

    @property
    def permanent(self) -> bool:
        return self.code is not None and 500 <= self.code < 600

    def status(self) -> str:
        """The RFC 3464 Status of a final failure: the reply's enhanced code when it is a
        permanent one, 5.0.0 for a permanent reply without one, and 4.4.7 for a temporary
        failure that outlived the retry window."""
        if not self.permanent:
            return EXPIRED
        enhanced = ENHANCED_CODE.match(self.text)
        return enhanced.group(0) if enhanced and enhanced.group(1) == "5" else "5.0.0"

    def __str__(self) -> str:
        reply = _one_line(self.text)
        return reply if self.code is None else f"{self.code} {reply}"


def _one_line(text: str) -> str:
    """A reply as one line of printable ASCII: a multi-line reply's lines joined by spaces."""
    printable = "".join(c if c.isascii() and c.isprintable() else " " for c in text)
    return " ".join(printable.split())[:DIAGNOSTIC_MAX]


def delivery_report(
    *,
    reporting_mta: str,
    remote_mta: str,
    postmaster: str,
    sender: str,
    failures: Mapping[str, Failure],
    arrival: float,
    attempts: int,
) -> bytes:
    """A multipart/report of the failed recipients, to the sender. The original message is
    not attached: the region that queued it cannot read it (it is sealed to its home)."""
    report = EmailMessage(policy=POLICY)
    report["From"] = f"Mail Delivery System <{postmaster}>"
    report["To"] = sender
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = formatdate(usegmt=True)
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"
    report.set_content(
        f"Your message could not be delivered to {len(failures)} recipient(s) after"
        f" {attempts} attempt(s):\n\n"
        + "".join(f"<{rcpt}>: {failure}\n" for rcpt, failure in failures.items())
    )
    report.make_mixed()
    report.set_type("multipart/report")
    report.set_param("report-type", "delivery-status")

    per_message = Message(policy=POLICY)
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    per_message["Arrival-Date"] = formatdate(arrival, usegmt=True)
    blocks: list[Message | str] = [per_message]
    for rcpt, failure in failures.items():
        block = Message(policy=POLICY)
        block["Final-Recipient"] = f"rfc822; {rcpt}"
        block["Action"] = "failed"
        block["Status"] = failure.status()
        if failure.code is not None:
            block["Remote-MTA"] = f"dns; {remote_mta}"
            block["Diagnostic-Code"] = f"smtp; {failure}"
        block["Last-Attempt-Date"] = formatdate(time.time(), usegmt=True)
        blocks.append(block)
    status = EmailMessage(policy=POLICY)
    status.set_type("message/delivery-status")
    del status["MIME-Version"]
    status.set_payload(blocks)
    report.attach(status)
    return report.as_bytes()
