"""The DNS records a mail domain publishes for Borderline, per domain and region (for
`borderline dns`): MX, SPF, DKIM, DMARC, MTA-STS (the TXT record and the policy file) and
TLS-RPT.

Every region is an MX (inbound mail may arrive anywhere and is sealed to its home) and every
region sends (mail leaves from the sender's home), so each region's addresses are in SPF
and each region has its own DKIM keys below `<region>._domainkey.<domain>`: one selector per
key generation (`g<n>.<region>`), and at `<region>._domainkey.<domain>` itself the key in use
(so the name the region is known by resolves to its current key)."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DmarcPolicy = Literal["none", "quarantine", "reject"]
StsMode = Literal["enforce", "testing", "none"]


@dataclass(frozen=True)
class DkimRecord:
    """One published DKIM key: its selector and record text (`dkimsign.public_record`)."""

    selector: str
    record: str
    current: bool = False  # the key the region signs with now


@dataclass(frozen=True)
class RegionMail:
    """What one region contributes: its mail host name, addresses and DKIM keys (none for a
    region whose vault is not on this host)."""

    region: str
    hostname: str
    addresses: tuple[str, ...]
    dkim: tuple[DkimRecord, ...] = ()


@dataclass(frozen=True)
class DnsRecord:
    name: str  # absolute, without the final dot
    type: str
    value: str  # presentation form of the data, TXT unquoted
    region: str | None = None  # the region it belongs to, None for the whole domain
    ttl: int = 3600


@dataclass(frozen=True)
class DomainRecords:
    domain: str
    records: tuple[DnsRecord, ...]
    mta_sts_policy: str  # served at https://mta-sts.<domain>/.well-known/mta-sts.txt

    def for_region(self, region: str | None) -> list[DnsRecord]:
        return [record for record in self.records if record.region == region]


def domain_records(
    domain: str,
    regions: Sequence[RegionMail],
    *,
    dmarc_policy: DmarcPolicy = "quarantine",
    report_to: str | None = None,
    mta_sts_mode: StsMode = "enforce",
    mta_sts_max_age: int = 604_800,
) -> DomainRecords:
    """`report_to` (an address) receives DMARC aggregate and TLS-RPT reports; by default
    postmaster@domain, which every Borderline domain has."""
    if not regions:
        raise ValueError("a mail domain needs at least one region")
    domain = domain.lower().rstrip(".")
    reports = report_to or f"postmaster@{domain}"
    records: list[DnsRecord] = []
    for region in regions:
        records.append(DnsRecord(domain, "MX", f"10 {region.hostname}.", region.region))
        hosts = [f"mta-sts.{domain}"]
        if region.hostname.lower().endswith(f".{domain}"):
            hosts.append(region.hostname.lower())  # else its own zone has its addresses
        for host in hosts:
            for address in region.addresses:
                kind = "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
                records.append(DnsRecord(host, kind, address, region.region))
        keys = f"{region.region}._domainkey.{domain}"
        for key in region.dkim:
            name = f"{key.selector}._domainkey.{domain}"
            records.append(DnsRecord(name, "TXT", key.record, region.region))
            if key.current:
                records.append(DnsRecord(keys, "TXT", key.record, region.region))
    records.append(DnsRecord(domain, "TXT", spf_record(regions)))
    records.append(
        DnsRecord(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p={dmarc_policy}; adkim=s; aspf=r; rua=mailto:{reports}",
        )
    )
    policy = mta_sts_policy(regions, mta_sts_mode, mta_sts_max_age)
    policy_id = hashlib.sha256(policy.encode()).hexdigest()[:20]
    records.append(DnsRecord(f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={policy_id}"))
    records.append(DnsRecord(f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua=mailto:{reports}"))
    return DomainRecords(domain, tuple(records), policy)


def spf_record(regions: Sequence[RegionMail]) -> str:
    """Only the regions' own addresses may send (`-all`): no include, so no DNS lookups."""
    terms = []
    for region in regions:
        for address in region.addresses:
            version = ipaddress.ip_address(address).version
            terms.append(f"ip{version}:{address}")
    return " ".join(["v=spf1", *dict.fromkeys(terms), "-all"])


def mta_sts_policy(regions: Sequence[RegionMail], mode: StsMode, max_age: int) -> str:
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {host}" for host in dict.fromkeys(r.hostname.lower() for r in regions)]
    lines.append(f"max_age: {max_age}")
    return "\r\n".join(lines) + "\r\n"
