"""The records `borderline dns` will print, published into the real DNS server and used by
the same checks a receiver (mailauth) and a sender (outbound_route) run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from borderline import dkimsign
from borderline.dnsrecords import DkimRecord, DnsRecord, RegionMail, domain_records
from borderline.mailauth import Disposition, authenticate
from borderline.smtp.outbound_route import MtaSts, StsMode, TlsRequirement, plan
from tests.internet.dns_server import KnotServer, Record, txt
from tests.internet.https_policy import PolicyServer
from tests.internet.testca import TestCA

KEYS = {"eu-dublin": dkimsign.generate_key(), "us-east": dkimsign.generate_key("rsa")}
OLD_KEY = dkimsign.generate_key()


def current(region: str) -> DkimRecord:
    return DkimRecord(f"g2.{region}", dkimsign.public_record(KEYS[region]), current=True)


REGIONS = [
    RegionMail(
        "eu-dublin",
        "mx.dublin.example.test",
        ("127.0.0.1", "::1"),
        (DkimRecord("g1.eu-dublin", dkimsign.public_record(OLD_KEY)), current("eu-dublin")),
    ),
    RegionMail("us-east", "mx.useast.example.test", ("127.0.0.2",), (current("us-east"),)),
]


def zone_records(records: tuple[DnsRecord, ...]) -> list[Record]:
    return [
        txt(f"{r.name}.", r.value) if r.type == "TXT" else Record(f"{r.name}.", r.type, r.value)
        for r in records
    ]


def test_records_per_domain_and_region() -> None:
    published = domain_records("Example.test", REGIONS, dmarc_policy="reject")
    assert {(r.name, r.type, r.value) for r in published.for_region("eu-dublin")} >= {
        ("example.test", "MX", "10 mx.dublin.example.test."),
        ("g1.eu-dublin._domainkey.example.test", "TXT", dkimsign.public_record(OLD_KEY)),
        ("g2.eu-dublin._domainkey.example.test", "TXT", current("eu-dublin").record),
        ("eu-dublin._domainkey.example.test", "TXT", current("eu-dublin").record),
        ("mx.dublin.example.test", "AAAA", "::1"),
    }
    whole = {r.name: r.value for r in published.for_region(None)}
    assert whole["example.test"] == "v=spf1 ip4:127.0.0.1 ip6:::1 ip4:127.0.0.2 -all"
    assert whole["_dmarc.example.test"].startswith("v=DMARC1; p=reject;")
    assert whole["_smtp._tls.example.test"] == ("v=TLSRPTv1; rua=mailto:postmaster@example.test")
    assert published.mta_sts_policy == (
        "version: STSv1\r\nmode: enforce\r\nmx: mx.dublin.example.test\r\n"
        "mx: mx.useast.example.test\r\nmax_age: 604800\r\n"
    )
    changed = domain_records("example.test", REGIONS[:1])
    assert {r.value for r in changed.records if r.name == "_mta-sts.example.test"} != {
        r.value for r in published.records if r.name == "_mta-sts.example.test"
    }, "a changed policy gets a new id, so senders fetch it again"
    with pytest.raises(ValueError):
        domain_records("example.test", [])


@pytest.mark.parametrize(("region", "ip"), [("eu-dublin", "127.0.0.1"), ("us-east", "127.0.0.2")])
def test_mail_from_each_region_passes_spf_dkim_and_dmarc(
    dns: KnotServer, region: str, ip: str
) -> None:
    dns.publish(zone_records(domain_records("example.test", REGIONS).records))
    message = (
        b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: s\r\n"
        b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n"
    )
    signed = dkimsign.sign(
        message, domain="example.test", selector=f"g2.{region}", private_key=KEYS[region]
    )
    result = authenticate(
        signed,
        ip=ip,
        mail_from="alice@example.test",
        helo="mx.example.test",
        resolver=dns.resolver(),
    )
    assert (result.spf.result, result.dkim[0].result, result.dmarc.result) == (
        "pass",
        "pass",
        "pass",
    )
    assert result.dmarc.policy is Disposition.QUARANTINE
    spoofed = authenticate(
        message,
        ip="127.0.0.9",
        mail_from="alice@example.test",
        helo="x.test",
        resolver=dns.resolver(),
    )
    assert spoofed.disposition is Disposition.QUARANTINE


def test_senders_find_every_region_and_enforce_the_policy(
    tmp_path: Path, dns: KnotServer, policy_server: PolicyServer, test_ca: TestCA
) -> None:
    published = domain_records("example.test", REGIONS)
    dns.publish(zone_records(published.records))
    policy_server.serve(
        "mta-sts.example.test", test_ca.issue("mta-sts.example.test"), published.mta_sts_policy
    )
    sts = MtaSts(
        tmp_path,
        dns.async_resolver(),
        https_port=policy_server.port,
        ca_file=test_ca.ca_file,
        allowed=lambda _: True,
    )
    try:
        route = asyncio.run(plan("example.test", dns.async_resolver(), sts, allowed=lambda _: True))
    finally:
        sts.close()
    assert route.policy is not None and route.policy.mode is StsMode.ENFORCE
    assert sorted((h.mx.name, h.tls) for h in route.hops) == [
        ("mx.dublin.example.test", TlsRequirement.VALIDATED),
        ("mx.useast.example.test", TlsRequirement.VALIDATED),
    ]
