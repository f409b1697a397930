"""A referral names the account's home region, so it is given only to the account's owner:
the home region checks the password first (in this process, or over HTTP when it runs in a
process of its own), and a wrong password gets exactly the reply of an unknown account
(issue 15 item 8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from borderline.cloud import Cloud
from borderline.config import load_config
from borderline.peering import PeeringError, QuestionDesk, ask, password_is_right
from borderline.peers import QUESTION_PATH
from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.imap.conftest import Raw

ALICE = "alice@example.test"  # homed in eu-dublin
FAILED = b"a NO [AUTHENTICATIONFAILED] invalid user name or password\r\n"


def login_reply(running: RunningCloud, region: str, user: str, password: str) -> bytes:
    raw = Raw(running, region)
    try:
        [reply] = raw.command(b"a", f'LOGIN "{user}" "{password}"'.encode())
        return reply
    finally:
        raw.close()


def test_a_wrong_password_for_an_account_homed_elsewhere_is_an_unknown_account(
    running: RunningCloud,
) -> None:
    dublin = running.cloud.region("eu-dublin")
    assert login_reply(running, "us-east", ALICE, "wrong guess") == FAILED
    assert login_reply(running, "us-east", "nobody@example.test", PASSWORD) == FAILED
    assert login_reply(running, "us-east", ALICE, PASSWORD).startswith(b"a NO [REFERRAL imap://")
    # A guess made at us-east counts at home too, with the guesser's address: once home
    # locks the pair out, not even the right password is referred.
    dublin.logins.lockout = 2
    for _ in range(2):
        assert login_reply(running, "us-east", ALICE, "wrong guess") == FAILED
    assert login_reply(running, "us-east", ALICE, PASSWORD) == FAILED
    # At us-east they count as any login's: its pair is refused there before any question
    # goes home, with the reply a guesser of an unknown account gets.
    us = running.cloud.region("us-east").logins
    us.base_delay = us.max_delay = 0.001
    us.lockout = 3  # alice's since her referral there; the unknown account's one, two more
    for _ in range(2):
        assert login_reply(running, "us-east", "nobody@example.test", "guess") == FAILED
    locked = b"a NO [UNAVAILABLE] too many failed logins; try again later\r\n"
    assert login_reply(running, "us-east", ALICE, PASSWORD) == locked
    assert login_reply(running, "us-east", "nobody@example.test", PASSWORD) == locked


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[RunningCloud, RunningCloud]]:
    """us-east and eu-dublin served apart, as by `borderline serve --region` on two hosts:
    the only way between them is the network."""
    config = load_config(write_config(tmp_path))
    with Cloud(config) as setup:
        setup.add_account(ALICE, "eu-dublin", PASSWORD)
    clouds = [Cloud(config, only=region) for region in ("us-east", "eu-dublin")]
    running = [RunningCloud(cloud) for cloud in clouds]
    try:
        yield running[0], running[1]
    finally:
        for each in running:
            each.stop()
        for cloud in clouds:
            cloud.close()


def test_across_processes_the_home_region_answers_over_http(
    two_processes: tuple[RunningCloud, RunningCloud],
) -> None:
    us, dublin = two_processes
    home = dublin.cloud.region("eu-dublin")
    assert login_reply(us, "us-east", ALICE, PASSWORD).startswith(b"a NO [REFERRAL imap://")
    assert login_reply(us, "us-east", "nobody@example.test", PASSWORD) == FAILED
    home.logins.lockout = 2
    for _ in range(2):
        assert login_reply(us, "us-east", ALICE, "wrong guess") == FAILED
    assert login_reply(us, "us-east", ALICE, PASSWORD) == FAILED, "home counted the guesses"

    # Only a question sealed and signed by a region of the cloud is answered, and only once.
    api = dublin.cloud.config.region("eu-dublin").api
    asker = us.cloud.region("us-east").vault
    question, wire = ask(asker, us.cloud.directory, "eu-dublin", ALICE, PASSWORD, "192.0.2.9")
    with httpx.Client(base_url=f"http://{api}", timeout=30) as client:
        answer = client.post(QUESTION_PATH, content=wire)
        assert answer.status_code == 200
        assert password_is_right(us.cloud.directory, question, answer.content)
        assert client.post(QUESTION_PATH, content=wire).status_code == 403, "a replay"
        forged = json.loads(ask(asker, us.cloud.directory, "eu-dublin", ALICE, "x", "1.2.3.4")[1])
        forged["asker"] = "eu-dublin"  # claims to come from another region
        assert client.post(QUESTION_PATH, content=json.dumps(forged)).status_code == 403
        assert client.post(QUESTION_PATH, content=b"{" * 20_000).status_code == 413


def test_answers_bind_to_their_question(cloud: Cloud) -> None:
    us, dublin = cloud.region("us-east"), cloud.region("eu-dublin")
    desk = QuestionDesk(dublin.vault, cloud.directory)
    question, wire = ask(us.vault, cloud.directory, "eu-dublin", ALICE, PASSWORD, "192.0.2.1")
    other, other_wire = ask(us.vault, cloud.directory, "eu-dublin", ALICE, "x", "192.0.2.1")
    answer = desk.answer(desk.open(wire), True)
    assert password_is_right(cloud.directory, question, answer)
    assert not password_is_right(cloud.directory, other, answer), "another question's answer"
    assert not password_is_right(cloud.directory, question, answer.replace(b"right", b"wrong"))
    with pytest.raises(PeeringError, match="stale"):
        desk.open(other_wire, now=other.asked_at + 3600)
    with pytest.raises(PeeringError, match="asked of eu-dublin"):
        QuestionDesk(dublin.vault, cloud.directory).open(
            ask(dublin.vault, cloud.directory, "us-east", ALICE, PASSWORD, "192.0.2.1")[1]
        )
