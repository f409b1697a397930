"""The per-account sending limit on submission, over real sessions on both submission
ports of a region: messages and recipients an hour, 451 4.7.0 over either."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from borderline.smtp.limits import SendingLimit
from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.smtp.test_ingress import _client_tls, _submission

LIMITS = "\n[smtp]\nsubmission_messages_per_hour = 2\nsubmission_recipients_per_hour = 3\n"
OVER = (451, b"4.7.0 This account's sending limit is reached; try again later")


@pytest.fixture
def config_path(tmp_path: Path, region_stores: dict[str, str]) -> Path:
    return write_config(tmp_path, region_stores, **{"\n[api]\n": LIMITS + "\n[api]\n"})


def _logged_in(running: RunningCloud, address: str, implicit_tls: bool = False) -> smtplib.SMTP:
    section = running.cloud.region("eu-dublin").section
    if implicit_tls:
        assert section.submissions is not None
        listen = section.submissions
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            listen.host, listen.port, context=_client_tls(), timeout=30
        )
    else:
        client = _submission(running, "eu-dublin")
        client.starttls(context=_client_tls())
    client.login(address, PASSWORD)
    return client


def _message(sender: str) -> bytes:
    return f"From: {sender}\r\nSubject: limited\r\n\r\nhello\r\n".encode()


@pytest.mark.one_engine("an in-memory count at the SMTP layer; nothing engine-specific")
def test_an_account_may_send_so_much_an_hour(running: RunningCloud) -> None:
    running.cloud.add_account("carol@example.test", "eu-dublin", PASSWORD)
    alice = "alice@example.test"
    with _logged_in(running, alice) as client:
        assert client.sendmail(alice, ["bob@example.test"], _message(alice)) == {}
        client.mail(alice)
        for rcpt in ("bob@example.test", "carol@example.test"):
            assert client.rcpt(rcpt)[0] == 250
        assert client.rcpt("alice@example.test") == OVER, "a fourth recipient this hour"
        assert client.data(_message(alice))[0] == 250  # the two taken go
        assert client.mail(alice) == OVER, "a third message this hour"
    # Both submission ports of the region count together; other accounts are not held up.
    with _logged_in(running, alice, implicit_tls=True) as client:
        assert client.mail(alice) == OVER
    with _logged_in(running, "carol@example.test", implicit_tls=True) as client:
        assert client.sendmail("carol@example.test", [alice], _message("carol@example.test")) == {}
    # What was refused was never stored: bob has the two messages alice was allowed.
    assert running.drained()
    bob = running.cloud.region("us-east").store.mailbox("bob@example.test", "INBOX")
    assert bob.messages == 2


def test_the_allowance_refills_at_the_hourly_rate() -> None:
    now = [0.0]
    limit = SendingLimit(messages=2, recipients=10, clock=lambda: now[0])
    assert limit.take("a@x.test", 4) and limit.take("a@x.test", 4)
    assert not limit.allows("a@x.test") and limit.allows("b@x.test", 10)
    now[0] = 1800.0  # half an hour: one message and five recipients back
    assert limit.allows("a@x.test", 7) and not limit.allows("a@x.test", 8)
    assert limit.take("a@x.test", 1) and not limit.allows("a@x.test")
    limit.give_back("a@x.test", 1)
    assert limit.allows("a@x.test", 7)
    now[0] = 100_000.0  # never more than an hour's worth
    assert limit.take("a@x.test", 10) and not limit.allows("a@x.test", 1)
