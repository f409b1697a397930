"""The stored log: appends, tiles on disk, checkpoints, receipts, tampering and recovery."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borderline.tlog import (
    CorruptLogError,
    LogLockedError,
    TlogError,
    TransparencyLog,
    VerificationError,
    VerifierKey,
    leaf_hash,
    parse_receipt,
    verify_checkpoint,
    verify_consistency,
    verify_directory,
    verify_inclusion,
    verify_receipt,
)
from borderline.tlog.tiles import decode_entries, encode_index, tile_path

ORIGIN = "mail.example.test/eu-west-1"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def entries(n: int, start: int = 0) -> list[bytes]:
    return [b"access event %d" % i for i in range(start, start + n)]


def open_log(path: pathlib.Path) -> TransparencyLog:
    return TransparencyLog(path, ORIGIN, KEY)


def test_tile_paths_follow_c2sp() -> None:
    assert encode_index(0) == "000"
    assert encode_index(1234067) == "x001/x234/067"
    assert tile_path(0, 1234) == "tile/0/x001/234"
    assert tile_path(1, 3, 17) == "tile/1/003.p/17"
    assert tile_path("entries", 1000) == "tile/entries/x001/000"


def test_append_entry_and_size(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        assert log.size == 0
        assert log.append(b"first") == 0
        assert log.append_batch([b"a", b"", b"c"]) == [1, 2, 3]
        assert log.append_batch([]) == []
        assert [log.entry(i) for i in range(4)] == [b"first", b"a", b"", b"c"]
        with pytest.raises(IndexError):
            log.entry(4)
        with pytest.raises(ValueError):
            log.append(bytes(70_000))
        assert log.size == 4


def test_tiles_on_disk_are_c2sp_tiles(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(70_000))
        note = log.checkpoint()
        vkey = log.verifier_key()
    cp = verify_checkpoint(note, vkey)
    assert (tmp_path / "checkpoint").read_bytes() == note
    tile = tmp_path / "tile"
    # The spec's own example: 273 full level-0 tiles and a partial of 112, one full level-1
    # tile and a partial of 17, and a level-2 partial of width 1.
    assert len((tile / "0/272").read_bytes()) == 8192
    assert len((tile / "0/273.p/112").read_bytes()) == 112 * 32
    assert len((tile / "1/000").read_bytes()) == 8192
    assert len((tile / "1/001.p/17").read_bytes()) == 17 * 32
    assert len((tile / "2/000.p/1").read_bytes()) == 32
    assert decode_entries((tile / "entries/273.p/112").read_bytes()) == entries(112, 273 * 256)
    bundle = (tile / "entries/000").read_bytes()
    assert bundle[:2] == len(b"access event 0").to_bytes(2, "big")
    level0 = (tile / "0/000").read_bytes()
    assert level0[32:64] == leaf_hash(b"access event 1")
    assert verify_directory(tmp_path, vkey) == cp
    assert cp.size == 70_000 and cp.origin == ORIGIN


def test_checkpoint_is_stable_until_the_tree_grows(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        empty = log.checkpoint()
        assert verify_checkpoint(empty, log.verifier_key()).size == 0
        log.append(b"x")
        first = log.checkpoint()
        assert log.checkpoint() == first
        log.append(b"y")
        second = log.checkpoint()
        a, b = (verify_checkpoint(n, log.verifier_key()) for n in (first, second))
        verify_consistency(a.size, b.size, a.root, b.root, log.consistency_proof(a.size))
        verify_directory(tmp_path, log.verifier_key(), old_checkpoint=first)


def test_receipts_verify_offline(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(1000))
        receipt = log.receipt(321)
        vkey = log.verifier_key()
        with pytest.raises(IndexError):
            log.receipt(1000)
    assert receipt.startswith(b"c2sp.org/tlog-proof@v1\nindex 321\n")
    verified = verify_receipt(receipt, vkey, b"access event 321")
    assert verified.index == 321 and verified.checkpoint.size == 1000
    with pytest.raises(VerificationError):
        verify_receipt(receipt, vkey, b"access event 322")
    with pytest.raises(VerificationError):
        verify_receipt(receipt.replace(b"index 321", b"index 322"), vkey, b"access event 321")
    other = TransparencyLog(tmp_path / "other", ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError):
        verify_receipt(receipt, other.verifier_key(), b"access event 321")
    other.close()
    parsed = parse_receipt(receipt)
    cp = verify_checkpoint(parsed.note, vkey)
    verify_inclusion(leaf_hash(b"access event 321"), 321, cp.size, parsed.proof, cp.root)


def test_inclusion_proofs_at_older_sizes(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(600))
        for size in (1, 255, 256, 257, 513, 600):
            root = log.root(size)
            for index in {0, size // 2, size - 1}:
                proof = log.inclusion_proof(index, size)
                verify_inclusion(leaf_hash(log.entry(index)), index, size, proof, root)


def _covered_files(path: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in (path / "tile").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def signed_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, str]:
    path = tmp_path_factory.mktemp("signed")
    with open_log(path) as log:
        log.append_batch(entries(66_000))
        log.append_batch(entries(50, 66_000))
        log.checkpoint()
        vkey = log.verifier_key()
    verify_directory(path, vkey)
    return path, vkey


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_flipped_byte_in_a_tile_or_bundle_is_detected(
    signed_dir: tuple[pathlib.Path, str], data: st.DataObject
) -> None:
    path, vkey = signed_dir
    files = _covered_files(path)
    victim = data.draw(st.sampled_from(files))
    content = victim.read_bytes()
    pos = data.draw(st.integers(0, len(content) - 1))
    bit = data.draw(st.integers(0, 7))
    victim.write_bytes(content[:pos] + bytes([content[pos] ^ (1 << bit)]) + content[pos + 1 :])
    try:
        with pytest.raises(VerificationError):
            verify_directory(path, vkey)
    finally:
        victim.write_bytes(content)


def test_tampered_directory_is_detected(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(1000))
        log.checkpoint()
        vkey = log.verifier_key()
    bundle = tmp_path / "tile/entries/001"
    original = bundle.read_bytes()
    bundle.write_bytes(original.replace(b"access event 300", b"access event 999"))
    with pytest.raises(VerificationError, match="tile/0/001"):
        verify_directory(tmp_path, vkey)
    bundle.write_bytes(original)
    (tmp_path / "tile/0/000").unlink()
    with pytest.raises(VerificationError, match="missing tile/0/000"):
        verify_directory(tmp_path, vkey)
    (tmp_path / "tile/0/000").write_bytes(bytes(8192))
    with pytest.raises(VerificationError):
        verify_directory(tmp_path, vkey)
    cp = tmp_path / "checkpoint"
    cp.write_bytes(cp.read_bytes().replace(b"\n1000\n", b"\n999\n"))
    with pytest.raises(VerificationError):
        verify_directory(tmp_path, vkey)


def test_a_forked_directory_fails_consistency_with_a_saved_checkpoint(
    tmp_path: pathlib.Path,
) -> None:
    with open_log(tmp_path / "a") as log:
        log.append_batch(entries(10))
        saved = log.checkpoint()
    with open_log(tmp_path / "b") as fork:
        fork.append_batch([b"rewritten", *entries(20, 1)])
        fork.checkpoint()
        vkey = fork.verifier_key()
    verify_directory(tmp_path / "b", vkey)
    with pytest.raises(VerificationError):
        verify_directory(tmp_path / "b", vkey, old_checkpoint=saved)


def grown_past_checkpoint(path: pathlib.Path, signed: int, unsigned: int) -> bytes:
    """A log checkpointed at `signed` entries, then `unsigned` more; returns that checkpoint."""
    with open_log(path) as log:
        log.append_batch(entries(signed))
        note = log.checkpoint()
        log.append_batch(entries(unsigned, signed))
    return note


def test_reopen_keeps_everything(tmp_path: pathlib.Path) -> None:
    note = grown_past_checkpoint(tmp_path, 700, 100)
    with open_log(tmp_path) as log:
        assert log.root(700) == verify_checkpoint(note, log.verifier_key()).root
        assert log.size == 800
        assert log.entry(750) == b"access event 750"
        assert log.checkpoint() != note
        verify_directory(tmp_path, log.verifier_key(), old_checkpoint=note)


def test_truncated_batch_is_dropped_on_reopen(tmp_path: pathlib.Path) -> None:
    note = grown_past_checkpoint(tmp_path, 300, 50)
    vkey = str(VerifierKey.for_key(ORIGIN, KEY))
    journal = tmp_path / "journal"
    full = journal.read_bytes()
    for cut in (1, 40, 500):
        journal.write_bytes(full[:-cut])
        with open_log(tmp_path) as log:
            assert log.size == 300
            assert journal.stat().st_size < len(full)
            assert log.checkpoint() == note
            log.append_batch([b"after crash"])
            new = log.checkpoint()
        verify_directory(tmp_path, vkey, old_checkpoint=note)
        assert verify_checkpoint(new, vkey).size == 301
        journal.write_bytes(full)
        for name in ("checkpoint", "checkpoint.signed"):
            (tmp_path / name).write_bytes(note)


def test_garbage_after_the_last_batch_is_cut(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(10))
    with (tmp_path / "journal").open("ab") as f:
        f.write(b"\x00" * 100)
    with open_log(tmp_path) as log:
        assert log.size == 10
        log.append(b"next")
    with open_log(tmp_path) as log:
        assert log.size == 11
        assert log.entry(10) == b"next"


def test_a_journal_that_lost_checkpointed_entries_is_refused(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(5))
        log.append_batch(entries(5, 5))
        log.checkpoint()
    journal = tmp_path / "journal"
    journal.write_bytes(journal.read_bytes()[:-10])
    with pytest.raises(CorruptLogError, match="checkpoint covers 10"):
        open_log(tmp_path)


def test_a_rewritten_journal_is_refused(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(5))
        log.checkpoint()
    with open_log(tmp_path / "fork") as fork:
        fork.append_batch([b"forged", *entries(4, 1)])
    (tmp_path / "journal").write_bytes((tmp_path / "fork/journal").read_bytes())
    with pytest.raises(CorruptLogError, match="root"):
        open_log(tmp_path)


def test_a_checkpoint_signed_by_another_key_is_refused(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        log.checkpoint()
    with pytest.raises(CorruptLogError):
        TransparencyLog(tmp_path, ORIGIN, Ed25519PrivateKey.generate())


def test_one_process_at_a_time(tmp_path: pathlib.Path) -> None:
    log = open_log(tmp_path)
    with pytest.raises(LogLockedError):
        open_log(tmp_path)
    log.close()
    with pytest.raises(TlogError):
        log.append(b"closed")
    open_log(tmp_path).close()


def test_concurrent_appends_from_threads(tmp_path: pathlib.Path) -> None:
    with open_log(tmp_path) as log:
        got: list[list[int]] = []

        def worker(t: int) -> None:
            mine = [log.append(b"t%d-%d" % (t, i)) for i in range(50)]
            got.append(mine)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        indices = sorted(i for g in got for i in g)
        assert indices == list(range(200))
        for g in got:
            t = log.entry(g[0]).split(b"-")[0]
            assert [log.entry(i) for i in g] == [b"%s-%d" % (t, i) for i in range(50)]
        log.checkpoint()
        verify_directory(tmp_path, log.verifier_key())


CHILD = """
import pathlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from borderline.tlog import TransparencyLog
log = TransparencyLog(pathlib.Path(sys.argv[1]), sys.argv[2],
                      Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sys.argv[3])))
n = 0
while True:
    last = log.append_batch([b"crash %d" % i for i in range(n, n + 97)])[-1]
    n += 97
    if n % 970 == 0:
        log.checkpoint()
    print(last, flush=True)
"""


def test_kill_during_appends_recovers_to_a_consistent_log(tmp_path: pathlib.Path) -> None:
    raw = KEY.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), ORIGIN, raw.hex()],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        acked = -1
        deadline = time.monotonic() + 30
        while acked < 5000 and time.monotonic() < deadline:
            acked = int(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
        child.wait()
    saved = (tmp_path / "checkpoint").read_bytes()
    with open_log(tmp_path) as log:
        assert log.size > acked
        assert log.entry(acked) == b"crash %d" % acked
        log.checkpoint()
        verify_directory(tmp_path, log.verifier_key(), old_checkpoint=saved)


def test_a_failed_fsync_stops_the_log_until_reopened(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path)
    log.append(b"kept")

    def broken_disk(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr("borderline.tlog.log.os.fdatasync", broken_disk)
        with pytest.raises(TlogError, match="journal write failed"):
            log.append(b"maybe lost")
    # After a failed fsync the page cache cannot be trusted: refuse until reopened.
    with pytest.raises(TlogError, match="reopened"):
        log.append(b"refused")
    with pytest.raises(TlogError):
        log.checkpoint()
    log.close()
    with open_log(tmp_path) as again:
        assert again.entry(0) == b"kept"
        again.append(b"after")
        again.checkpoint()
        verify_directory(tmp_path, again.verifier_key())


def test_receipts_reuse_the_latest_checkpoint_that_covers_the_entry(
    tmp_path: pathlib.Path,
) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(10))
        note = log.checkpoint()
        log.append_batch(entries(5, 10))
        assert parse_receipt(log.receipt(9)).note == note
        later = parse_receipt(log.receipt(12)).note
        assert verify_checkpoint(later, log.verifier_key()).size == 15
        verify_receipt(log.receipt(3), log.verifier_key(), b"access event 3")


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.booleans()), min_size=1, max_size=6))
def test_any_sequence_of_batches_checkpoints_and_reopens_verifies(
    steps: list[tuple[int, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, total, notes = pathlib.Path(tmp), 0, []
        for count, reopen in steps:
            with open_log(path) as log:
                log.append_batch(entries(count, total))
                total += count
                notes.append(log.checkpoint())
                if not reopen:
                    continue
            with open_log(path) as log:
                assert log.size == total
        vkey = str(VerifierKey.for_key(ORIGIN, KEY))
        for note in notes:
            assert verify_directory(path, vkey, old_checkpoint=note).size == total
        with open_log(path) as log:
            assert [log.entry(i) for i in range(total)] == entries(total)


def test_reopen_puts_back_tiles_removed_from_under_the_checkpoint(
    tmp_path: pathlib.Path,
) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(600))
        log.checkpoint()
        vkey = log.verifier_key()
    for rel in ("tile/0/001", "tile/entries/000", "tile/0/002.p/88", "tile/1/000.p/2"):
        (tmp_path / rel).unlink()
    with pytest.raises(VerificationError, match="missing"):
        verify_directory(tmp_path, vkey)
    open_log(tmp_path).close()
    assert verify_directory(tmp_path, vkey).size == 600


def test_damage_inside_the_journal_is_not_mistaken_for_a_torn_tail(
    tmp_path: pathlib.Path,
) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(3))
        log.append_batch(entries(3, 3))
    journal = tmp_path / "journal"
    data = bytearray(journal.read_bytes())
    data[30] ^= 1
    journal.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="offset 0 is damaged"):
        open_log(tmp_path)


def journal_records(path: pathlib.Path) -> list[int]:
    """Offsets of the journal's records (20-byte header: magic, first, count, length)."""
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 20 + int.from_bytes(data[pos + 16 : pos + 20], "big") + 32
    return offsets


@pytest.mark.parametrize("field", ["magic", "length"])
def test_a_flipped_bit_inside_the_signed_journal_refuses_and_cuts_nothing(
    tmp_path: pathlib.Path, field: str
) -> None:
    """Issue 9, case 2: a bit flip in a middle record made recovery truncate signed entries."""
    with open_log(tmp_path) as log:
        for start in range(0, 600, 10):
            log.append_batch(entries(10, start))
        log.checkpoint()
        log.append_batch(entries(5, 600))  # an unsigned tail after the checkpoint
    journal = tmp_path / "journal"
    victim = journal_records(journal)[30]  # entries 300..309, well inside the signed part
    data = bytearray(journal.read_bytes())
    data[victim + (0 if field == "magic" else 17)] ^= 0x10
    journal.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError) as refused:
        open_log(tmp_path)
    assert f"offset {victim}" in str(refused.value)
    assert "last good size is 300" in str(refused.value)
    assert "covers 600" in str(refused.value)
    assert journal.read_bytes() == bytes(data), "recovery must not cut a signed record"


def test_damage_in_the_unsigned_tail_followed_by_an_intact_record_refuses(
    tmp_path: pathlib.Path,
) -> None:
    with open_log(tmp_path) as log:
        log.append_batch(entries(3))
        log.checkpoint()
        log.append_batch(entries(3, 3))
        log.append_batch(entries(3, 6))
    journal = tmp_path / "journal"
    victim = journal_records(journal)[1]
    data = bytearray(journal.read_bytes())
    data[victim] ^= 1
    journal.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match=f"offset {victim} is damaged .*intact record"):
        open_log(tmp_path)
    assert journal.read_bytes() == bytes(data)


def test_a_rolled_back_log_refuses_to_open_against_the_copy_kept_elsewhere(
    tmp_path: pathlib.Path,
) -> None:
    """Issue 9, case 3: checkpoint deleted and the journal cut at a record boundary."""
    copy = tmp_path / "elsewhere" / "log-checkpoint"

    def reopen() -> TransparencyLog:
        return TransparencyLog(tmp_path / "log", ORIGIN, KEY, copy=copy)

    with reopen() as log:
        for start in range(0, 675, 25):
            log.append_batch(entries(25, start))
        published = log.checkpoint()
    assert copy.read_bytes() == published
    journal = tmp_path / "log" / "journal"
    cut = journal_records(journal)[23]  # a record boundary: 575 entries survive
    journal.write_bytes(journal.read_bytes()[:cut])
    for name in ("checkpoint", "checkpoint.signed"):
        (tmp_path / "log" / name).unlink()
    with pytest.raises(CorruptLogError, match=r"size 675 .* holds only 575 entries"):
        reopen()
    assert journal.stat().st_size == cut
    # Without the copy the log would reopen at 575; a witness still holding 675 refuses it.
    copy.unlink()
    with reopen() as log:
        assert log.size == 575
        with pytest.raises(CorruptLogError, match="holds only 575"):
            log.check_witnessed(published, "witness w1")


def test_checkpoints_are_published_once_the_quorum_cosigned(tmp_path: pathlib.Path) -> None:
    from borderline.tlog import Witness, format_add_checkpoint

    witnesses = [
        Witness(f"w{i}.example", Ed25519PrivateKey.generate(), {ORIGIN: vkey_text()})
        for i in range(2)
    ]
    keys = [w.verifier_key() for w in witnesses]
    with TransparencyLog(tmp_path, ORIGIN, KEY, witnesses=keys, quorum=2) as log:
        log.append_batch(entries(4))
        signed = log.checkpoint()
        assert log.published() == b"" and not (tmp_path / "checkpoint").exists()
        assert (tmp_path / "checkpoint.signed").read_bytes() == signed
        body = format_add_checkpoint(0, [], signed)
        log.add_cosignature(witnesses[0].add_checkpoint(body), keys[0])
        assert log.published() == b""
        log.add_cosignature(witnesses[1].add_checkpoint(body), keys[1])
        published = log.published()
        assert log.cosigners(published) == ("w0.example", "w1.example")
        assert (tmp_path / "checkpoint").read_bytes() == published
        # A later checkpoint stays unpublished until cosigned; receipts use the published one.
        log.append(b"later")
        log.checkpoint()
        assert log.published() == published
        assert parse_receipt(log.receipt(2)).note == published
        verify_receipt(log.receipt(2), vkey_text(), b"access event 2", keys, quorum=2)


def vkey_text() -> str:
    return str(VerifierKey.for_key(ORIGIN, KEY))
