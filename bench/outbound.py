"""Mail to the Internet: msg/s from the first message submitted until the last one is in
the destination's Maildir. The destination is a real Postfix for `remote.test` (found
through a real DNS server, Knot, as its MX; STARTTLS offered), the same for both senders:

- Borderline: `borderline serve`, the messages submitted to eu-dublin's submission port
  (STARTTLS, AUTH PLAIN) by alice; each is DKIM-signed (RSA 2048), queued encrypted in
  the region's store, and delivered by the outbound worker (MX lookup, STARTTLS).
- the peer, in the same run: a second Postfix that relays the same messages (accepted over
  SMTP from loopback, its `mynetworks`) to the same destination (transport map, STARTTLS
  `may`). It does not sign them: Postfix has no DKIM signer of its own.

Both are given the messages over 8 connections. Rounds alternate between them; the
medians and ranges are printed.

    .venv/bin/python bench/outbound.py [--messages 1000] [--size 20] [--rounds 3]

Needs root and Debian's postfix and knot packages (as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' real peers

from tests.internet.dns_server import KnotServer, Record
from tests.internet.postfix import PostfixServer
from tests.internet.testca import TestCA

from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import example_config, load_config
from processes import stop, wait_for_port
from smtp_ingest import CONNECTIONS, make_message

SENDER = "alice@example.test"
RCPT = "bob@remote.test"
PASSWORD = "bench-password"


async def _connection(port: int, messages: list[bytes], login: bool) -> None:
    """One client connection; with `login`, STARTTLS and AUTH first (submission)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=login, tls_context=context, timeout=120
    )
    await client.connect()
    if login:
        await client.login(SENDER, PASSWORD)
    for data in messages:
        await client.sendmail(SENDER, [RCPT], data)
    await client.quit()


async def _send_all(port: int, messages: list[bytes], login: bool) -> None:
    shares = [messages[i::CONNECTIONS] for i in range(CONNECTIONS)]
    await asyncio.gather(*(_connection(port, share, login) for share in shares))


def _arrived(destination: PostfixServer) -> int:
    new = destination.maildir("remote.test") / "new"
    return sum(1 for _ in new.iterdir()) if new.is_dir() else 0


def _timed(destination: PostfixServer, port: int, messages: list[bytes], login: bool) -> float:
    """msg/s from the first message sent until the last one is in the destination."""
    target = _arrived(destination) + len(messages)
    start = time.perf_counter()
    asyncio.run(_send_all(port, messages, login))
    accepted = len(messages) / (time.perf_counter() - start)
    print(f"  accepted (every 250 received) {accepted:.0f} msg/s")
    deadline = time.monotonic() + 600
    while _arrived(destination) < target:
        if time.monotonic() > deadline:
            raise RuntimeError("the messages did not all arrive within 10 minutes")
        time.sleep(0.01)
    return len(messages) / (time.perf_counter() - start)


def start_borderline(
    workdir: Path, dns: KnotServer, destination: PostfixServer
) -> tuple[subprocess.Popen[bytes], int]:
    """`borderline serve` of the example cloud, its mail to the Internet going through the
    test DNS to the destination's port; returns the server and eu-dublin's submission port."""
    workdir.mkdir()
    config_path = workdir / "borderline.toml"
    text = example_config(workdir / "data", base_port=free_base_port())
    config_path.write_text(
        text
        + f'\n[dns]\nservers = ["127.0.0.1"]\nport = {dns.port}\n'
        + "\n[outbound]\n"
        + f"smtp_port = {destination.port}\nallow_private_addresses = true\n"
    )
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account(SENDER, "eu-dublin", PASSWORD)
    server = subprocess.Popen(
        [sys.executable, "-m", "borderline", "serve", "-c", str(config_path)],
        stdout=subprocess.DEVNULL,
    )
    submission = config.region("eu-dublin").submission
    assert submission is not None
    wait_for_port(submission.port)
    return server, submission.port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=20, help="message size in KB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    messages = [make_message(args.size * 1024, i, SENDER, RCPT) for i in range(args.messages)]
    print(f"# {args.messages} messages of {args.size} KB over {CONNECTIONS} connections")
    with tempfile.TemporaryDirectory(prefix="bench-outbound-") as tmp:
        root = Path(tmp)
        ca = TestCA(root / "ca")
        dns = KnotServer()
        destination = PostfixServer(certificate=ca.issue("mx.remote.test", stem="postfix"))
        relay = PostfixServer(domains=("relay.test",), hostname="mx.relay.test")
        dns.start(
            [Record("remote", "MX", "10 mx.remote.test."), Record("mx.remote", "A", "127.0.0.1")]
        )
        server: subprocess.Popen[bytes] | None = None
        try:
            destination.start()
            relay.start()
            relay.route("remote.test", "127.0.0.1", destination.port)
            server, submission = start_borderline(root / "borderline", dns, destination)
            warm = [make_message(args.size * 1024, -i, SENDER, RCPT) for i in range(1, 51)]
            _timed(destination, submission, warm, login=True)
            _timed(destination, relay.port, warm, login=False)
            rates: dict[str, list[float]] = {"borderline": [], "postfix": []}
            for round_number in range(1, args.rounds + 1):
                rates["borderline"].append(_timed(destination, submission, messages, login=True))
                rates["postfix"].append(_timed(destination, relay.port, messages, login=False))
                print(
                    f"round {round_number}: Borderline {rates['borderline'][-1]:.0f} msg/s,"
                    f" Postfix relay {rates['postfix'][-1]:.0f} msg/s"
                )
        finally:
            if server is not None:
                stop(server)
            relay.stop()
            destination.stop()
            dns.stop()
    for name, label in (("borderline", "Borderline outbound"), ("postfix", "Postfix relay")):
        got = rates[name]
        spread = f"{min(got):.0f}-{max(got):.0f}"
        print(f"{label:<22} median {statistics.median(got):>6.0f} msg/s ({spread})")
    ratios = [b / p for b, p in zip(rates["borderline"], rates["postfix"], strict=True)]
    print(
        f"ratio Borderline / Postfix: median {statistics.median(ratios):.2f}x"
        f" ({min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
