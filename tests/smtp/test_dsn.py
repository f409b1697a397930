"""DSNs (RFC 3464) as the email package reads them: one status block per recipient, whose
Status follows the real outcome."""

from __future__ import annotations

import email
import email.policy

from borderline.smtp.dsn import Failure, delivery_report


def test_status_follows_the_outcome_and_every_block_parses() -> None:
    failures = {
        "a@example.test": Failure(550, "5.1.1 <a@example.test>: no such user"),
        "b@example.test": Failure(554, "transaction failed"),  # no enhanced code
        "c@example.test": Failure(451, "4.3.0 try again later\n4.3.0 still busy"),
        "d@example.test": Failure(None, "ConnectionRefusedError: refused\r\nInjected: yes"),
        "e@example.test": Failure(550, "2.0.0 a success code on a refusal"),
    }
    dsn = delivery_report(
        reporting_mta="us-east.example.test",
        remote_mta="eu-dublin.example.test",
        postmaster="MAILER-DAEMON@example.test",
        sender="bob@example.test",
        failures=failures,
        arrival=0.0,
        attempts=3,
    )
    assert b"\r\n" in dsn and b"\n" not in dsn.replace(b"\r\n", b""), "CRLF lines only"
    report = email.message_from_bytes(dsn, policy=email.policy.default)
    assert not report.defects
    [_, status] = report.iter_parts()
    per_message, *blocks = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; us-east.example.test"
    assert per_message["Arrival-Date"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    by_recipient = {b["Final-Recipient"].removeprefix("rfc822; "): b for b in blocks}
    assert {r: b["Status"] for r, b in by_recipient.items()} == {
        "a@example.test": "5.1.1",
        "b@example.test": "5.0.0",
        "c@example.test": "4.4.7",
        "d@example.test": "4.4.7",
        "e@example.test": "5.0.0",
    }
    assert by_recipient["c@example.test"]["Diagnostic-Code"] == (
        "smtp; 451 4.3.0 try again later 4.3.0 still busy"
    )
    # No reply, no SMTP diagnostic; and the error text cannot add a field.
    assert by_recipient["d@example.test"]["Diagnostic-Code"] is None
    assert by_recipient["d@example.test"]["Injected"] is None
    assert all(b["Action"] == "failed" for b in blocks)
