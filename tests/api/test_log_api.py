"""The log API over a real socket: fetch checkpoint and tiles, verify offline; the witness."""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import socket
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from borderline.api import ApiServer, valid_tile_path
from borderline.cloud import Cloud
from borderline.config import Listen
from borderline.report import LogSnapshot, region_verifier_key
from borderline.tlog import (
    Checkpoint,
    VerificationError,
    VerifierKey,
    format_add_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_cosignature,
    verify_directory,
)
from borderline.tlog.tiles import covered_paths, tile_path
from borderline.tlog.witnesskey import create_witness_key
from borderline.vault import Justification
from tests.conftest import PASSWORD, RunningCloud
from tests.report.conftest import fails, ok

pytestmark = pytest.mark.one_engine("the transparency log API; it reads no mail")

WITNESS = "witness.example.test/us-east"


class Served:
    """An ApiServer on its own loop thread, so the test can use a blocking httpx client."""

    def __init__(self, cloud: Cloud) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ApiServer(cloud, Listen(host="127.0.0.1", port=0), checkpoint_interval=0.05)
        self.call(self.server.start())
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}", timeout=10)

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.client.close()
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def served(cloud: Cloud) -> Iterator[Served]:
    create_witness_key(cloud.region("us-east").witness_dir, WITNESS)
    served = Served(cloud)
    yield served
    served.close()


def grow(cloud: Cloud, filler: int) -> None:
    """Real key releases plus filler entries, so the log spans more than one full tile."""
    region = cloud.region("eu-dublin")
    region.vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "imap")
    region.transparency_log.append_batch([b"filler %d" % i for i in range(filler)])
    region.vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "imap")
    region.transparency_log.checkpoint()


def mirror(client: httpx.Client, prefix: str, into: pathlib.Path) -> None:
    """Fetch what a verifier needs (checkpoint, every tile and bundle it covers) to a dir."""
    note = client.get(f"{prefix}/checkpoint").content
    (into / "checkpoint").parent.mkdir(parents=True, exist_ok=True)
    (into / "checkpoint").write_bytes(note)
    for path in covered_paths(int(note.split(b"\n")[1])):
        got = client.get(f"{prefix}/{path}")
        assert got.status_code == 200, path
        assert got.headers["content-type"] == "application/octet-stream"
        assert "immutable" in got.headers["cache-control"]
        (into / path).parent.mkdir(parents=True, exist_ok=True)
        (into / path).write_bytes(got.content)


def test_fetched_tiles_verify_offline(served: Served, cloud: Cloud, tmp_path: pathlib.Path) -> None:
    grow(cloud, 300)
    info = served.client.get("/log/eu-dublin").json()
    assert info["origin"] == "example.test/eu-dublin" and info["witness_key"] is None
    published = region_verifier_key(
        info["origin"], cloud.directory.region_keys("eu-dublin").signing_key
    )
    assert info["verifier_key"] == str(published)

    got = served.client.get("/log/eu-dublin/checkpoint")
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.headers["cache-control"] == "no-cache"
    assert verify_checkpoint(got.content, published).size == 302

    mirror(served.client, "/log/eu-dublin", tmp_path / "copy")
    assert verify_directory(tmp_path / "copy", published).size == 302
    events = LogSnapshot.load(tmp_path / "copy", published).events()
    assert [e.index for e in events] == [0, 301]
    assert {e.justification for e in events} == {"CUSTOMER_INITIATED_ACCESS"}

    # A byte changed in transit is caught by the offline verification.
    bundle = tmp_path / "copy" / tile_path("entries", 0)
    bundle.write_bytes(bundle.read_bytes().replace(b"filler 7", b"filler 8", 1))
    with pytest.raises(VerificationError, match=r"does not match|root"):
        verify_directory(tmp_path / "copy", published)


def test_checkpoint_follows_the_log(served: Served, cloud: Cloud) -> None:
    """The server publishes new checkpoints by itself; nobody has to call checkpoint()."""
    vkey = served.client.get("/log/us-east").json()["verifier_key"]
    before = verify_checkpoint(served.client.get("/log/us-east/checkpoint").content, vkey).size
    cloud.region("us-east").vault.release(
        "bob@example.test", Justification.CUSTOMER_INITIATED_SUPPORT, "support:ticket-1"
    )
    for _ in range(200):
        note = served.client.get("/log/us-east/checkpoint").content
        if verify_checkpoint(note, vkey).size == before + 1:
            break
        threading.Event().wait(0.02)
    else:
        pytest.fail("the checkpoint never caught up with the log")


NOT_TILES = (
    "../vault/kek.bin",
    "..%2F..%2Fvault%2Fkek.bin",
    "0/000/../../../vault/kek.bin",
    "0/1",
    "64/000",
    "01/000",
    "0/000.p/256",
    "0/000.p/0",
    "entries/000.p/",
    "0/x1/000",
)


def test_rejects_paths_that_are_not_tiles(served: Served, cloud: Cloud) -> None:
    secret = (cloud.region("eu-dublin").vault.directory / "kek.bin").read_bytes()
    for path in NOT_TILES:
        got = served.client.get(f"/log/eu-dublin/tile/{path}")
        assert got.status_code in (400, 404), path
        assert secret not in got.content


def test_tile_path_grammar() -> None:
    assert valid_tile_path("0/000")
    assert valid_tile_path("63/x001/x234/067.p/255")
    assert valid_tile_path("entries/x001/000.p/1")
    for bad in ("64/000", "0/000.p/256", "-1/000", "0/000/", "/0/000", "0/../000", "0/0000"):
        assert not valid_tile_path(bad), bad


def test_index_and_head(served: Served) -> None:
    listed = served.client.get("/log").json()
    assert [r["region"] for r in listed] == ["us-east", "eu-dublin"]
    assert listed[0]["witness_key"].startswith(WITNESS + "+")
    head = served.client.head("/log/eu-dublin/checkpoint")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "text/plain; charset=utf-8"


def test_server_reveals_lapsed_seals(served: Served, cloud: Cloud) -> None:
    region = cloud.region("eu-dublin")
    sealed = region.vault.release(
        "alice@example.test",
        Justification.THIRD_PARTY_DATA_REQUEST,
        "legal",
        decision_id="req1-item1",
        request_id="req1",
        sealed_until=date.today(),
    )
    vkey = served.client.get("/log/eu-dublin").json()["verifier_key"]
    for _ in range(200):
        view = LogSnapshot.load(region.root / "log", vkey)
        if view.revealed():
            break
        threading.Event().wait(0.02)
    assert view.revealed()[sealed.log_index].request == "req1"


def test_unknown_region_and_missing_tile(served: Served) -> None:
    missing = served.client.get("/log/mars-1/checkpoint")
    assert missing.status_code == 404 and "mars-1" in missing.json()["detail"]
    assert served.client.get("/log/eu-dublin/tile/5/x999/000").status_code == 404


def test_a_tile_path_too_long_for_the_file_system_is_404(served: Served) -> None:
    """Issue 15 item 17: 2,000 `x000/` groups made the file system answer ENAMETOOLONG (500)."""
    for groups in (2000, 200, 8):
        got = served.client.get("/log/eu-dublin/tile/0/" + "x000/" * groups + "000")
        assert got.status_code == 404, (groups, got.text)
    assert (
        served.client.get("/log/eu-dublin/tile/entries/" + "x000/" * 2000 + "000.p/3").status_code
        == 404
    )


def test_keep_alive_connections_have_tcp_nodelay(served: Served) -> None:
    """Issue 9 item 5: without TCP_NODELAY every keep-alive response waited ~40 ms (Nagle and
    delayed ACK); bench/log_api.py measures it."""
    assert served.client.get("/log").status_code == 200
    sockets = served.server.connections
    assert sockets, "the client's keep-alive connection is open on the server"
    for sock in sockets:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def add(served: Served, region: str, body: bytes) -> httpx.Response:
    return served.client.post(f"/log/{region}/add-checkpoint", content=body)


def test_witness_cosigns_consistent_and_rejects_inconsistent(served: Served, cloud: Cloud) -> None:
    dublin = cloud.region("eu-dublin")
    log = dublin.transparency_log
    wkey = VerifierKey.parse(served.client.get("/log/us-east").json()["witness_key"])
    assert wkey.name == WITNESS

    grow(cloud, 10)
    first = log.checkpoint()
    got = add(served, "us-east", format_add_checkpoint(0, [], first))
    assert got.status_code == 200, got.text
    assert got.text.startswith(f"\u2014 {WITNESS} ")
    verify_cosignature(first + got.content, wkey)

    old_size = log.size
    grow(cloud, 40)
    second = log.checkpoint()
    body = format_add_checkpoint(old_size, log.consistency_proof(old_size), second)
    got = add(served, "us-east", body)
    assert got.status_code == 200, got.text
    verify_cosignature(second + got.content, wkey)

    # A checkpoint signed by the region's own key that does not extend the cosigned one.
    forged = Checkpoint(dublin.origin, log.size + 5, bytes(32))
    forged_note = sign_note(forged.text(), dublin.origin, dublin.vault.signing_key)
    got = add(
        served, "us-east", format_add_checkpoint(log.size, log.consistency_proof(1), forged_note)
    )
    assert got.status_code == 422, got.text
    same_size = sign_note(
        Checkpoint(dublin.origin, log.size, bytes(32)).text(),
        dublin.origin,
        dublin.vault.signing_key,
    )
    got = add(served, "us-east", format_add_checkpoint(log.size, [], same_size))
    assert got.status_code == 422, "C2SP tlog-witness: same size, another root"
    empty_forged = sign_note(
        Checkpoint(dublin.origin, 0, bytes(32)).text(), dublin.origin, dublin.vault.signing_key
    )
    got = add(served, "us-east", format_add_checkpoint(log.size, [], empty_forged))
    assert got.status_code == 400, "old size above the checkpoint's"
    got = add(served, "us-east", format_add_checkpoint(3, [], second))
    assert got.status_code == 409
    assert got.headers["content-type"] == "text/x.tlog.size"
    assert got.text == f"{log.size}\n"
    assert add(served, "us-east", b"not a request").status_code == 400

    # The forgeries were not recorded: the honest log still gets cosigned.
    grow(cloud, 1)
    third = log.checkpoint()
    body = format_add_checkpoint(old_size + 42, log.consistency_proof(old_size + 42), third)
    assert add(served, "us-east", body).status_code == 200

    # The monitoring endpoint serves that checkpoint with both signatures.
    digest = hashlib.sha256(dublin.origin.encode()).hexdigest()
    monitored = served.client.get(f"/log/us-east/{digest}/checkpoint")
    assert monitored.status_code == 200, monitored.text
    assert verify_checkpoint(monitored.content, log.verifier_key()).size == log.size
    verify_cosignature(monitored.content, wkey)
    unknown = hashlib.sha256(b"example.test/mars").hexdigest()
    assert served.client.get(f"/log/us-east/{unknown}/checkpoint").status_code == 404
    assert served.client.get("/log/us-east/not-a-hash/checkpoint").status_code == 404


def test_a_size_zero_checkpoint_with_a_root_is_refused(served: Served, cloud: Cloud) -> None:
    dublin = cloud.region("eu-dublin")
    forged = sign_note(
        Checkpoint(dublin.origin, 0, bytes(32)).text(), dublin.origin, dublin.vault.signing_key
    )
    assert add(served, "us-east", format_add_checkpoint(0, [], forged)).status_code == 422


def test_witness_without_a_key_is_404(served: Served, cloud: Cloud) -> None:
    note = cloud.region("eu-dublin").transparency_log.checkpoint()
    got = add(served, "eu-dublin", format_add_checkpoint(0, [], note))
    assert got.status_code == 404
    assert "no witness key" in got.json()["detail"]


def test_serve_runtime_publishes_the_log(running: RunningCloud) -> None:
    listen = running.cloud.config.api.listen
    note = httpx.get(f"http://{listen}/log/eu-dublin/checkpoint", timeout=10).content
    vkey = region_verifier_key(
        "example.test/eu-dublin", running.cloud.directory.region_keys("eu-dublin").signing_key
    )
    assert verify_checkpoint(note, vkey).origin == "example.test/eu-dublin"


def test_cli_reads_the_log_while_serve_holds_it(
    running: RunningCloud, config_path: pathlib.Path
) -> None:
    """The log is locked by the serving process; the CLI reads what the server publishes."""
    region = running.cloud.region("eu-dublin")
    key = region.vault.release(
        "alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "imap:test"
    )
    for _ in range(200):
        published = (region.root / "log/checkpoint").read_bytes()
        if (
            verify_checkpoint(published, region.transparency_log.verifier_key()).size
            > key.log_index
        ):
            break
        threading.Event().wait(0.05)
    history = json.loads(
        ok(
            "access-history",
            "alice@example.test",
            "--password",
            PASSWORD,
            "--json",
            "-c",
            str(config_path),
            cwd=config_path.parent,
        )
    )
    assert [e["index"] for e in history["events"]] == [key.log_index]

    made = ok(
        "log",
        "witness-key",
        "--region",
        "us-east",
        "--name",
        "w.example.test/1",
        "-c",
        str(config_path),
        cwd=config_path.parent,
    )
    assert VerifierKey.parse(made.strip().splitlines()[-1]).name == "w.example.test/1"
    again = fails(
        "log",
        "witness-key",
        "--region",
        "us-east",
        "--name",
        "w2",
        "-c",
        str(config_path),
        cwd=config_path.parent,
    )
    assert "never replaced" in again
