"""The vault's keys for mail to the Internet: the outbound queue's encryption, bound to
region, sender and destination, and the region's DKIM keys in generations."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest

from borderline.vault import KeyReleaseDenied
from borderline.vault.vault import DKIM_GRACE_SECONDS
from tests.vault.test_vault import make_vault

MESSAGE = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hi\r\n\r\nbody\r\n"
DAY = 24 * 3600.0


def verifies(message: bytes, records: dict[str, str]) -> bool:
    """dkimpy's verification, with the given selector -> record text as the DNS."""

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        selector = name.decode().removesuffix("._domainkey.example.test.")
        return records.get(selector, "").encode()

    return bool(dkim.verify(message, dnsfunc=lookup))


def test_queued_mail_opens_only_for_its_sender_and_domain(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    blob = vault.encrypt_outbound("Alice@example.test", "remote.test", MESSAGE[:40], MESSAGE[40:])
    assert b"Subject: hi" not in blob
    assert vault.open_outbound("alice@example.test", "remote.test", blob) == MESSAGE
    with pytest.raises(ValueError, match="fails authentication"):
        vault.open_outbound("alice@example.test", "other.test", blob)
    vault.create_account_key("bob@example.test")
    with pytest.raises(ValueError, match="fails authentication"):
        vault.open_outbound("bob@example.test", "remote.test", blob)
    with pytest.raises(ValueError, match="fails authentication"):
        vault.open_outbound("alice@example.test", "remote.test", blob[:-1] + b"\0")
    with pytest.raises(KeyReleaseDenied):
        vault.open_outbound("nobody@example.test", "remote.test", blob)


def test_dkim_generations_rotate_with_a_grace_period(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    start = 1_000_000.0
    [first] = vault.dkim_keys(start)
    assert (first.selector, first.algorithm) == ("g1.eu-dublin", "rsa") and first.signing(start)
    records = {first.selector: first.record}
    old = vault.dkim_sign(MESSAGE, "example.test", now=start)
    assert b"s=g1.eu-dublin" in old and verifies(old, records)

    second = vault.rotate_dkim("ed25519", active_from=start + DAY, now=start)
    assert second.selector == "g2.eu-dublin" and not second.signing(start)
    records[second.selector] = second.record
    assert b"s=g1.eu-dublin" in vault.dkim_sign(MESSAGE, "example.test", now=start + 10)
    new = vault.dkim_sign(MESSAGE, "example.test", now=start + DAY)
    assert b"s=g2.eu-dublin" in new and verifies(new, records)
    g1, g2 = vault.dkim_keys(start + DAY)
    assert (
        g1.retired_at == start + DAY and g1.published(start + DAY) and not g1.signing(start + DAY)
    )

    # Past the grace period the old key is no longer published, and the next rotation
    # destroys it: mail it signed is older than any retry.
    later = start + DAY + DKIM_GRACE_SECONDS + 1
    assert not g1.published(later) and g2.published(later)
    vault.rotate_dkim("rsa", active_from=later, now=later)
    assert [k.generation for k in vault.dkim_keys(later)] == [2, 3]
    assert verifies(old, records), "a signature stays valid as long as its record is published"
    del records[first.selector]
    assert not verifies(old, records)


def test_dkim_keys_survive_a_restart_and_stay_wrapped(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    [key] = vault.dkim_keys()
    signed = vault.dkim_sign(MESSAGE, "example.test")
    database = (tmp_path / "vault").glob("*")
    assert not any(b"PRIVATE KEY" in path.read_bytes() for path in database if path.is_file())
    again = make_vault(tmp_path)
    assert again.dkim_keys() == [key]
    assert verifies(signed, {key.selector: key.record})
    assert verifies(again.dkim_sign(MESSAGE, "example.test"), {key.selector: key.record})
