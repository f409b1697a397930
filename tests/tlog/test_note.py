"""Signed notes, verifier keys, checkpoints and cosignatures."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.tlog import (
    Checkpoint,
    VerificationError,
    VerifierKey,
    open_note,
    parse_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_cosignature,
)
from borderline.tlog.note import COSIGNATURE_V1, cosign, parse_note

# golang.org/x/mod/sumdb/note's documented example: key, text and the exact signed note.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2p"
    "ZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()


def go_key() -> Ed25519PrivateKey:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_signing_reproduces_the_go_note_byte_for_byte() -> None:
    assert str(VerifierKey.for_key("PeterNeumann", go_key())) == GO_VKEY
    assert sign_note(GO_TEXT, "PeterNeumann", go_key()) == GO_NOTE


def test_go_note_opens_and_tampering_is_rejected() -> None:
    key = VerifierKey.parse(GO_VKEY)
    assert open_note(GO_NOTE, [key]).text == GO_TEXT
    with pytest.raises(VerificationError):
        open_note(GO_NOTE.replace(b"cryptography", b"cryptographY"), [key])
    sig = GO_NOTE.rsplit(b" ", 1)[1]
    forged = GO_NOTE.replace(sig, base64.b64encode(bytes(68)) + b"\n")
    with pytest.raises(VerificationError):
        open_note(forged, [key])


def test_unknown_keys_are_ignored_and_no_known_signature_is_rejected() -> None:
    other = VerifierKey.for_key("PeterNeumann", Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError, match="not signed by any trusted key"):
        open_note(GO_NOTE, [other])
    extra = GO_NOTE + sign_note(GO_TEXT, "someone.else", Ed25519PrivateKey.generate()).split(
        b"\n\n"
    )[1].replace(b"\n\n", b"\n")
    assert len(parse_note(extra).signatures) == 2
    assert open_note(extra, [VerifierKey.parse(GO_VKEY)]).text == GO_TEXT


@pytest.mark.parametrize(
    "vkey",
    [
        GO_VKEY.replace("c74f20a3", "c74f20a4"),
        GO_VKEY.replace("PeterNeumann", "PeterNeuman"),
        GO_VKEY[:-1],
        "PeterNeumann+c74f20a3",
        GO_VKEY.replace("+ARpc", "+AhRpc"),
    ],
)
def test_mangled_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(VerificationError):
        VerifierKey.parse(vkey)


@pytest.mark.parametrize(
    "note",
    [
        b"no signature block\n",
        GO_TEXT.encode() + b"\n- PeterNeumann abc=\n",
        GO_TEXT.encode() + b"\n\xe2\x80\x94 PeterNeumann !!!\n",
        b"bad \x01 control\n\n" + GO_NOTE.split(b"\n\n")[1],
        b"\xff\xfe\n\n" + GO_NOTE.split(b"\n\n")[1],
    ],
)
def test_malformed_notes_are_refused(note: bytes) -> None:
    with pytest.raises(VerificationError):
        open_note(note, [VerifierKey.parse(GO_VKEY)])


def test_checkpoint_round_trip_and_origin_binding() -> None:
    key = Ed25519PrivateKey.generate()
    cp = Checkpoint("mail.example/eu-west", 42, bytes(range(32)))
    assert cp.text() == "mail.example/eu-west\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    note = sign_note(cp.text(), cp.origin, key)
    vkey = str(VerifierKey.for_key(cp.origin, key))
    assert verify_checkpoint(note, vkey) == cp
    impostor = sign_note(Checkpoint("mail.example/us-east", 42, bytes(32)).text(), cp.origin, key)
    with pytest.raises(VerificationError, match="origin"):
        verify_checkpoint(impostor, vkey)
    with pytest.raises(VerificationError):
        verify_checkpoint(note, str(VerifierKey.for_key(cp.origin, Ed25519PrivateKey.generate())))


@pytest.mark.parametrize(
    "text",
    [
        "origin\n042\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",
        "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "origin\n1\n",
        "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n",
        f"origin\n{1 << 64}\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(VerificationError):
        parse_checkpoint(text)


def test_checkpoint_extension_lines_are_kept() -> None:
    text = "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nextra line\n"
    assert parse_checkpoint(text).extensions == ("extra line",)
    assert parse_checkpoint(text).text() == text


def test_cosignature_round_trip_and_rejection() -> None:
    log_key, witness_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    text = Checkpoint("mail.example/eu-west", 7, bytes(32)).text()
    note = sign_note(text, "mail.example/eu-west", log_key)
    cosigned = note + cosign(text, "witness.example/w1", witness_key, 1_700_000_000).line().encode()
    wkey = VerifierKey.for_key("witness.example/w1", witness_key, COSIGNATURE_V1)
    assert str(wkey).startswith("witness.example/w1+")
    assert VerifierKey.parse(str(wkey)) == wkey
    assert verify_cosignature(cosigned, wkey) == 1_700_000_000
    with pytest.raises(VerificationError):
        verify_cosignature(cosigned.replace(b"\n7\n", b"\n8\n"), wkey)
    with pytest.raises(VerificationError, match="no cosignature"):
        verify_cosignature(note, wkey)
    # The log's own key still opens the note: cosignatures are ignored as unknown keys.
    assert open_note(cosigned, [VerifierKey.for_key("mail.example/eu-west", log_key)]).text == text
