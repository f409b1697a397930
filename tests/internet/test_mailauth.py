"""Inbound SPF, DKIM, DMARC and ARC against a real DNS server (Knot) serving the records."""

from __future__ import annotations

from typing import Any

import authres
import dkim
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borderline import dkimsign
from borderline.mailauth import (
    AuthenticationResult,
    Disposition,
    Limits,
    authenticate,
    strip_forged_results,
)
from tests.internet.dns_server import KnotServer, Record, txt

SENDER_IP = "192.0.2.10"
OTHER_IP = "198.51.100.7"
ED25519 = dkimsign.generate_key("ed25519")
RSA = dkimsign.generate_key("rsa")


def message(from_header: str = "Alice <alice@sender.test>", extra: str = "") -> bytes:
    return (
        f"From: {from_header}\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@sender.test>\r\n"
        f"{extra}\r\nHello Bob.\r\n"
    ).encode()


def signed(raw: bytes, domain: str = "sender.test", key: bytes = ED25519) -> bytes:
    return dkimsign.sign(raw, domain=domain, selector="eu-dublin", private_key=key)


def sender_records(dmarc: str = "v=DMARC1; p=reject", key: bytes = ED25519) -> list[Record]:
    return [
        txt("sender", f"v=spf1 ip4:{SENDER_IP} -all"),
        txt("eu-dublin._domainkey.sender", dkimsign.public_record(key)),
        txt("_dmarc.sender", dmarc),
    ]


def check(
    dns: KnotServer,
    raw: bytes,
    ip: str = SENDER_IP,
    mail_from: str = "alice@sender.test",
    **options: Any,
) -> AuthenticationResult:
    return authenticate(
        raw,
        ip=ip,
        mail_from=mail_from,
        helo="mail.sender.test",
        resolver=dns.resolver(),
        **options,
    )


def test_aligned_spf_and_dkim_pass_dmarc(dns: KnotServer) -> None:
    dns.publish(sender_records())
    result = check(dns, signed(message()))
    assert result.spf.result == "pass"
    assert [(d.result, d.domain, d.algorithm) for d in result.dkim] == [
        ("pass", "sender.test", "ed25519-sha256")
    ]
    assert (result.dmarc.result, result.dmarc.aligned) == ("pass", "spf dkim")
    assert result.dmarc.policy is Disposition.REJECT
    assert result.disposition is Disposition.ACCEPT


def test_rsa_signature_passes(dns: KnotServer) -> None:
    dns.publish(sender_records(key=RSA))
    result = check(dns, signed(message(), key=RSA))
    assert [(d.result, d.algorithm) for d in result.dkim] == [("pass", "rsa-sha256")]


def test_spoofed_from_is_rejected_under_p_reject(dns: KnotServer) -> None:
    """Mail claiming From: sender.test, sent from an IP its SPF does not list, unsigned."""
    dns.publish(sender_records())
    result = check(dns, message(), ip=OTHER_IP)
    assert result.spf.result == "fail"
    assert result.dkim == ()
    assert result.dmarc.result == "fail"
    assert result.disposition is Disposition.REJECT


def test_quarantine_policy_and_pct_zero_sampling(dns: KnotServer) -> None:
    dns.publish(sender_records("v=DMARC1; p=quarantine"))
    assert check(dns, message(), ip=OTHER_IP).disposition is Disposition.QUARANTINE
    # pct=0: no message is in the sample, the next milder policy applies (RFC 7489 6.6.4).
    dns.publish(sender_records("v=DMARC1; p=reject; pct=0"))
    assert check(dns, message(), ip=OTHER_IP).disposition is Disposition.QUARANTINE


def test_modified_body_fails_dkim_and_dmarc(dns: KnotServer) -> None:
    dns.publish(sender_records())
    tampered = signed(message()).replace(b"Hello Bob.", b"Send money.")
    result = check(dns, tampered, ip=OTHER_IP)
    assert result.dkim[0].result == "fail"
    assert result.disposition is Disposition.REJECT


def test_missing_key_is_permerror(dns: KnotServer) -> None:
    dns.publish([txt("_dmarc.sender", "v=DMARC1; p=none")])
    result = check(dns, signed(message()))
    assert result.dkim[0].result == "permerror"
    assert result.spf.result == "none"
    assert (result.dmarc.result, result.disposition) == ("fail", Disposition.ACCEPT)


def test_relaxed_alignment_accepts_a_subdomain_and_strict_does_not(dns: KnotServer) -> None:
    records = [
        txt("eu-dublin._domainkey.mail.sender", dkimsign.public_record(ED25519)),
        txt("_dmarc.sender", "v=DMARC1; p=reject"),
    ]
    dns.publish(records)
    raw = signed(message(), domain="mail.sender.test")
    relaxed = check(dns, raw, ip=OTHER_IP)
    assert (relaxed.dkim[0].result, relaxed.dmarc.result) == ("pass", "pass")
    dns.publish([*records[:1], txt("_dmarc.sender", "v=DMARC1; p=reject; adkim=s")])
    strict = check(dns, raw, ip=OTHER_IP)
    assert (strict.dmarc.result, strict.disposition) == ("fail", Disposition.REJECT)


def test_subdomain_policy_comes_from_the_organizational_domain(dns: KnotServer) -> None:
    dns.publish([txt("_dmarc.sender", "v=DMARC1; p=none; sp=reject")])
    result = check(
        dns, message("news@lists.sender.test"), mail_from="x@lists.sender.test", ip=OTHER_IP
    )
    assert (result.dmarc.from_domain, result.dmarc.policy) == (
        "lists.sender.test",
        Disposition.REJECT,
    )
    assert result.disposition is Disposition.REJECT


def test_no_dmarc_record_is_none_and_accepted(dns: KnotServer) -> None:
    dns.publish([txt("sender", f"v=spf1 ip4:{SENDER_IP} -all")])
    result = check(dns, message(), ip=OTHER_IP)
    assert (result.spf.result, result.dmarc.result) == ("fail", "none")
    assert result.disposition is Disposition.ACCEPT


def test_two_from_fields_are_rejected(dns: KnotServer) -> None:
    """A second From is how DMARC is bypassed: a reader sees one, DMARC checks the other."""
    dns.publish(sender_records())
    raw = signed(message(extra="From: ceo@victim.test\r\n"))
    result = check(dns, raw)
    assert result.dmarc.result == "permerror"
    assert result.disposition is Disposition.REJECT


def test_a_hyphenated_from_domain_is_evaluated_whole(dns: KnotServer) -> None:
    """authheaders reads `my-bank.test` as `my`; here the right record must apply."""
    dns.publish([txt("_dmarc.my-bank", "v=DMARC1; p=reject")])
    result = check(dns, message("security@my-bank.test"), ip=OTHER_IP)
    assert (result.dmarc.from_domain, result.disposition) == ("my-bank.test", Disposition.REJECT)


def test_spf_lookup_limit_is_permerror(dns: KnotServer) -> None:
    """RFC 7208 4.6.4: more than 10 DNS-querying terms is a permerror, not 11 queries."""
    chain = [txt(f"l{n}.sender", f"v=spf1 include:l{n + 1}.sender.test -all") for n in range(12)]
    dns.publish([txt("sender", "v=spf1 include:l0.sender.test -all"), *chain])
    result = check(dns, message())
    assert result.spf.result == "permerror"
    assert result.dns_queries <= 13


def test_helo_identity_for_the_null_sender(dns: KnotServer) -> None:
    dns.publish([txt("mail.sender", f"v=spf1 ip4:{SENDER_IP} -all")])
    result = check(dns, message(), mail_from="")
    assert (result.spf.result, result.spf.scope, result.spf.domain) == (
        "pass",
        "helo",
        "mail.sender.test",
    )


def test_unanswered_dns_is_temperror_within_the_budget(dns: KnotServer, silent_dns: int) -> None:
    resolver = dns.resolver()
    resolver.port = silent_dns
    limits = Limits(dns_timeout=0.2, total_dns_time=0.5)
    many = message(
        extra="".join(
            signed(message(), domain=f"d{n}.test").split(b"\r\n", 1)[0].decode() + "\r\n"
            for n in range(3)
        )
    )
    result = authenticate(
        many,
        ip=SENDER_IP,
        mail_from="alice@sender.test",
        helo="h.test",
        resolver=resolver,
        limits=limits,
    )
    assert result.spf.result == "temperror"
    assert result.dmarc.result == "temperror"
    assert result.disposition is Disposition.ACCEPT  # a temporary error never rejects
    assert result.dns_queries <= 4  # the rest were refused: the time budget was spent


def test_header_bounds(dns: KnotServer) -> None:
    dns.publish(sender_records())
    flood = message(extra="X-Filler: x\r\n" * 2000)
    result = check(dns, signed(flood))
    assert result.dkim[0].result == "permerror"
    assert result.disposition is Disposition.REJECT
    signatures = signed(signed(signed(message())))
    capped = check(dns, signatures, limits=Limits(max_dkim_signatures=2))
    assert [d.result for d in capped.dkim] == ["pass", "pass", "neutral"]


def arc_sealed(raw: bytes, sealer: str) -> bytes:
    """What a forwarder (a mailing list) does: record its verdict, then seal it with ARC
    (dkimpy seals with RSA only, from a PKCS#1 key)."""
    verdict = f"Authentication-Results: {sealer}; dkim=pass header.d=sender.test\r\n".encode()
    with_verdict = verdict + raw
    key = serialization.load_pem_private_key(RSA, None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    sets = dkim.arc_sign(with_verdict, b"arc", sealer.encode(), key, sealer.encode())
    return b"".join(sets) + with_verdict


def test_arc_chain_passes_and_a_trusted_sealer_overrides_dmarc(dns: KnotServer) -> None:
    dns.publish([*sender_records(), txt("arc._domainkey.list", dkimsign.public_record(RSA))])
    # The list rewrote the body (a footer), breaking the author's DKIM signature.
    forwarded = arc_sealed(
        signed(message()).replace(b"Hello Bob.", b"Hello Bob.\r\n-- list"), "list.test"
    )
    plain = check(dns, forwarded, ip=OTHER_IP)
    assert (plain.arc.result, plain.arc.sealer, plain.arc.sets) == ("pass", "list.test", 1)
    assert plain.disposition is Disposition.REJECT
    trusted = check(dns, forwarded, ip=OTHER_IP, trusted_arc_sealers=frozenset({"list.test"}))
    assert trusted.disposition is Disposition.ACCEPT
    assert "ARC" in trusted.disposition_reason
    broken = forwarded.replace(b"-- list", b"-- evil")
    assert check(dns, broken, ip=OTHER_IP).arc.result == "fail"


def test_header_parses_and_quotes_hostile_values(dns: KnotServer) -> None:
    dns.publish(sender_records())
    hostile = 'x";dmarc=pass@sender.test'
    result = check(dns, signed(message()), mail_from=hostile, ip=OTHER_IP)
    field = result.header("mx.eu-dublin.borderline.test")
    assert field.endswith("\r\n") and "\r\n\t" in field
    parsed = authres.AuthenticationResultsHeader.parse(field.replace("\r\n\t", " ").strip())
    assert parsed.authserv_id == "mx.eu-dublin.borderline.test"
    assert [r.method for r in parsed.results] == ["spf", "dkim", "dmarc", "arc"]
    assert [r.result for r in parsed.results] == ["fail", "pass", "pass", "none"]
    assert "dmarc=pass@sender.test" in parsed.results[0].smtp_mailfrom  # one value, quoted


def test_forged_results_for_our_authserv_id_are_removed() -> None:
    raw = (
        b"Authentication-Results: mx.ours.test; dmarc=pass\r\n"
        b"Authentication-Results: (comment) MX.OURS.TEST (x); spf=pass\r\n"
        b"Authentication-Results: mx.theirs.test; spf=fail\r\n"
        b"Subject: s\r\n\r\nAuthentication-Results: mx.ours.test; in the body\r\n"
    )
    assert strip_forged_results(raw, "mx.ours.test") == (
        b"Authentication-Results: mx.theirs.test; spf=fail\r\n"
        b"Subject: s\r\n\r\nAuthentication-Results: mx.ours.test; in the body\r\n"
    )


def test_a_from_field_parsers_disagree_on_is_not_evaluated(dns: KnotServer) -> None:
    """`a@victim.test]<b@evil.test>`: one parser sees victim.test, another evil.test."""
    dns.publish(sender_records())
    result = check(dns, message("alice@sender.test]<x@evil.test>"))
    assert (result.dmarc.result, result.disposition) == ("permerror", Disposition.REJECT)


FIELD_NAMES = st.sampled_from(
    [
        "From",
        "DKIM-Signature",
        "ARC-Seal",
        "ARC-Message-Signature",
        "ARC-Authentication-Results",
        "Authentication-Results",
        "Subject",
        "X-Any",
    ]
)
TEXT = st.text(
    alphabet=st.sampled_from(list('ab@.;="\\()<>,: \t\r\n\x00é-_0123456789')), max_size=60
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.lists(st.tuples(FIELD_NAMES, TEXT), max_size=8),
    mail_from=TEXT,
    helo=TEXT,
    body=st.binary(max_size=80),
)
def test_hostile_input_never_crashes_or_breaks_the_header(
    dns_server: KnotServer,
    fields: list[tuple[str, str]],
    mail_from: str,
    helo: str,
    body: bytes,
) -> None:
    raw = b"".join(f"{n}: {v}\r\n".encode() for n, v in fields) + b"\r\n" + body
    result = authenticate(
        raw, ip="192.0.2.1", mail_from=mail_from, helo=helo, resolver=dns_server.resolver(timeout=1)
    )
    field = result.header("mx.ours.test")
    assert field.endswith("\r\n")
    unfolded = field[:-2].replace("\r\n\t", " ")
    assert "\r" not in unfolded and "\n" not in unfolded and "\x00" not in unfolded
    assert len(strip_forged_results(raw, "mx.ours.test")) <= len(raw)
