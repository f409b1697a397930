"""The witness cosigns only checkpoints consistent with what it cosigned before."""

from __future__ import annotations

import pathlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.tlog import (
    EMPTY_ROOT,
    Checkpoint,
    TransparencyLog,
    VerificationError,
    VerifierKey,
    Witness,
    WitnessError,
    format_add_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_cosignature,
    verify_receipt,
)
from borderline.tlog.note import parse_note

ORIGIN = "mail.example.test/eu-west-1"
LOG_KEY = Ed25519PrivateKey.generate()
WITNESS_KEY = Ed25519PrivateKey.generate()


def make_witness(state: pathlib.Path | None = None) -> Witness:
    vkey = str(VerifierKey.for_key(ORIGIN, LOG_KEY))
    return Witness("witness.example/w1", WITNESS_KEY, {ORIGIN: vkey}, state, clock=lambda: 1e9)


def grow(log: TransparencyLog, n: int) -> bytes:
    log.append_batch([b"event %d" % (log.size + i) for i in range(n)])
    return log.checkpoint()


def test_cosigns_a_growing_log_and_the_cosignature_verifies(tmp_path: pathlib.Path) -> None:
    witness = make_witness()
    wkey = VerifierKey.parse(witness.verifier_key())
    with TransparencyLog(tmp_path, ORIGIN, LOG_KEY) as log:
        note = grow(log, 10)
        cosig = witness.add_checkpoint(format_add_checkpoint(0, [], note))
        assert cosig.startswith("\u2014 witness.example/w1 ".encode())
        assert verify_cosignature(note + cosig, wkey) == 1_000_000_000
        new = grow(log, 300)
        body = format_add_checkpoint(10, log.consistency_proof(10), new)
        cosigned = new + witness.add_checkpoint(body)
        assert verify_cosignature(cosigned, wkey) == 1_000_000_000
        latest = witness.latest(ORIGIN)
        assert latest is not None and latest.size == 310
        # Re-submitting the same checkpoint is fine; a receipt can carry the cosignature.
        witness.add_checkpoint(format_add_checkpoint(310, [], new))
        receipt = log.receipt(5).replace(new, cosigned)
        got = verify_receipt(receipt, log.verifier_key(), b"event 5", [wkey], quorum=1)
        assert got.cosigners == ("witness.example/w1",)
        with pytest.raises(VerificationError, match="1 required"):
            verify_receipt(log.receipt(5), log.verifier_key(), b"event 5", [wkey], quorum=1)


def test_rejects_an_inconsistent_checkpoint(tmp_path: pathlib.Path) -> None:
    witness = make_witness()
    with TransparencyLog(tmp_path / "honest", ORIGIN, LOG_KEY) as log:
        seen = grow(log, 20)
        witness.add_checkpoint(format_add_checkpoint(0, [], seen))
    # Same key and origin, history rewritten: the split view a witness exists to stop.
    with TransparencyLog(tmp_path / "fork", ORIGIN, LOG_KEY) as fork:
        fork.append_batch([b"rewritten"])
        forked = grow(fork, 40)
        body = format_add_checkpoint(20, fork.consistency_proof(20), forked)
        with pytest.raises(WitnessError) as err:
            witness.add_checkpoint(body)
        assert err.value.status == 422
    with TransparencyLog(tmp_path / "fork2", ORIGIN, LOG_KEY) as other:
        other.append(b"other history")
        same_size = grow(other, 19)
    with pytest.raises(WitnessError) as err:
        witness.add_checkpoint(format_add_checkpoint(20, [], same_size))
    assert err.value.status == 422, "tlog-witness: same size, another root is 422"
    latest = witness.latest(ORIGIN)
    assert latest is not None and latest.size == 20


def test_a_size_zero_checkpoint_must_have_the_empty_root() -> None:
    witness = make_witness()
    forged = sign_note(Checkpoint(ORIGIN, 0, bytes(32)).text(), ORIGIN, LOG_KEY)
    with pytest.raises(WitnessError) as err:
        witness.add_checkpoint(format_add_checkpoint(0, [], forged))
    assert err.value.status == 422
    assert witness.latest(ORIGIN) is None
    empty = sign_note(Checkpoint(ORIGIN, 0, EMPTY_ROOT).text(), ORIGIN, LOG_KEY)
    witness.add_checkpoint(format_add_checkpoint(0, [], empty))


def test_the_monitoring_note_carries_both_signatures(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "state.json"
    witness = make_witness(state)
    assert witness.latest_note(ORIGIN) is None
    with TransparencyLog(tmp_path / "log", ORIGIN, LOG_KEY) as log:
        note = grow(log, 3)
        extra = sign_note(parse_note(note).text, "someone.else", Ed25519PrivateKey.generate())
        submitted = note + extra.split(b"\n\n", 1)[1]
        witness.add_checkpoint(format_add_checkpoint(0, [], submitted))
        kept = witness.latest_note(ORIGIN)
        assert kept is not None
        names = [s.name for s in parse_note(kept).signatures]
        assert names == [ORIGIN, "witness.example/w1"], "unknown signers are dropped"
        verify_checkpoint(kept, log.verifier_key())
        verify_cosignature(kept, VerifierKey.parse(witness.verifier_key()))
    assert make_witness(state).latest_note(ORIGIN) == kept


def test_status_codes_of_the_spec(tmp_path: pathlib.Path) -> None:
    witness = make_witness()
    with TransparencyLog(tmp_path, ORIGIN, LOG_KEY) as log:
        first = grow(log, 5)
        witness.add_checkpoint(format_add_checkpoint(0, [], first))
        second = grow(log, 5)
        proof = log.consistency_proof(5)
    cases = {
        409: format_add_checkpoint(3, proof, second),
        400: format_add_checkpoint(11, proof, second),
        422: format_add_checkpoint(5, proof[:-1], second),
    }
    for status, body in cases.items():
        with pytest.raises(WitnessError) as err:
            witness.add_checkpoint(body)
        assert err.value.status == status
    with pytest.raises(WitnessError) as err:
        witness.add_checkpoint(format_add_checkpoint(3, proof, second))
    assert err.value.latest_size == 5
    stranger = TransparencyLog(tmp_path / "s", "other.example/x", LOG_KEY)
    with pytest.raises(WitnessError) as err:
        witness.add_checkpoint(format_add_checkpoint(0, [], grow(stranger, 1)))
    assert err.value.status == 404
    stranger.close()
    impostor = TransparencyLog(tmp_path / "i", ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(WitnessError) as err:
        witness.add_checkpoint(format_add_checkpoint(5, proof, grow(impostor, 10)))
    assert err.value.status == 403
    impostor.close()
    for body in [b"old 5\n", b"old 05\n\n" + second, b"new 5\n\n" + second]:
        with pytest.raises(WitnessError) as err:
            witness.add_checkpoint(body)
        assert err.value.status == 400


def test_state_survives_a_restart(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "witness.json"
    with TransparencyLog(tmp_path / "log", ORIGIN, LOG_KEY) as log:
        make_witness(state).add_checkpoint(format_add_checkpoint(0, [], grow(log, 7)))
        restarted = make_witness(state)
        latest = restarted.latest(ORIGIN)
        assert latest is not None and latest.size == 7
        with pytest.raises(WitnessError) as err:
            restarted.add_checkpoint(format_add_checkpoint(0, [], grow(log, 1)))
        assert err.value.status == 409


def test_log_collects_cosignatures_into_its_receipts(tmp_path: pathlib.Path) -> None:
    witness = make_witness()
    wkey = witness.verifier_key()
    with TransparencyLog(tmp_path, ORIGIN, LOG_KEY) as log:
        log.append_batch([b"a", b"b"])
        lines = witness.add_checkpoint(log.witness_request(0))
        log.add_cosignature(lines, wkey)
        receipt = log.receipt(1)
        got = verify_receipt(receipt, log.verifier_key(), b"b", [wkey], quorum=1)
        assert got.cosigners == ("witness.example/w1",)
        log.append(b"c")
        lines = witness.add_checkpoint(log.witness_request(2))
        stranger = make_witness_named("witness.example/w2")
        with pytest.raises(VerificationError, match="only cosignatures"):
            log.add_cosignature(lines, stranger.verifier_key())
        log.add_cosignature(lines, wkey)
        vkey = log.verifier_key()
    # The cosigned checkpoint survives a reopen (cosignatures are ignored as unknown keys).
    with TransparencyLog(tmp_path, ORIGIN, LOG_KEY) as log:
        verify_receipt(log.receipt(2), vkey, b"c", [wkey], quorum=1)


def make_witness_named(name: str) -> Witness:
    vkey = str(VerifierKey.for_key(ORIGIN, LOG_KEY))
    return Witness(name, Ed25519PrivateKey.generate(), {ORIGIN: vkey})
