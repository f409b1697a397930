"""A witness's key and state on disk: `<dir>/witness.key` and `<dir>/state.json`.

The key is a signed-note private key line (`PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ||
seed)>`, the format of Go's `golang.org/x/mod/sumdb/note`), so keys made with Go tools work
unchanged. The same files serve a region's own witness and a standalone `borderline witness
serve`.
"""

from __future__ import annotations

import base64
import binascii
import os
import pathlib
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.tlog.note import (
    COSIGNATURE_V1,
    ED25519,
    VerifierKey,
    check_key_name,
    key_id,
    raw_public_key,
)
from borderline.tlog.witness import Witness

KEY_FILE = "witness.key"
STATE_FILE = "state.json"
_PREFIX = "PRIVATE+KEY+"


class WitnessKeyError(ValueError):
    """The witness key file is malformed; the message names the file."""


def format_signer_key(name: str, key: Ed25519PrivateKey) -> str:
    check_key_name(name)
    seed = key.private_bytes_raw()
    kid = key_id(name, ED25519, raw_public_key(key.public_key())).hex()
    return f"{_PREFIX}{name}+{kid}+{base64.b64encode(bytes([ED25519]) + seed).decode()}"


def parse_signer_key(text: str) -> tuple[str, Ed25519PrivateKey]:
    """Parse a signer key line and check that its key ID matches the key."""
    parts = text.strip().removeprefix(_PREFIX).split("+", 2)
    if not text.strip().startswith(_PREFIX) or len(parts) != 3:
        raise WitnessKeyError("not a PRIVATE+KEY+<name>+<id>+<key> signer key")
    name, kid, material = parts
    try:
        check_key_name(name)
        raw = base64.b64decode(material, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise WitnessKeyError(f"malformed signer key: {exc}") from exc
    if len(raw) != 33 or raw[0] != ED25519:
        raise WitnessKeyError("signer key is not an Ed25519 (type 0x01) key")
    key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    if key_id(name, ED25519, raw_public_key(key.public_key())).hex() != kid:
        raise WitnessKeyError("signer key ID does not match its key")
    return name, key


def create_witness_key(directory: pathlib.Path, name: str) -> str:
    """Write a new witness key, readable by its owner only (never replacing one: the
    FileExistsError says so); returns the cosignature verifier key to give to logs."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    line = format_signer_key(name, key) + "\n"
    fd = os.open(directory / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return str(VerifierKey.for_key(name, key, COSIGNATURE_V1))


def open_witness(directory: pathlib.Path, logs: Mapping[str, str | VerifierKey]) -> Witness | None:
    """The witness whose key is in `directory`, cosigning `logs` (origin -> log key), with
    its state kept beside the key; None when no key was ever created there."""
    path = directory / KEY_FILE
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise WitnessKeyError(f"{path}: not a signer key") from exc
    try:
        name, key = parse_signer_key(text)
    except WitnessKeyError as exc:
        raise WitnessKeyError(f"{path}: {exc}") from exc
    return Witness(name, key, logs, directory / STATE_FILE)
