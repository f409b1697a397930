"""Addresses over real SMTP sessions: plus-addressing, aliases homed with their target,
postmaster@ and abuse@ of every domain, several domains; and deleting an account."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest

from borderline.accounts import AccountError
from borderline.directory import Directory
from borderline.vault import Justification, KeyReleaseDenied
from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.smtp.test_ingress import _client_tls, _submission, inbox, mx


@pytest.fixture
def config_path(tmp_path: Path, region_stores: dict[str, str]) -> Path:
    return write_config(
        tmp_path,
        region_stores,
        **{
            'domains = ["example.test"]': 'domains = ["example.test", "other.test"]',
            "\n[api]\n": '\n[addresses]\npostmaster = "alice@example.test"\n\n[api]\n',
        },
    )


def _send(running: RunningCloud, rcpts: list[str], subject: str) -> dict[str, tuple[int, bytes]]:
    """Mail from the Internet through Dublin's MX; the recipients it refused."""
    body = f"From: x@example.org\r\nSubject: {subject}\r\n\r\n{subject}\r\n"
    with mx(running, "eu-dublin") as client:
        try:
            return client.sendmail("x@example.org", rcpts, body)
        except smtplib.SMTPRecipientsRefused as refused:
            return refused.recipients


def _subjects(running: RunningCloud, region: str, address: str) -> list[str]:
    return [
        m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
        for m in inbox(running.cloud.region(region), address)
    ]


def test_tags_aliases_role_addresses_and_several_domains(running: RunningCloud) -> None:
    cloud = running.cloud
    cloud.add_account("carol@other.test", "eu-dublin", PASSWORD)
    assert cloud.add_alias("Sales@example.test", "bob@example.test") == "sales@example.test"
    refused = _send(
        running,
        [
            "alice+news@example.test",  # a tag: alice's
            "sales@example.test",  # bob's alias: homed with bob, in us-east
            "sales+eu@example.test",
            "postmaster@example.test",  # the configured account, for every domain
            "abuse@other.test",
            "carol@other.test",
            "alice+@example.test",
            "nobody+alice@example.test",
            "+alice@example.test",
        ],
        "several",
    )
    assert set(refused) == {"nobody+alice@example.test", "+alice@example.test"}
    assert all(code == 550 for code, _ in refused.values())
    assert running.drained()
    assert _subjects(running, "eu-dublin", "alice@example.test") == ["several"]  # once
    assert _subjects(running, "us-east", "bob@example.test") == ["several"]
    assert _subjects(running, "eu-dublin", "carol@other.test") == ["several"]

    with pytest.raises(AccountError, match="separates a tag"):
        cloud.add_account("dave+x@example.test", "eu-dublin", PASSWORD)
    with pytest.raises(AccountError, match=r"already exists, an alias of bob@example\.test"):
        cloud.add_account("sales@example.test", "eu-dublin", PASSWORD)
    with pytest.raises(AccountError, match=r"no account nobody@example\.test"):
        cloud.add_alias("help@example.test", "nobody@example.test")

    # Bob may send as his alias and its tags, never as another's address.
    with _submission(running, "us-east") as client:
        client.starttls(context=_client_tls())
        client.login("bob@example.test", PASSWORD)
        code, _ = client.mail("sales+eu@example.test")
        assert code == 250
        client.rset()
        assert client.mail("alice+news@example.test")[0] == 553

    cloud.remove_alias("sales@example.test")
    assert set(_send(running, ["sales@example.test"], "gone")) == {"sales@example.test"}


@pytest.mark.one_engine("RCPT resolution at the MX; delivery is the same on both engines")
def test_postmaster_without_a_domain_goes_to_the_configured_account(
    running: RunningCloud,
) -> None:
    """RFC 5321 4.1.1.3 and 4.5.1: `RCPT TO:<Postmaster>`, in any case, must be accepted."""
    for region, names in (("us-east", ["Postmaster", "POSTMASTER"]), ("eu-dublin", ["postmaster"])):
        with mx(running, region) as client:
            client.ehlo("client.test")
            assert client.mail("x@example.org")[0] == 250
            for name in names:
                assert client.rcpt(name) == (250, b"2.1.5 OK")
            assert client.data(b"From: x@example.org\r\nSubject: to " + region.encode())[0] == 250
    assert running.drained()
    # Relayed home once per message, whichever region took it: the configured account.
    assert sorted(_subjects(running, "eu-dublin", "alice@example.test")) == [
        "to eu-dublin",
        "to us-east",
    ]


def test_the_separator_is_configurable(tmp_path: Path) -> None:
    directory = Directory(tmp_path / "directory.sqlite")
    directory.add("alice@example.test", "eu-dublin")
    assert directory.account_for("alice-news@example.test", separator="-") == "alice@example.test"
    assert directory.account_for("alice+news@example.test", separator="-") is None
    assert directory.account_for("alice+news@example.test", separator="") is None
    assert directory.account_for("postmaster@example.test") is None, "none configured"
    directory.close()


def test_delete_account_refused_under_hold_then_key_destroyed_and_logged(
    running: RunningCloud,
) -> None:
    cloud, dublin = running.cloud, running.cloud.region("eu-dublin")
    cloud.add_alias("al@example.test", "alice@example.test")
    assert _send(running, ["alice@example.test"], "doomed") == {}
    [message] = dublin.store.messages(dublin.store.mailbox("alice@example.test", "INBOX").id)
    ciphertext = dublin.store.blob(message.blob_id)
    keys_file = dublin.root / "vault" / "keys.sqlite"
    wrapped = dublin.vault._db.execute(
        "SELECT wrapped FROM data_keys WHERE address = 'alice@example.test'"
    ).fetchone()[0]

    hold = dublin.store.add_hold("alice@example.test", "REQ-1", 4_000_000_000.0)
    with pytest.raises(AccountError, match="preservation hold"):
        cloud.delete_account("alice@example.test")
    assert len(inbox(dublin, "alice@example.test")) == 1, "nothing deleted under the hold"
    dublin.store.release_hold(hold)

    index = cloud.delete_account("ALICE@example.test")
    entry = json.loads(dublin.vault.access_log.entry(index))
    assert entry["type"] == "account-deleted" and entry["region"] == "eu-dublin"
    assert set(entry) == {"type", "v", "region", "time"}, "the entry names no one"
    with pytest.raises(KeyReleaseDenied):
        dublin.vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "t")
    # No copy of the wrapped key is left in the vault's files: the saved ciphertext is
    # unreadable for good.
    assert ciphertext
    for path in keys_file.parent.iterdir():
        assert wrapped not in path.read_bytes(), path
    assert cloud.directory.home("alice@example.test") is None
    assert cloud.directory.aliases() == []
    assert set(_send(running, ["alice@example.test", "al@example.test"], "after")) == {
        "alice@example.test",
        "al@example.test",
    }
    with pytest.raises(AccountError, match="no account"):
        cloud.delete_account("alice@example.test")
    # The address can be used again: a new account, with a new key.
    cloud.add_account("alice@example.test", "eu-dublin", PASSWORD)
    assert inbox(dublin, "alice@example.test") == []
