"""Witnesses: each new checkpoint pushed to real `borderline witness serve` processes on
loopback, published once the quorum cosigned it, and a rollback refused at start because a
witness remembers the larger checkpoint."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from borderline.api import ApiServer
from borderline.cloud import Cloud
from borderline.config import Listen, load_config
from borderline.report import LogSnapshot, region_verifier_key
from borderline.tlog import CorruptLogError, VerifierKey, verify_cosignature, verify_receipt
from borderline.tlog.witnesskey import create_witness_key
from borderline.vault import Justification
from tests.api.test_log_api import Served
from tests.conftest import PASSWORD, write_config
from tests.net import free_port

ALICE = "alice@example.test"
WITNESS_SERVE = [sys.executable, "-m", "borderline", "witness", "serve"]


class WitnessProcess:
    """`borderline witness serve` in its own process, its key and state in its own dir."""

    def __init__(self, root: Path, name: str, log_key: str) -> None:
        self.dir = root / name
        self.key = create_witness_key(self.dir, f"{name}.example.test")
        self.port = free_port()
        self.log_key = log_key
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def at(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.at}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*WITNESS_SERVE, "--dir", str(self.dir), "--log", self.log_key, "--listen", self.at],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, "the witness exited"
                time.sleep(0.1)
        raise AssertionError("the witness did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        threading.Event().wait(0.05)


@pytest.fixture
def witnessed(tmp_path: Path) -> Iterator[tuple[Path, str, list[WitnessProcess]]]:
    """A config whose eu-dublin region needs both of two witnesses (quorum 2)."""
    path = write_config(tmp_path)
    with Cloud(load_config(path)) as setup:
        setup.add_account(ALICE, "eu-dublin", PASSWORD)
        region = setup.region("eu-dublin")
        log_key = str(region_verifier_key(region.origin, region.vault.signing_public_key))
    witnesses = [WitnessProcess(tmp_path, f"w{i}", log_key) for i in (1, 2)]
    listed = "".join(
        f'\n[[regions.witnesses]]\nurl = "{w.url}"\nkey = "{w.key}"\n' for w in witnesses
    )
    text = path.read_text()
    path.write_text(text.replace("\n[api]\n", f"witness_quorum = 2\n{listed}\n[api]\n"))
    try:
        yield path, log_key, witnesses
    finally:
        for witness in witnesses:
            witness.stop()


def test_published_once_the_quorum_cosigned_and_refused_after_a_rollback(
    witnessed: tuple[Path, str, list[WitnessProcess]],
) -> None:
    path, log_key, (w1, w2) = witnessed
    w1.start()
    cloud = Cloud(load_config(path))
    served = Served(cloud)
    try:
        log = cloud.region("eu-dublin").transparency_log
        cloud.region("eu-dublin").vault.release(ALICE, Justification.CUSTOMER_INITIATED_ACCESS, "t")
        until(lambda: log.cosigners(log.checkpoint()) == ("w1.example.test",), "w1 cosigned")
        got = served.client.get("/log/eu-dublin/checkpoint")
        assert got.status_code == 404, "one cosignature of the two required: not published"

        w2.start()
        until(
            lambda: served.client.get("/log/eu-dublin/checkpoint").status_code == 200,
            "the quorum is reached",
        )
        note = served.client.get("/log/eu-dublin/checkpoint").content
        keys = [VerifierKey.parse(w.key) for w in (w1, w2)]
        for key in keys:
            verify_cosignature(note, key)
        view = LogSnapshot.load(log.directory, log_key)
        receipt = view.receipt(0)
        assert verify_receipt(receipt, log_key, view.entries[0], keys, quorum=2).cosigners == (
            "w1.example.test",
            "w2.example.test",
        )

        # The standalone witness keeps its state across a restart and serves it to monitors.
        w1.stop()
        w1.start()
        digest = hashlib.sha256(b"example.test/eu-dublin").hexdigest()
        monitored = httpx.get(f"{w1.url}/{digest}/checkpoint", timeout=10)
        assert monitored.status_code == 200 and monitored.content.split(b"\n")[1] == b"1"
        cloud.region("eu-dublin").vault.release(ALICE, Justification.CUSTOMER_INITIATED_ACCESS, "t")
        until(
            lambda: served.client.get("/log/eu-dublin/checkpoint").content.split(b"\n")[1] == b"2",
            "the second checkpoint is published",
        )
    finally:
        served.close()
        cloud.close()

    # Roll the log back: the copies of the checkpoint deleted, the journal cut at a record
    # boundary. The witnesses remember size 2: the server refuses to start.
    root = load_config(path).cloud.data_dir / "eu-dublin"
    for name in ("log/checkpoint", "log/checkpoint.signed", "signed-checkpoint"):
        (root / name).unlink()
    journal = root / "log/journal"
    data = journal.read_bytes()
    first = 20 + int.from_bytes(data[16:20], "big") + 32
    journal.write_bytes(data[:first])
    with Cloud(load_config(path)) as cloud:
        server = ApiServer(cloud, Listen(host="127.0.0.1", port=0))
        with pytest.raises(CorruptLogError, match=r"witness w\d\.example\.test holds .* size 2"):
            asyncio.run(server.start())
