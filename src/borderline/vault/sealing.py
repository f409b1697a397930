"""HPKE (RFC 9180) sealing to a region's public key, via cryptography's hpke module.

cryptography seals and opens one contiguous buffer into a new one, so a big message is in
memory twice. The in-place variants compute the same HPKE (mode base, DHKEM(X25519,
HKDF-SHA256), HKDF-SHA256, AES-256-GCM; the key schedule of RFC 9180 5.1) and run its one
AEAD operation over the buffer itself: the same bytes on the wire, either way opens what
the other sealed (tests/vault/test_vault.py).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
SEAL_INFO_PREFIX = b"borderline-seal-v1 region="
# RFC 9180 7.1: the suite's identifiers, and the sizes of its encapsulated key and tag.
KEM_SUITE = b"KEM\x00\x20"
HPKE_SUITE = b"HPKE\x00\x20\x00\x01\x00\x02"
ENC_SIZE = 32
TAG_SIZE = 16


class SealedMessageError(Exception):
    """A sealed payload that does not open under this region's key."""


def seal(region_public_key: bytes, region_id: str, plaintext: bytes) -> bytes:
    """Seal to the home region; the info binds the ciphertext to that region's id."""
    public_key = X25519PublicKey.from_public_bytes(region_public_key)
    return SUITE.encrypt(plaintext, public_key, info=SEAL_INFO_PREFIX + region_id.encode())


def open_sealed(private_key: X25519PrivateKey, region_id: str, sealed: bytes) -> bytes:
    try:
        return SUITE.decrypt(sealed, private_key, info=SEAL_INFO_PREFIX + region_id.encode())
    except (InvalidTag, ValueError) as exc:
        raise SealedMessageError(f"sealed payload does not open in region {region_id}") from exc


def seal_in_place(region_public_key: bytes, region_id: str, plaintext: bytearray) -> bytearray:
    """`seal` written over `plaintext`, which then holds the sealed payload (the key share
    before the ciphertext, the tag after it) and no longer the plaintext."""
    ephemeral = X25519PrivateKey.generate()
    enc = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(region_public_key))
    key, nonce = _key_schedule(shared, enc, region_public_key, region_id)
    plaintext[0:0] = enc
    encrypt_over(AESGCM(key), nonce, b"", plaintext, ENC_SIZE)
    return plaintext


def encrypt_over(aead: AESGCM, nonce: bytes, aad: bytes, buffer: bytearray, start: int) -> None:
    """Encrypt buffer[start:] where it lies and append its tag (OpenSSL allows the output
    to be the input), so a message is in memory once, not beside its ciphertext."""
    buffer += bytes(TAG_SIZE)
    with memoryview(buffer) as view:
        body = view[start:]
        aead.encrypt_into(nonce, body[:-TAG_SIZE], aad, body)
        body.release()


def open_in_place(private_key: X25519PrivateKey, region_id: str, sealed: bytearray) -> None:
    """`open_sealed` over `sealed` itself, which then holds the plaintext."""
    failed = SealedMessageError(f"sealed payload does not open in region {region_id}")
    if len(sealed) < ENC_SIZE + TAG_SIZE:
        raise failed
    enc = bytes(sealed[:ENC_SIZE])
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(enc))
    except ValueError as exc:  # a low-order point: no shared secret (RFC 9180 7.1.4)
        raise failed from exc
    public = private_key.public_key().public_bytes_raw()
    key, nonce = _key_schedule(shared, enc, public, region_id)
    with memoryview(sealed) as view:
        body = view[ENC_SIZE:]
        try:
            AESGCM(key).decrypt_into(nonce, body, b"", body[:-TAG_SIZE])
        except InvalidTag as exc:
            raise failed from exc
        finally:
            body.release()
    del sealed[-TAG_SIZE:]
    del sealed[:ENC_SIZE]  # from the front: the buffer's start moves, nothing is copied


def _key_schedule(
    shared_dh: bytes, enc: bytes, recipient: bytes, region_id: str
) -> tuple[bytes, bytes]:
    """The AEAD key and nonce of RFC 9180's Encap/Decap and KeySchedule, mode base; the
    nonce is the base nonce, for the one message a context seals."""
    eae_prk = _labeled_extract(KEM_SUITE, b"", b"eae_prk", shared_dh)
    shared = _labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", enc + recipient, 32)
    info = SEAL_INFO_PREFIX + region_id.encode()
    context = (
        b"\x00"
        + _labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
        + _labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    )
    secret = _labeled_extract(HPKE_SUITE, shared, b"secret", b"")
    return (
        _labeled_expand(HPKE_SUITE, secret, b"key", context, 32),
        _labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12),
    )


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869: an empty salt is HashLen zeros, as HMAC pads it)."""
    extract = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    extract.update(b"HPKE-v1" + suite + label + ikm)
    return extract.finalize()


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)
