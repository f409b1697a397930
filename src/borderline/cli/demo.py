"""`borderline demo`: two regions, mail across the boundary, and proof of where it lives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import json
import secrets
import socket
import tempfile
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated

import aiosmtplib
import httpx
import typer

from borderline.cli.common import console, data_table, emphasis, fail, user_errors
from borderline.cli.legal_demo import demo_replay
from borderline.cloud import Cloud, Region
from borderline.config import example_config, load_config
from borderline.law import EXAMPLES, LawEngine, load_request
from borderline.report.logview import ACCESS_TYPES
from borderline.residency import files_containing

DEMO_PASSWORD = "demo-password-1"
ACCOUNTS = (
    ("alice@example.test", "eu-dublin"),
    ("carol@example.test", "eu-dublin"),
    ("bob@example.test", "us-east"),
)
DUBLIN_2013 = EXAMPLES / "dublin_warrant_2013.toml"
OPERATOR_METRICS = (
    "borderline_smtp_messages_total",
    "borderline_delivery_attempts_total",
    "borderline_queue_depth",
    "borderline_key_releases_total",
    "borderline_log_entries",
)
LISTENER_OFFSETS = (25, 87, 65, 43, 93, 81, 125, 187, 165, 143, 193, 181, 80)


# Below Linux's ephemeral ports (32768 and up by default), which any client socket may take
# between this check and the listener's bind.
EPHEMERAL_PORTS = 32768
SLOT = 200  # a base port starts a slot of this many ports, which holds all its listeners
# Ports browsers refuse to open (Chromium's and Firefox's lists; above 10,000 only Amanda's):
# the console on one of them is unreachable (net::ERR_UNSAFE_PORT).
BROWSER_REFUSED_PORTS = frozenset({10080})


def base_slots(lane: int = 0, lanes: int = 1) -> list[int]:
    """The slots a base port of `lane` (of `lanes`) may start: below the ephemeral ports,
    and none with a listener on a port browsers refuse."""
    return [
        slot
        for slot in range(10000 // SLOT + lane, EPHEMERAL_PORTS // SLOT - 1, lanes)
        if not any(slot * SLOT + offset in BROWSER_REFUSED_PORTS for offset in LISTENER_OFFSETS)
    ]


def free_base_port(lane: int = 0, lanes: int = 1) -> int:
    """A base port whose every demo listener is free right now. Processes that start
    listeners at the same time (the test workers) each pass their own `lane` of `lanes`:
    their bases are then in different slots, so one cannot take a port between the other's
    check and bind."""
    slots = base_slots(lane, lanes)
    for _ in range(200):
        base = secrets.choice(slots) * SLOT
        try:
            for offset in LISTENER_OFFSETS:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports for the demo listeners")


def _message(sender: str, rcpt: str, subject: str, marker: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = rcpt
    message["Subject"] = subject
    message.set_content(f"Hello from the demo.\nSecret marker: {marker}\n")
    return message


def _imap_subjects(region: Region, address: str) -> list[str]:
    """Read an inbox as a mail client does; the server's first read is a logged key release."""
    listen = region.section.imap
    assert listen is not None
    with imaplib.IMAP4(listen.host, listen.port, timeout=30) as client:
        client.login(address, DEMO_PASSWORD)
        client.select("INBOX", readonly=True)
        _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = [
            str(email.message_from_bytes(part[1], policy=email.policy.default)["Subject"])
            for part in data
            if isinstance(part, tuple)
        ]
        client.logout()
    return subjects


def _imap_referral(region: Region, address: str) -> str:
    """Log in at a region that is not the account's home: the answer is a referral."""
    listen = region.section.imap
    assert listen is not None
    with imaplib.IMAP4(listen.host, listen.port, timeout=30) as client:
        try:
            client.login(address, DEMO_PASSWORD)
        except imaplib.IMAP4.error as refused:
            reason = refused.args[0]
            return reason.decode() if isinstance(reason, bytes) else str(reason)
    raise RuntimeError(f"{region.id} served {address}, which is homed elsewhere")


def _replay_2013(cloud: Cloud) -> list[str]:
    """Each item with the rule of 2013 it was decided by and that rule's citations as of 2013;
    what came later (the Second Circuit in 2016, the CLOUD Act) is shown as later history."""
    lines = []
    for d in LawEngine.load().decide(load_request(DUBLIN_2013), cloud.facts()):
        lines.append(f"    {d.item.account} / {d.item.category}: {d.outcome.upper()}")
        for reason in d.reasons:
            if reason.role == "ground":
                cites = f" [{'; '.join(reason.citations)}]" if reason.citations else ""
                lines.append(f"      why: {reason.text}{cites}")
        lines.append(f"      lawful route: {d.route}")
        lines += [f"      later, not the law of {d.law_date}: {note}" for note in d.later_history]
    return lines


def _names_no_one(region: Region, address: str) -> None:
    """Show a public entry, then the account holder opening her own (access-history)."""
    console.rule("5. a public record that names no one")
    log = region.transparency_log
    entries = [json.loads(log.entry(i)) for i in range(log.size)]
    console.print(f"{region.id} log entry 0, as anyone reads it:", highlight=False)
    console.print(json.dumps(entries[0], sort_keys=True))
    format1 = sum(1 for e in entries if e.get("type") in ACCESS_TYPES and "v" not in e)
    if format1:
        console.print(
            f"{format1} entries predate format 2 and name accounts by an unsalted hash: they"
            " stay (a Merkle log cannot forget) and are not reissued; see docs/tlog.md"
        )
    where = {e["commitment"]: i for i, e in enumerate(entries) if "commitment" in e}
    where.update(
        {e["event"]["commitment"]: i for i, e in enumerate(entries) if e.get("type") == "reveal"}
    )
    console.print(
        f"{address} opens her own entries with her account's key (borderline access-history):"
    )
    for record in region.vault.access_records(address, datetime.now(UTC).date()):
        fields = record.fields
        console.print(
            f"    entry #{where.get(record.commitment, '?')}: {fields['justification']} by"
            f" {fields['principal']} at {fields['time']}; commitment opens: {record.opens()}"
        )


async def _operator_view(cloud: Cloud) -> None:
    """What `borderline serve` tells its operator on the API listener once mail flowed."""
    console.rule("6. what the operator sees")
    async with httpx.AsyncClient(base_url=f"http://{cloud.config.api.listen}") as client:
        ready = (await client.get("/readyz")).json()
        metrics = (await client.get("/metrics")).text
    for region_id, checks in ready["regions"].items():
        status = ", ".join(f"{k} {v}" for k, v in checks.items() if k != "ready")
        console.print(f"GET /readyz: {region_id} ready={checks['ready']} ({status})")
    console.print("GET /metrics (Prometheus), some of it:")
    for line in metrics.splitlines():
        if line.startswith(OPERATOR_METRICS):
            console.print(f"    {line}")


async def _run_demo(cloud: Cloud, once: bool, disclosures: Path) -> bool:
    # Imported here: the runtime brings every server (FastAPI, uvicorn, aiosmtpd), which the
    # commands that serve nothing should not pay for at start.
    from borderline.runtime import Runtime, listeners

    runtime = Runtime(cloud)
    await runtime.start()
    try:
        us, eu = cloud.region("us-east"), cloud.region("eu-dublin")
        markers = {
            "to-alice": f"MARKER-{secrets.token_hex(8)}",
            "to-bob": f"MARKER-{secrets.token_hex(8)}",
        }
        console.rule("1. mail across the boundary")
        # Anyone on the Internet -> the US region's MX, for alice who is homed in Dublin.
        await aiosmtplib.send(
            _message(
                "press@example.org", "alice@example.test", "Arrived in the US", markers["to-alice"]
            ),
            hostname=us.section.smtp.host,
            port=us.section.smtp.port,
            start_tls=False,
        )
        console.print("us-east accepted mail for alice@example.test (homed in eu-dublin): sealed")
        # Alice submits from Dublin (STARTTLS + AUTH PLAIN) to bob, homed in the US.
        submission = eu.section.submission
        assert submission is not None
        await aiosmtplib.send(
            _message(
                "alice@example.test", "bob@example.test", "Hello from Dublin", markers["to-bob"]
            ),
            hostname=submission.host,
            port=submission.port,
            start_tls=True,
            validate_certs=False,
            username="alice@example.test",
            password=DEMO_PASSWORD,
        )
        console.print(
            "eu-dublin accepted alice's submission for bob@example.test (homed in us-east)"
        )
        if not await runtime.relays_drained():
            raise RuntimeError("relays did not drain within 30 s")

        console.rule("2. where each message lives")
        table = data_table(
            "message (read over IMAP)",
            "accepted in",
            "home region",
            "stored in",
            "plaintext elsewhere",
        )
        ok = True
        for label, accepted, rcpt, home, other in (
            ("to-alice", us, "alice@example.test", eu, us),
            ("to-bob", eu, "bob@example.test", us, eu),
        ):
            marker = markers[label].encode()
            leaks = files_containing(other.root, marker)
            subjects = await asyncio.to_thread(_imap_subjects, home, rcpt)
            ok = ok and not leaks and len(subjects) == 1
            table.add_row(
                f"{rcpt}: {subjects[0] if subjects else '(missing)'}",
                accepted.id,
                home.id,
                f"{home.id} ({len(subjects)} in INBOX, encrypted)",
                "none" if not leaks else ", ".join(map(str, leaks)),
            )
        console.print(table)
        console.print(
            emphasis(
                "scanned every file of the non-home region for each message's marker: ",
                "zero hits" if ok else "LEAK",
            )
        )

        referral = await asyncio.to_thread(_imap_referral, us, "alice@example.test")
        console.print(f"alice logs in to us-east's IMAP server and is referred home: {referral}")

        console.rule("3. the law at the boundary: the Dublin warrant and the MLAT route")
        console.print("The 2013 Dublin warrant, decided under the law of 2013 (dry run):")
        for line in _replay_2013(cloud):
            console.print(line)
        for line in await asyncio.to_thread(demo_replay, cloud, disclosures):
            console.print(line)

        console.rule("4. every read is on the log")
        for region in (eu, us):
            log = region.transparency_log
            entries = [json.loads(log.entry(i)) for i in range(log.size)]
            reasons = Counter(e.get("justification", e["type"]) for e in entries)
            summary = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
            console.print(
                emphasis("", region.id, f" log: {log.size} entries ({summary});"),
                "checkpoint:",
            )
            console.print(log.checkpoint().decode())
        _names_no_one(eu, "alice@example.test")
        await _operator_view(cloud)
        if not once:
            console.rule("serving; Ctrl-C to stop")
            for region_id, name, address in listeners(cloud):
                console.print(f"{region_id:<12} {name:<11} {address}")
            await asyncio.Event().wait()
        return ok
    finally:
        await runtime.stop()


def demo(
    once: Annotated[bool, typer.Option("--once", help="Exit after the demo.")] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the demo cloud here (default: a temp dir).")
    ] = None,
    store: Annotated[
        list[str] | None,
        typer.Option(
            metavar="REGION=URL",
            help="Keep a region's mail in this PostgreSQL database (repeatable), e.g."
            " eu-dublin=postgresql://borderline@localhost/dublin.",
        ),
    ] = None,
) -> None:
    """Two regions: mail across them stays home, legal requests decided under the law,
    and every read on the log."""
    stores = dict(item.partition("=")[::2] for item in store or ())
    unknown = sorted(set(stores) - {region for _, region in ACCOUNTS})
    if unknown:
        raise fail(f"--store: the demo's regions are us-east and eu-dublin, not {unknown[0]!r}")
    root = data_dir or Path(tempfile.mkdtemp(prefix="borderline-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "borderline.toml"
    config_path.write_text(
        example_config(
            root / "data", base_port=free_base_port(), stores=stores, cleartext_login=True
        ),
        encoding="utf-8",
    )
    console.print(f"demo cloud in {root}")
    with user_errors():  # a --store database that is missing or unreachable
        cloud = Cloud(load_config(config_path))
    try:
        for address, region in ACCOUNTS:
            cloud.add_account(address, region, DEMO_PASSWORD)
            console.print(f"account {address} homed in {region}")
        ok = asyncio.run(_run_demo(cloud, once, root / "disclosures"))
    except KeyboardInterrupt:
        return
    finally:
        cloud.close()
    if not ok:
        raise fail("the residency check failed")
