"""HPKE (RFC 9180) sealing to a region's public key, via cryptography's hpke module."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
SEAL_INFO_PREFIX = b"borderline-seal-v1 region="


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
