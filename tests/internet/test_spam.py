"""Spam scoring on the MX by a real rspamd: its score sends a message to Junk or refuses it;
an rspamd that does not answer scores nothing and stops no mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from borderline.config import InboundSection
from borderline.smtp.inbound_auth import InboundAuthenticator
from borderline.smtp.spam import Rspamd
from tests.conftest import RunningCloud, write_config
from tests.internet.components import free_port
from tests.internet.rspamd import GTUBE, GTUBE_SCORE, RspamdServer
from tests.internet.test_inbound_auth import _mail
from tests.smtp.test_ingress import mx

SPAM = f"From: x@example.org\r\nSubject: spam\r\n\r\n{GTUBE}\r\n".encode()


def _judge(url: str, junk: float, reject: float) -> InboundAuthenticator:
    settings = InboundSection(
        authenticate=False, rspamd_url=url, spam_junk_score=junk, spam_reject_score=reject
    )
    return InboundAuthenticator(settings, "example.test")


@pytest.fixture
def config_path(tmp_path: Path, region_stores: dict[str, str], rspamd: RspamdServer) -> Path:
    inbound = (
        f'[inbound]\nauthenticate = false\nrspamd_url = "{rspamd.url}"\n'
        f"spam_junk_score = {GTUBE_SCORE - 1}\nspam_reject_score = {GTUBE_SCORE + 1}\n\n[api]\n"
    )
    return write_config(tmp_path, region_stores, **{"\n[api]\n": "\n" + inbound})


@pytest.mark.one_engine("spam scoring is the same over either store engine")
def test_a_score_over_the_junk_threshold_goes_to_junk(running: RunningCloud) -> None:
    with mx(running, "eu-dublin") as client:
        clean = b"From: x@example.org\r\nSubject: clean\r\n\r\nHello Alice.\r\n"
        client.sendmail("x@example.org", ["alice@example.test"], clean)
        client.sendmail("x@example.org", ["alice@example.test"], SPAM)
    dublin = running.cloud.region("eu-dublin")
    assert list(_mail(dublin, "alice@example.test", "INBOX")) == ["clean"]
    assert list(_mail(dublin, "alice@example.test", "Junk")) == ["spam"]


def test_a_score_over_the_reject_threshold_is_refused(rspamd: RspamdServer) -> None:
    judge = _judge(rspamd.url, GTUBE_SCORE - 5, GTUBE_SCORE)
    verdict = judge.check(SPAM, "192.0.2.1", "x@example.org", "mail.example.org", ["a@b.test"])
    assert verdict.refusal == f"550 5.7.1 Message refused as spam ({GTUBE_SCORE:.1f})"
    judge.close()


def test_an_rspamd_that_does_not_answer_scores_nothing() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert Rspamd(url, 2).score(SPAM, "192.0.2.1", "h", "", []) is None
    judge = _judge(url, 1, 2)
    verdict = judge.check(SPAM, "192.0.2.1", "x@example.org", "h", [])
    assert (verdict.refusal, verdict.mailbox) == (None, "INBOX")
    judge.close()
