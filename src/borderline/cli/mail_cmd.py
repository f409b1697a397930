"""`borderline dkim list|rotate` and `borderline dns`: the keys each region signs its mail
to the Internet with, and the DNS records to publish for every domain and region."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    data_table,
    emphasis,
    err_console,
    open_cloud,
    print_json,
    user_errors,
)
from borderline.cloud import Cloud
from borderline.dkimsign import Algorithm
from borderline.dnsrecords import (
    DkimRecord,
    DmarcPolicy,
    DnsRecord,
    RegionMail,
    StsMode,
    domain_records,
)
from borderline.vault import DkimKey

T = TypeVar("T", bound=str)
ALGORITHMS: dict[str, Algorithm] = {"rsa": "rsa", "ed25519": "ed25519"}
DMARC_POLICIES: dict[str, DmarcPolicy] = {
    "none": "none",
    "quarantine": "quarantine",
    "reject": "reject",
}
STS_MODES: dict[str, StsMode] = {"enforce": "enforce", "testing": "testing", "none": "none"}

dkim_app = typer.Typer(help="The DKIM keys each region signs outgoing mail with.")

RegionOption = Annotated[
    str | None,
    typer.Option("--region", "-r", help="Only this region (its vault must be on this host)."),
]


def _choice(choices: dict[str, T], value: str, option: str) -> T:
    chosen = choices.get(value)
    if chosen is None:
        raise typer.BadParameter(f"one of {', '.join(choices)}", param_hint=option)
    return chosen


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _key_info(region: str, key: DkimKey, now: float) -> dict[str, object]:
    return {
        "region": region,
        "selector": key.selector,
        "algorithm": key.algorithm,
        "signing": key.signing(now),
        "published": key.published(now),
        "active_from": _when(key.active_from),
        "retired_at": _when(key.retired_at) or None,
        "record": key.record,
    }


@dkim_app.command("list")
def list_keys(
    region: RegionOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Each region's key generations: which one signs, which are still to be published."""
    now = time.time()
    with open_cloud(config, region) as cloud, user_errors():
        rows = [
            _key_info(r.id, key, now) for r in cloud.regions.values() for key in r.vault.dkim_keys()
        ]
    if as_json:
        print_json(rows)
        return
    table = data_table("region", "selector", "algorithm", "signing", "published", "from", "until")
    for row in rows:
        table.add_row(
            str(row["region"]),
            str(row["selector"]),
            str(row["algorithm"]),
            "yes" if row["signing"] else "",
            "yes" if row["published"] else "no",
            str(row["active_from"]),
            str(row["retired_at"] or ""),
        )
    console.print(table)


@dkim_app.command("rotate")
def rotate(
    region: Annotated[str, typer.Option("--region", "-r", help="The region whose key to rotate.")],
    algorithm: Annotated[
        str, typer.Option(help="rsa (2048 bits, checked everywhere) or ed25519 (RFC 8463).")
    ] = "rsa",
    in_hours: Annotated[
        float,
        typer.Option(
            "--in",
            min=0,
            help="Hours until the new key signs: publish its record (borderline dns) first.",
        ),
    ] = 48,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Make a new key generation for REGION. The key it replaces stays published for 7 days
    after the switch (mail signed before it still verifies); keys past that are destroyed."""
    chosen = _choice(ALGORITHMS, algorithm, "--algorithm")
    now = time.time()
    with open_cloud(config, region) as cloud, user_errors():
        key = cloud.region(region).vault.rotate_dkim(
            chosen, active_from=now + in_hours * 3600, now=now
        )
    if as_json:
        print_json(_key_info(region, key, now))
        return
    console.print(
        emphasis(
            "new key ", key.selector, f" ({key.algorithm}) signs from ", _when(key.active_from)
        )
    )
    console.print(f'publish before then: {key.selector}._domainkey.<domain> TXT "{key.record}"')


def cloud_records(
    cloud: Cloud,
    *,
    dmarc_policy: DmarcPolicy,
    mta_sts_mode: StsMode,
) -> list[tuple[str, list[DnsRecord], str]]:
    """Per domain of the cloud: its records and its MTA-STS policy file. DKIM keys of the
    regions whose vault is open here (all of them, unless serving one region)."""
    now = time.time()
    regions = []
    for section in cloud.config.regions:
        opened = cloud.regions.get(section.id)
        keys = [] if opened is None else opened.vault.dkim_keys(now)
        regions.append(
            RegionMail(
                section.id,
                cloud.config.host_name(section.id),
                tuple(section.public_addresses),
                tuple(
                    DkimRecord(k.selector, k.record, current=k.signing(now))
                    for k in keys
                    if k.published(now)
                ),
            )
        )
    result = []
    for domain in cloud.config.cloud.domains:
        published = domain_records(
            domain, regions, dmarc_policy=dmarc_policy, mta_sts_mode=mta_sts_mode
        )
        result.append((published.domain, list(published.records), published.mta_sts_policy))
    return result


def _zone_line(record: DnsRecord) -> str:
    value = record.value
    if record.type == "TXT":
        raw = value.encode()
        value = " ".join(
            '"' + raw[i : i + 255].decode().replace("\\", "\\\\").replace('"', '\\"') + '"'
            for i in range(0, len(raw), 255)
        )
    return f"{record.name}. {record.ttl} IN {record.type} {value}"


def dns(
    region: RegionOption = None,
    dmarc: Annotated[
        str, typer.Option(help="DMARC policy to publish: none, quarantine or reject.")
    ] = "quarantine",
    mta_sts: Annotated[
        str,
        typer.Option(
            "--mta-sts",
            help="MTA-STS mode: testing (start here), enforce (once every MX has a valid"
            " certificate), none.",
        ),
    ] = "testing",
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """The records to publish for every domain of the cloud, per region: MX, A/AAAA (from
    each region's public_addresses), SPF, DKIM, DMARC, MTA-STS and TLS-RPT, as zone-file
    lines, and the MTA-STS policy file to serve."""
    policy = _choice(DMARC_POLICIES, dmarc, "--dmarc")
    mode = _choice(STS_MODES, mta_sts, "--mta-sts")
    with open_cloud(config, region) as cloud, user_errors():
        domains = cloud_records(cloud, dmarc_policy=policy, mta_sts_mode=mode)
        bare = [s.id for s in cloud.config.regions if not s.public_addresses]
    for region_id in bare:
        err_console.print(
            f"warning: region {region_id} has no public_addresses: no A/AAAA record and no"
            " SPF term for it"
        )
    if as_json:
        print_json(
            [
                {
                    "domain": domain,
                    "records": [
                        {"name": r.name, "type": r.type, "value": r.value, "region": r.region}
                        for r in records
                        if region is None or r.region in (region, None)
                    ],
                    "mta_sts_policy": text,
                }
                for domain, records, text in domains
            ]
        )
        return
    for domain, records, text in domains:
        console.print(f"; {domain}")
        for record in records:
            if region is None or record.region in (region, None):
                where = f"  ; {record.region}" if record.region else ""
                console.print(_zone_line(record) + where)
        console.print(f"; https://mta-sts.{domain}/.well-known/mta-sts.txt (text/plain):")
        for line in text.splitlines():
            console.print(f";   {line}")
