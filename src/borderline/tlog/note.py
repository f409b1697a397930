"""C2SP signed-note (Ed25519, type 0x01) and tlog-cosignature (Ed25519, type 0x04).

Hand-written: no maintained Python implementation of signed notes exists, and the format is a
few lines of text around an Ed25519 signature from `cryptography`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from borderline.tlog.errors import VerificationError

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
_SIG_PREFIX = "\u2014 "
_MAX_SIGNATURES = 100
_COSIG_HEADER = b"cosignature/v1\n"


def b64decode(text: str) -> bytes:
    """Strict standard base64: rejects junk and non-canonical padding bits."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"bad base64: {text[:40]!r}") from exc
    if base64.b64encode(raw).decode() != text:
        raise VerificationError(f"non-canonical base64: {text[:40]!r}")
    return raw


def parse_decimal(text: str, what: str) -> int:
    """ASCII decimal without leading zeroes, as every C2SP text format writes numbers."""
    if not text.isdecimal() or not text.isascii() or (text != "0" and text[0] == "0"):
        raise VerificationError(f"bad {what} {text[:24]!r}")
    return int(text)


def split_preamble(data: bytes, what: str) -> tuple[list[str], bytes]:
    """Split `<ASCII lines>\n\n<signed note>` (tlog-proof, add-checkpoint bodies)."""
    head, sep, note = data.partition(b"\n\n")
    if not sep:
        raise VerificationError(f"{what} has no checkpoint")
    try:
        return head.decode("ascii").split("\n"), note
    except UnicodeDecodeError as exc:
        raise VerificationError(f"{what} header is not ASCII") from exc


def check_key_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" or ord(c) < 0x20 for c in name):
        raise ValueError(f"key name {name!r} must be non-empty, without spaces or '+'")


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """signed-note key ID: SHA-256(name || 0x0A || type || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    name: str
    alg: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, self.public_key)

    def __str__(self) -> str:
        material = base64.b64encode(bytes([self.alg]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def for_key(cls, name: str, key: Ed25519PrivateKey, alg: int = ED25519) -> VerifierKey:
        check_key_name(name)
        return cls(name, alg, raw_public_key(key.public_key()))

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Parse `<name>+<hex key id>+<base64(type || key)>` and check the key ID matches."""
        parts = text.split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise VerificationError(f"malformed verifier key {text!r}")
        name, hex_id, material = parts
        try:
            check_key_name(name)
            claimed = bytes.fromhex(hex_id)
        except ValueError as exc:
            raise VerificationError(f"malformed verifier key {text!r}") from exc
        raw = b64decode(material)
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise VerificationError("verifier key is not an Ed25519 key of type 0x01 or 0x04")
        key = cls(name, raw[0], raw[1:])
        if key.key_id != claimed or hex_id != hex_id.lower():
            raise VerificationError("verifier key ID does not match its key")
        return key

    def _verify(self, signature: bytes, message: bytes) -> None:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError) as exc:
            raise VerificationError(f"bad signature by {self.name}") from exc


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    blob: bytes  # everything after the 4-byte key ID

    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.blob).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[Signature, ...]

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()


def parse_note(data: bytes) -> Note:
    """Split a signed note into text and signature lines (unverified)."""
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VerificationError("note is not UTF-8") from exc
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise VerificationError("note contains control characters")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise VerificationError("note has no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    lines = block[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise VerificationError("note has too many signatures")
    sigs = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise VerificationError(f"malformed signature line {line[:60]!r}")
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        raw = b64decode(b64)
        if not name or len(raw) < 5:
            raise VerificationError(f"malformed signature line {line[:60]!r}")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    return Note(text, tuple(sigs))


def sign_text(text: str, name: str, key: Ed25519PrivateKey) -> Signature:
    vkey = VerifierKey.for_key(name, key)
    return Signature(name, vkey.key_id, key.sign(text.encode()))


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> bytes:
    if not text.endswith("\n"):
        raise ValueError("note text must end in a newline")
    return Note(text, (sign_text(text, name, key),)).encode()


def _matching(note: Note, key: VerifierKey) -> list[Signature]:
    return [s for s in note.signatures if s.name == key.name and s.key_id == key.key_id]


def open_note(data: bytes, keys: Sequence[VerifierKey]) -> Note:
    """Verify a note against trusted Ed25519 keys: at least one must sign, none may fail."""
    note = parse_note(data)
    verified = 0
    for key in keys:
        if key.alg != ED25519:
            raise ValueError("open_note takes note keys (type 0x01)")
        for sig in _matching(note, key):
            key._verify(sig.blob, note.text.encode())
            verified += 1
    if verified == 0:
        raise VerificationError("note is not signed by any trusted key")
    return note


def cosignature_message(text: str, timestamp: int) -> bytes:
    return _COSIG_HEADER + b"time %d\n" % timestamp + text.encode()


def cosign(text: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> Signature:
    """tlog-cosignature/v1: Ed25519 over header, time line and the whole checkpoint text."""
    if not 0 <= timestamp < 1 << 63:
        raise ValueError("timestamp out of range")
    vkey = VerifierKey.for_key(name, key, COSIGNATURE_V1)
    sig = key.sign(cosignature_message(text, timestamp))
    return Signature(name, vkey.key_id, struct.pack(">Q", timestamp) + sig)


def verify_cosignature(data: bytes, key: VerifierKey) -> int:
    """Verify a cosigner's signature on a checkpoint note; returns its timestamp."""
    if key.alg != COSIGNATURE_V1:
        raise ValueError("verify_cosignature takes cosignature keys (type 0x04)")
    note = parse_note(data)
    sigs = _matching(note, key)
    if not sigs:
        raise VerificationError(f"no cosignature by {key.name}")
    stamps: list[int] = []
    for sig in sigs:
        if len(sig.blob) != 8 + 64:
            raise VerificationError("cosignature has the wrong length")
        timestamp = int.from_bytes(sig.blob[:8], "big")
        if timestamp >= 1 << 63:
            raise VerificationError("cosignature timestamp out of range")
        key._verify(sig.blob[8:], cosignature_message(note.text, timestamp))
        stamps.append(timestamp)
    return max(stamps)
