"""Delivery status notifications (RFC 3464) for mail that could not be delivered, relayed
between regions or sent to the Internet, or that is still being retried."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from typing import Literal

# Lines up to the RFC 5322 limit, so no field is folded into encoded words.
POLICY = SMTP.clone(max_line_length=998)
ENHANCED_CODE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
DIAGNOSTIC_MAX = 900
# RFC 3463: "4.4.7 Delivery time expired".
EXPIRED = "4.4.7"
# RFC 3463 "other undefined status": what a report says of mail an operator gave up on.
GIVEN_UP = "5.0.0"


@dataclass(frozen=True)
class Failure:
    """Why one recipient was not delivered: an SMTP reply, or (code None) no reply at all,
    such as a connection that failed. `enhanced` is the RFC 3463 status of a failure
    decided here without a reply (a null MX is 5.1.10); `remote_mta` the server that
    replied, when the report names one per recipient."""

    code: int | None
    text: str
    enhanced: str | None = None
    remote_mta: str | None = None

    @property
    def permanent(self) -> bool:
        if self.code is not None:
            return 500 <= self.code < 600
        return self.enhanced is not None and self.enhanced.startswith("5")

    def status(self) -> str:
        """The RFC 3464 Status of a final failure: the reply's enhanced code when it is a
        permanent one, 5.0.0 for a permanent reply without one, and 4.4.7 for a temporary
        failure that outlived the retry window."""
        if not self.permanent:
            return EXPIRED
        if self.code is None and self.enhanced is not None:
            return self.enhanced
        enhanced = ENHANCED_CODE.match(self.text)
        return enhanced.group(0) if enhanced and enhanced.group(1) == "5" else "5.0.0"

    def current_status(self) -> str:
        """The Status of a temporary failure still being retried (a delay notice)."""
        if self.code is None:
            return self.enhanced or "4.0.0"
        enhanced = ENHANCED_CODE.match(self.text)
        return enhanced.group(0) if enhanced and enhanced.group(1) == "4" else "4.0.0"

    def __str__(self) -> str:
        reply = _one_line(self.text)
        return reply if self.code is None else f"{self.code} {reply}"


def _one_line(text: str) -> str:
    """A reply as one line of printable ASCII: a multi-line reply's lines joined by spaces."""
    printable = "".join(c if c.isascii() and c.isprintable() else " " for c in text)
    return " ".join(printable.split())[:DIAGNOSTIC_MAX]


def _recipient_field(address: str) -> str:
    """An address as a DSN field gives it: RFC 3464 `rfc822`, or for a non-ASCII one RFC
    6533's `utf-8` type with each non-ASCII character as \\x{HEX}, which ASCII carries."""
    if address.isascii():
        return f"rfc822; {address}"
    return "utf-8; " + "".join(
        c if c.isascii() and c.isprintable() and c != "\\" else f"\\x{{{ord(c):X}}}"
        for c in address
    )


def delivery_report(
    *,
    reporting_mta: str,
    remote_mta: str | None,
    postmaster: str,
    sender: str,
    failures: Mapping[str, Failure],
    arrival: float,
    attempts: int,
    action: Literal["failed", "delayed"] = "failed",
    will_retry_until: float | None = None,
    original_headers: bytes | None = None,
) -> bytes:
    """A multipart/report, to the sender, of the recipients that failed (or, `delayed`,
    that are still being retried). `original_headers` (text/rfc822-headers) only where the
    reporting region can read the message: a relaying region cannot (it is sealed)."""
    delayed = action == "delayed"
    report = EmailMessage(policy=POLICY)
    report["From"] = f"Mail Delivery System <{postmaster}>"
    report["To"] = sender
    report["Subject"] = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    report["Date"] = formatdate(usegmt=True)
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"
    if delayed:
        until = formatdate(will_retry_until, usegmt=True) if will_retry_until else "later"
        intro = (
            f"Your message has not been delivered to {len(failures)} recipient(s) yet after"
            f" {attempts} attempt(s); it will be retried until {until}. Nothing to do yet:"
        )
    else:
        intro = (
            f"Your message could not be delivered to {len(failures)} recipient(s) after"
            f" {attempts} attempt(s):"
        )
    report.set_content(
        intro + "\n\n" + "".join(f"<{rcpt}>: {failure}\n" for rcpt, failure in failures.items())
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
        block["Final-Recipient"] = _recipient_field(rcpt)
        block["Action"] = action
        block["Status"] = failure.current_status() if delayed else failure.status()
        remote = failure.remote_mta or remote_mta
        if failure.code is not None and remote:
            block["Remote-MTA"] = f"dns; {remote}"
            block["Diagnostic-Code"] = f"smtp; {failure}"
        block["Last-Attempt-Date"] = formatdate(time.time(), usegmt=True)
        if delayed and will_retry_until:
            block["Will-Retry-Until"] = formatdate(will_retry_until, usegmt=True)
        blocks.append(block)
    status = EmailMessage(policy=POLICY)
    status.set_type("message/delivery-status")
    del status["MIME-Version"]
    status.set_payload(blocks)
    report.attach(status)
    if original_headers is not None:
        headers = EmailMessage(policy=POLICY)
        headers.set_type("text/rfc822-headers")
        del headers["MIME-Version"]
        # 8-bit header bytes (RFC 6532) as "?": a text/rfc822-headers part is 7-bit here.
        headers.set_payload(bytes(b if b < 128 else 63 for b in original_headers).decode())
        report.attach(headers)
    return report.as_bytes()
