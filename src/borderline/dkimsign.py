"""DKIM signing of outgoing mail (RFC 6376, Ed25519 per RFC 8463) with dkimpy, and the DNS
TXT record that publishes the public key.

Each region signs with its own keys, in generations under the selector `g<n>.<region>` (the
records live below `<region>._domainkey.<domain>`; the vault keeps the keys and says which
is in use), so one region's key never signs another's mail and keys rotate per region.
Keys come in and go out as PKCS#8 PEM (what the vault will store);
dkimpy's own formats (a base64 seed for Ed25519, PKCS#1 for RSA) stay inside this module."""

from __future__ import annotations

import base64
import functools
import re
from typing import Any, Literal

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

Algorithm = Literal["ed25519", "rsa"]

# Headers signed, From twice (oversigned) so no second From can be added unnoticed.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"from",
)
# RFC 6376 3.1: a selector is one or more DNS labels ("g2.eu-dublin").
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class DkimKeyError(ValueError):
    """The key or the selector cannot be used to sign."""


def generate_key(algorithm: Algorithm = "ed25519", rsa_bits: int = 2048) -> bytes:
    """A new private key as PKCS#8 PEM."""
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_algorithm(private_key: bytes) -> Algorithm:
    return "ed25519" if isinstance(_load(private_key), ed25519.Ed25519PrivateKey) else "rsa"


def public_record(private_key: bytes) -> str:
    """The TXT record text to publish at `<selector>._domainkey.<domain>`."""
    key = _load(private_key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def sign(
    message: bytes,
    *,
    domain: str,
    selector: str,
    private_key: bytes,
) -> bytes:
    """The message with a DKIM-Signature field prepended (relaxed/relaxed, so the usual
    rewrapping by MTAs on the way keeps it valid)."""
    if not _SELECTOR.fullmatch(selector):
        raise DkimKeyError(f"selector {selector!r} is not a DNS name")
    library_key, algorithm = _library_key(private_key)
    signer = dkim.DKIM(message, signature_algorithm=algorithm, linesep=b"\r\n")
    present = {name.lower() for name, _ in signer.headers}
    if b"from" not in present:
        raise DkimKeyError("a message without a From field cannot be signed (RFC 6376 5.4)")
    headers = [name for name in SIGNED_HEADERS if name in present or name == b"from"]
    try:
        signature = signer.sign(
            selector.encode(),
            domain.encode("idna"),
            library_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=headers,
        )
    except dkim.DKIMException as error:
        raise DkimKeyError(str(error)) from error
    return bytes(signature) + message


@functools.lru_cache(maxsize=32)
def _library_key(private_key: bytes) -> tuple[bytes, bytes]:
    """The key as dkimpy takes it, and its signature algorithm."""
    key = _load(private_key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed), b"ed25519-sha256"
    if key.key_size < 1024:
        raise DkimKeyError("RSA keys under 1024 bits are not accepted (RFC 8301)")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem, b"rsa-sha256"


def _rsa_sign(digest: Any, private_key: dict[str, int]) -> bytes:
    """RSASSA-PKCS1-v1_5 (RFC 8017) for dkimpy, computed by OpenSSL: dkimpy's own is modular
    arithmetic in Python, about 11 ms of CPU per 2048-bit signature, holding the GIL, where
    OpenSSL takes about 1 ms. The signature is the same (PKCS#1 v1.5 is deterministic;
    tests/internet/test_dkimsign.py compares the two)."""
    key = _rsa_key(
        private_key["modulus"],
        private_key["publicExponent"],
        private_key["privateExponent"],
        private_key["prime1"],
        private_key["prime2"],
        private_key["exponent1"],
        private_key["exponent2"],
        private_key["coefficient"],
    )
    algorithm = hashes.SHA256() if digest.name == "sha256" else hashes.SHA1()
    return key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(algorithm))


@functools.lru_cache(maxsize=32)
def _rsa_key(
    n: int, e: int, d: int, p: int, q: int, dmp1: int, dmq1: int, iqmp: int
) -> rsa.RSAPrivateKey:
    return rsa.RSAPrivateNumbers(
        p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n)
    ).private_key()


# dkimpy looks its signing primitive up in its own namespace at each signature.
dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign


@functools.lru_cache(maxsize=32)
def _load(private_key: bytes) -> ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey:
    """Cached: checking an RSA key as it is loaded takes about 70 ms, and a region signs
    every message with the same key."""
    try:
        key = serialization.load_pem_private_key(private_key, password=None)
    except (ValueError, TypeError) as error:
        raise DkimKeyError(f"not a PEM private key: {error}") from error
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise DkimKeyError(f"{type(key).__name__} keys cannot sign DKIM (Ed25519 or RSA)")
    return key
