"""DKIM signing, verified by dkimpy's own `dkimverify` command against the real DNS server,
including after a real Postfix has carried the message into a Maildir."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from borderline import dkimsign
from tests.internet.dkimverify import dkimverify
from tests.internet.dns_server import KnotServer, txt
from tests.internet.postfix import PostfixServer
from tests.internet.testca import TestCA


def outgoing(subject: str = "hello") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.test>"
    msg["To"] = "bob@remote.test"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    msg["Message-ID"] = "<s1@example.test>"
    msg.set_content("A line long enough to be wrapped by someone, somewhere, some day.\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_signature_verifies_with_dkimverify(dns: KnotServer, algorithm: str) -> None:
    key = dkimsign.generate_key(algorithm)  # type: ignore[arg-type]
    dns.publish([txt("eu-dublin._domainkey.example", dkimsign.public_record(key))])
    signed = dkimsign.sign(outgoing(), domain="example.test", selector="eu-dublin", private_key=key)
    assert signed.startswith(b"DKIM-Signature: ")
    done = dkimverify(signed, dns.port)
    assert (done.returncode, done.stdout.strip()) == (0, "signature ok"), done.stderr
    tampered = signed.replace(b"hello", b"HELLO")
    assert dkimverify(tampered, dns.port).returncode == 1


def test_record_of_another_region_does_not_verify(dns: KnotServer) -> None:
    """Each region's key under its own selector: dublin's record cannot vouch for us-east."""
    dublin, us_east = dkimsign.generate_key(), dkimsign.generate_key()
    dns.publish([txt("eu-dublin._domainkey.example", dkimsign.public_record(dublin))])
    signed = dkimsign.sign(
        outgoing(), domain="example.test", selector="eu-dublin", private_key=us_east
    )
    assert dkimverify(signed, dns.port).returncode == 1


def test_record_text_and_bad_inputs() -> None:
    key = dkimsign.generate_key("ed25519")
    assert dkimsign.key_algorithm(key) == "ed25519"
    record = dkimsign.public_record(key)
    assert record.startswith("v=DKIM1; k=ed25519; p=") and len(record) == 66
    assert dkimsign.public_record(dkimsign.generate_key("rsa")).startswith("v=DKIM1; k=rsa; p=MII")
    with pytest.raises(dkimsign.DkimKeyError, match="not a DNS name"):
        dkimsign.sign(outgoing(), domain="example.test", selector="a..b", private_key=key)
    with pytest.raises(dkimsign.DkimKeyError, match="PEM"):
        dkimsign.sign(outgoing(), domain="example.test", selector="s", private_key=b"junk")
    with pytest.raises(dkimsign.DkimKeyError, match="From"):
        dkimsign.sign(
            b"Subject: x\r\n\r\nbody\r\n", domain="example.test", selector="s", private_key=key
        )


def test_signature_survives_postfix(
    dns: KnotServer, postfix: PostfixServer, test_ca: TestCA
) -> None:
    """Sent over STARTTLS (certificate checked against the test CA) to the real Postfix,
    delivered into its Maildir, and still verifiable there, as a receiver would check it."""
    key = dkimsign.generate_key()
    dns.publish([txt("eu-dublin._domainkey.example", dkimsign.public_record(key))])
    signed = dkimsign.sign(
        outgoing("through postfix"), domain="example.test", selector="eu-dublin", private_key=key
    )
    before = len(postfix.delivered("remote.test"))
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client._host = "mx.remote.test"  # type: ignore[attr-defined]  # the certificate's name
        client.starttls(context=test_ca.client_context())
        client.sendmail("alice@example.test", ["bob@remote.test"], signed)
    delivered = postfix.wait_delivered("remote.test", before + 1)[-1]
    assert b"through postfix" in delivered and b"Received: from" in delivered
    assert b"(using TLSv1.3" in delivered  # Postfix's Received field: it came over TLS
    done = dkimverify(delivered, dns.port)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rsa_signatures_are_dkimpys_own() -> None:
    """The RSA signing primitive borderline.dkimsign hands dkimpy (OpenSSL's) gives the
    very bytes of dkimpy's own, so what is signed and how is dkimpy's alone."""
    import hashlib

    import dkim.crypto

    key = dkimsign.generate_key("rsa")
    signed = dkimsign.sign(outgoing(), domain="example.test", selector="s", private_key=key)
    parsed = dkim.crypto.parse_pem_private_key(dkimsign._library_key(key)[0])
    digest = hashlib.sha256(signed)
    assert dkimsign._rsa_sign(digest, parsed) == dkim.crypto.RSASSA_PKCS1_v1_5_sign(digest, parsed)
