"""Dovecot's imaptest against a fresh Borderline and, in the same run, a throwaway Dovecot.

Scripted mode runs imaptest's compliance tests one by one (`run-scripted.sh` in the
imaptest folder) and prints each server's pass/fail/skip line; stress mode runs random
concurrent clients that check each other's view of one mailbox and prints the errors
("Error:" lines: protocol or state inconsistencies) and the operations done.

    .venv/bin/python bench/imaptest.py scripted [TEST ...]
    .venv/bin/python bench/imaptest.py stress [--clients 10] [--secs 120] [--checkpoint 30]

imaptest lives in IMAPTEST_DIR (default /work/shared/tools/imaptest, see its README).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dovecot_imap
from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import example_config, load_config
from processes import stop, wait_for_port

IMAPTEST_DIR = Path(os.environ.get("IMAPTEST_DIR", "/work/shared/tools/imaptest"))
ROOT = Path(__file__).resolve().parent.parent
USER = "tester@example.test"
PASSWORD = "tester-password"


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    user: str
    password: str


@contextmanager
def borderline(root: Path, region: str = "eu-dublin") -> Iterator[Server]:
    """`borderline serve` for one region with one empty account."""
    root.mkdir(parents=True)
    config_path = root / "borderline.toml"
    port = free_base_port()
    text = example_config(root / "data", base_port=port, cleartext_login=True)
    config_path.write_text(text)
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account(USER, region, PASSWORD)
    listen = config.region(region).imap
    assert listen is not None
    server = subprocess.Popen(
        [sys.executable, "-m", "borderline", "serve", "-c", str(config_path), "-r", region],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "serve.log", "wb"),  # noqa: SIM115 - the process owns it
        cwd=ROOT,
    )
    try:
        wait_for_port(listen.port)
        yield Server("Borderline", listen.port, USER, PASSWORD)
    finally:
        stop(server)


@contextmanager
def dovecot(root: Path, hashed: bool = False) -> Iterator[Server]:
    server, port = dovecot_imap.start(root, {}, hashed)
    try:
        yield Server("Dovecot", port, "tester", dovecot_imap.PASSWORD)
    finally:
        stop(server)


def imaptest_binary() -> Path:
    built = subprocess.run(
        [str(IMAPTEST_DIR / "build.sh")], check=True, capture_output=True, text=True
    )
    return Path(built.stdout.strip().splitlines()[-1])


def scripted(server: Server, out: Path, tests: list[str]) -> str:
    """Every scripted test's verdict; the last line is the summary."""
    result = subprocess.run(
        [
            str(IMAPTEST_DIR / "run-scripted.sh"),
            "127.0.0.1",
            str(server.port),
            server.user,
            server.password,
            str(out),
            *tests,
        ],
        capture_output=True,
        text=True,
    )
    return result.stdout


def stress(server: Server, clients: int, secs: int, checkpoint: int | None) -> dict[str, object]:
    """One stress run: its error lines and the total of operations imaptest counted."""
    binary = imaptest_binary()
    args = [
        str(binary),
        "host=127.0.0.1",
        f"port={server.port}",
        f"user={server.user}",
        f"pass={server.password}",
        f"mbox={binary.parent / 'tests' / 'default.mbox'}",
        f"clients={clients}",
        f"secs={secs}",
        "no_pipelining",
    ]
    if checkpoint is not None:
        args.append(f"checkpoint={checkpoint}")
    env = dict(os.environ, LD_LIBRARY_PATH="/usr/lib/dovecot")
    run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=binary.parent)
    output = run.stdout + run.stderr
    errors = [line for line in output.splitlines() if "Error:" in line]
    stalls = sum(int(n) for n in re.findall(r"\((\d+) stalled >3s\)", output))
    return {"errors": errors, "stalls": stalls, "totals": _totals(output), "output": output}


def _totals(output: str) -> dict[str, int]:
    """The operation counts of imaptest's `Totals:` block: a line of command names, lines
    of percentages, then the counts."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Totals:")]
    if not starts:
        return {}
    names = lines[starts[-1] + 1].split()
    for line in lines[starts[-1] + 2 :]:
        values = line.split()
        if len(values) == len(names) and all(re.fullmatch(r"\d+", v) for v in values):
            return dict(zip(names, map(int, values), strict=True))
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("scripted", "stress"))
    parser.add_argument("tests", nargs="*", help="scripted tests to run (default: all)")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--secs", type=int, default=120)
    parser.add_argument("--checkpoint", type=int, default=None)
    parser.add_argument("--only", choices=("Borderline", "Dovecot"), default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (outputs)")
    parser.add_argument(
        "--hashed-peer",
        action="store_true",
        help="Dovecot checks an Argon2id hash, as Borderline does (default: a plain password)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="imaptest-"))
    root.chmod(0o755)
    peers = [
        ("Borderline", borderline),
        ("Dovecot", functools.partial(dovecot, hashed=args.hashed_peer)),
    ]
    try:
        for name, start in peers:
            if args.only not in (None, name):
                continue
            if name == "Dovecot" and not dovecot_imap.available():
                print(f"peer: {dovecot_imap.DOVECOT} not found (apt-get install dovecot-imapd)")
                continue
            with start(root / name.lower()) as server:
                if args.mode == "scripted":
                    report = scripted(server, root / f"{name.lower()}-out", args.tests)
                    print(f"== {name}\n{report}", flush=True)
                else:
                    result = stress(server, args.clients, args.secs, args.checkpoint)
                    errors = result["errors"]
                    assert isinstance(errors, list)
                    totals = result["totals"]
                    assert isinstance(totals, dict)
                    print(
                        f"== {name}: {len(errors)} errors, {result['stalls']} client-seconds"
                        f" stalled over 3 s; {sum(totals.values())} operations {totals}"
                    )
                    for line in errors[:40]:
                        print("   ", line)
                    (root / f"{name.lower()}-stress.out").write_text(str(result["output"]))
    finally:
        if args.keep:
            print(f"outputs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
