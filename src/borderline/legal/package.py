"""Disclosure packages: files plus a manifest of SHA-256 hashes signed with Ed25519.

An authority (or a court, later) must be able to check that what it holds is exactly what the
custodian produced: every file is hashed in manifest.json, and manifest.json is signed with the
key of the custodian that holds the data's region (detached: manifest.sig, key: manifest.pub).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from borderline.staff import REVIEWER_ROLES, verify_signature

FORMAT = "borderline-disclosure-v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "manifest.pub"
SIGNED_FILES = (MANIFEST, SIGNATURE, PUBLIC_KEY)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class PackageWriter:
    """Builds a package in a staging folder and moves it into place only once it is signed,
    so a failed export never leaves a package that looks complete. The package holds
    plaintext mail: its folders are 0700 and its files 0600 from the moment they exist, so
    a staging folder left by a killed export is readable by its owner only (and the next
    export to the same place removes it)."""

    def __init__(self, final: Path) -> None:
        if final.exists():
            raise FileExistsError(f"{final} exists: choose another --out or remove it")
        self.final = final
        self.staging = final.with_name(f".{final.name}.partial")
        if self.staging.exists():
            shutil.rmtree(self.staging)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(mode=0o700)

    def path(self, relative: str) -> Path:
        """A package file, created empty and private (with its folders) for the caller to
        fill."""
        target = self.staging / relative
        for folder in reversed(target.relative_to(self.staging).parents[:-1]):
            (self.staging / folder).mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        return target

    def write(self, relative: str, data: bytes) -> None:
        self.path(relative).write_bytes(data)

    def write_json(self, relative: str, data: Any) -> None:
        self.write(relative, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")

    def seal(self, header: dict[str, Any], signer: Ed25519PrivateKey) -> Path:
        """Hash every file, write and sign the manifest, then publish the folder."""
        files = sorted(
            p for p in self.staging.rglob("*") if p.is_file() and p.name not in SIGNED_FILES
        )
        public = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        manifest = {
            **header,
            "format": FORMAT,
            "public_key": public,
            "files": [
                {
                    "path": p.relative_to(self.staging).as_posix(),
                    "sha256": sha256_file(p),
                    "size": p.stat().st_size,
                }
                for p in files
            ],
        }
        body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
        self.write(MANIFEST, body)
        self.write(SIGNATURE, signer.sign(body).hex().encode() + b"\n")
        self.write(PUBLIC_KEY, public.encode() + b"\n")
        for p in self.staging.rglob("*"):
            if p.is_file():
                with p.open("rb") as f:
                    os.fsync(f.fileno())
        os.replace(self.staging, self.final)
        return self.final

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


@dataclass
class Verification:
    """The result of checking a package; `problems` is empty when it is intact."""

    folder: Path
    public_key: str | None = None
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_package(
    folder: Path,
    trusted_keys: list[bytes] | None = None,
    trusted_as: str = "a trusted key",
    staff_keys: Callable[[int], list[bytes]] | None = None,
) -> Verification:
    """Recompute every hash and check the signature (and, if given, that the signer's key is
    one of `trusted_keys`, e.g. the region's key published in the directory, described by
    `trusted_as`), and the staff approvals in the manifest: two different people, a legal
    and a security reviewer, each signature good and covering every disclosed item (and, with
    `staff_keys`, made with a key the roster knows for that person)."""
    result = Verification(folder)
    try:
        body = (folder / MANIFEST).read_bytes()
        signature = bytes.fromhex((folder / SIGNATURE).read_text().strip())
        public_hex = (folder / PUBLIC_KEY).read_text().strip()
        public = bytes.fromhex(public_hex)
    except (OSError, ValueError) as exc:
        result.problems.append(f"unreadable manifest, signature or key: {exc}")
        return result
    result.public_key = public_hex
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, body)
    except (InvalidSignature, ValueError):
        result.problems.append(f"{SIGNATURE}: the signature does not match {MANIFEST}")
    if trusted_keys is not None and public not in trusted_keys:
        wanted = ", ".join(k.hex() for k in trusted_keys) or "none"
        result.problems.append(
            f"{PUBLIC_KEY}: signed by key {public_hex}, which is not {trusted_as} ({wanted})"
        )
    try:
        manifest = json.loads(body)
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
        if manifest.get("public_key") != public_hex:
            result.problems.append(f"{PUBLIC_KEY}: differs from the key named in {MANIFEST}")
        result.problems += approval_problems(manifest, staff_keys)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        result.problems.append(f"{MANIFEST}: malformed: {exc}")
        return result
    present = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() not in SIGNED_FILES
    }
    for path in sorted(present - set(listed)):
        result.problems.append(f"{path}: not in the manifest")
    for path, digest in sorted(listed.items()):
        if path not in present:
            result.problems.append(f"{path}: missing")
            continue
        result.files_checked += 1
        if sha256_file(folder / path) != digest:
            result.problems.append(f"{path}: SHA-256 differs from the manifest")
    return result


def approval_problems(
    manifest: dict[str, Any], staff_keys: Callable[[int], list[bytes]] | None = None
) -> list[str]:
    """What is wrong with a manifest's staff approvals (nothing, for a sound disclosure)."""
    problems = []
    request_id = manifest["request"]["id"]
    disclosed = {i["decision_id"] for i in manifest["items"]}
    people: set[int] = set()
    roles: set[str] = set()
    for n, approval in enumerate(manifest.get("approvals", []), 1):
        where = f"{MANIFEST}: approval {n}"
        staff_id, role = int(approval["staff_id"]), str(approval["role"])
        body = str(approval["statement"]).encode()
        key = bytes.fromhex(approval["public_key"])
        if not verify_signature(key, bytes.fromhex(approval["signature"]), body):
            problems.append(f"{where}: the signature of staff {staff_id} does not verify")
            continue
        if staff_keys is not None and key not in staff_keys(staff_id):
            problems.append(f"{where}: key {key.hex()} is not a key of staff {staff_id}")
            continue
        statement = json.loads(body)
        signed = {d["id"] for d in statement["decisions"] if d["outcome"] == "disclose"}
        if (
            statement["action"] != "approve"
            or statement["request"]["id"] != request_id
            or statement["staff"] != {**statement["staff"], "id": staff_id, "role": role}
        ):
            problems.append(f"{where}: not an approval of request {request_id} by staff {staff_id}")
        elif not disclosed <= signed:
            missing = ", ".join(sorted(disclosed - signed))
            problems.append(f"{where}: staff {staff_id} did not approve {missing}")
        else:
            people.add(staff_id)
            roles.add(role)
    if disclosed and (len(people) < 2 or not roles >= REVIEWER_ROLES):
        problems.append(
            f"{MANIFEST}: a disclosure needs two valid approvals by two different people, a"
            f" legal and a security reviewer (found {len(people)}: {', '.join(sorted(roles))})"
        )
    return problems
