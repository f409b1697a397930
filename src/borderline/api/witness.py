"""The witness a region's operator may run: its key file and the logs it will cosign.

The key lives in `<data_dir>/<region>/witness/witness.key` as a signed-note private key
line (`PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`, the format of Go's
`golang.org/x/mod/sumdb/note`), so keys made with Go tools work unchanged. No key file, no
witness: the endpoint then answers 404 saying so. The witness cosigns the logs of every
region in the directory, so each custodian can vouch that the others show one history.
"""

from __future__ import annotations

import base64
import binascii
import os
import pathlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.cloud import Cloud
from borderline.directory import DirectoryError
from borderline.report.logview import region_verifier_key
from borderline.tlog import VerifierKey, Witness
from borderline.tlog.note import ED25519, check_key_name, key_id, raw_public_key

KEY_FILE = "witness.key"
STATE_FILE = "state.json"
_PREFIX = "PRIVATE+KEY+"


class WitnessKeyError(ValueError):
    """The witness key file is malformed; the message names the file."""


def witness_dir(cloud: Cloud, region_id: str) -> pathlib.Path:
    return cloud.config.cloud.data_dir / region_id / "witness"


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


def create_witness_key(directory: pathlib.Path, name: str) -> pathlib.Path:
    """Write a new witness key, readable by its owner only; never replaces an existing one."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / KEY_FILE
    line = format_signer_key(name, Ed25519PrivateKey.generate()) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load_witness(cloud: Cloud, region_id: str) -> Witness | None:
    """The region's configured witness over every published region log, or None."""
    directory = witness_dir(cloud, region_id)
    path = directory / KEY_FILE
    if not path.exists():
        return None
    try:
        name, key = parse_signer_key(path.read_text(encoding="ascii"))
    except (WitnessKeyError, UnicodeDecodeError) as exc:
        raise WitnessKeyError(f"{path}: {exc}") from exc
    logs: dict[str, str | VerifierKey] = {}
    domain = cloud.config.primary_domain
    for rid in cloud.config.region_ids:
        origin = f"{domain}/{rid}"
        try:
            logs[origin] = region_verifier_key(origin, cloud.directory.region_keys(rid).signing_key)
        except DirectoryError:
            continue
    return Witness(name, key, logs, directory / STATE_FILE)
