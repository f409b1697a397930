"""Staff accounts: the people of a custodian who work its legal desk, their roles, logins
(password and TOTP) and the Ed25519 keys they sign their actions with.

A person is an account id, never a typed name (invariant 9). Display names are unique under
NFKC case folding and under the Unicode confusable skeleton (UTS #39), so 'Ada', a fullwidth
'ADA' and 'Ada' spelt with a Cyrillic A are one person, and names with invisible characters
(a zero-width space) are refused.

Where things live: the public profile (name, roles, custodian, public keys) in
`data_dir/staff.sqlite`; the secrets in the data of the region that holds the person's key,
`data_dir/<region>/staff/secrets.sqlite`. That region is one of the regions run by the
custodian that employs them, because the custodian is who answers for what its people sign.
The private key and the TOTP secret are encrypted (AES-256-GCM) under a key derived from the
person's password (argon2id), and a copy of the private key under each bearer token: the
region holds the key, but can sign only while the person (or their token) is present.

Core: no network, no adapter.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import disarm
import pyotp
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from borderline.accounts import MIN_PASSWORD_LENGTH, PasswordCost
from borderline.config import Config
from borderline.durable_sqlite import open_durable

NAME_MAX = 100
TOTP_ISSUER = "Borderline legal desk"
TOKEN_PREFIX = "bls"
MAX_TOKEN_DAYS = 90
_NONCE = 12


class Role(StrEnum):
    INTAKE = "intake"
    LEGAL_REVIEWER = "legal-reviewer"
    SECURITY_REVIEWER = "security-reviewer"
    AUDITOR = "auditor"
    ADMIN = "admin"


REVIEWER_ROLES = frozenset({Role.LEGAL_REVIEWER, Role.SECURITY_REVIEWER})
ROLE_WORDS = {
    Role.INTAKE: "intake",
    Role.LEGAL_REVIEWER: "legal reviewer",
    Role.SECURITY_REVIEWER: "security reviewer",
    Role.AUDITOR: "auditor",
    Role.ADMIN: "admin",
}


class StaffError(ValueError):
    """A staff account cannot be created or changed as asked; the message says why."""


class AuthenticationError(StaffError):
    """A login failed. The message never says which part was wrong."""


class PermissionDenied(StaffError):
    """An authenticated person asked for something their roles do not allow."""


def parse_roles(text: str | list[str]) -> frozenset[Role]:
    """Roles as written on the command line or in a form: 'intake,legal-reviewer'."""
    words = text.split(",") if isinstance(text, str) else text
    roles = set()
    for word in (w.strip() for w in words):
        try:
            roles.add(Role(word.replace("_", "-").replace(" ", "-").lower()))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise StaffError(f"--role: {word!r} is not a role (roles: {known})") from None
    if not roles:
        raise StaffError("--role: give at least one role")
    if roles >= REVIEWER_ROLES:
        raise StaffError(
            "--role: one person cannot be both legal and security reviewer: a disclosure needs"
            " two different people in those two roles"
        )
    return frozenset(roles)


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn")


def name_keys(name: str) -> tuple[str, str, str]:
    """The display name as shown (spaces collapsed), its NFKC case fold and its confusable
    skeleton. Two names with the same fold or skeleton are the same person."""
    shown = " ".join(name.split())
    if not shown:
        raise StaffError("name: give the person's name")
    if len(shown) > NAME_MAX:
        raise StaffError(f"name: at most {NAME_MAX} characters")
    for char in shown:
        if _invisible(char):
            code = f"U+{ord(char):04X}"
            what = unicodedata.name(char, "an unassigned or control character")
            raise StaffError(f"name: {shown!r} contains an invisible character ({code} {what})")
    folded = " ".join(unicodedata.normalize("NFKC", shown).casefold().split())
    return shown, folded, disarm.skeleton_key(folded)


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The exact bytes a person signs: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def verify_signature(public_key: bytes, signature: bytes, body: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, body)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class StaffMember:
    """A person's public profile."""

    id: int
    name: str
    roles: frozenset[Role]
    custodian: str
    key_region: str
    public_key: bytes
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @property
    def reviewer_role(self) -> Role | None:
        return next(iter(self.roles & REVIEWER_ROLES), None)

    @property
    def label(self) -> str:
        """How records name the person: the name and the account that makes it an identity."""
        return f"{self.name} (staff {self.id})"

    def role_words(self) -> str:
        return ", ".join(ROLE_WORDS[r] for r in sorted(self.roles))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "roles": sorted(r.value for r in self.roles),
            "custodian": self.custodian,
            "key_region": self.key_region,
            "public_key": self.public_key.hex(),
            "created_at": self.created_at.isoformat(),
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
        }


@dataclass(frozen=True)
class Signature:
    """What a person signed: the statement's exact bytes, the signature and the key."""

    staff_id: int
    role: str
    body: bytes
    signature: bytes
    public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "staff_id": self.staff_id,
            "role": self.role,
            "statement": self.body.decode(),
            "signature": self.signature.hex(),
            "public_key": self.public_key.hex(),
        }


class Signer:
    """An authenticated person: their profile and, unlocked by their login, their key."""

    def __init__(
        self, member: StaffMember, key: Ed25519PrivateKey, totp: str | None = None
    ) -> None:
        self.member = member
        self._key = key
        # Only a password login unlocks the TOTP secret (a token does not), and only that
        # may change the password.
        self._totp = totp

    @property
    def id(self) -> int:
        return self.member.id

    def has(self, *roles: Role) -> bool:
        return bool(self.member.roles & set(roles))

    def require(self, what: str, *roles: Role) -> None:
        if not self.has(*roles):
            allowed = " or ".join(ROLE_WORDS[r] for r in roles)
            raise PermissionDenied(
                f"{self.member.label} may not {what}: it needs the role {allowed}"
            )

    def sign(self, statement: Mapping[str, Any], role: str = "") -> Signature:
        """Sign a statement; who signs, in which role, is part of what is signed."""
        body = canonical_json(
            {
                **statement,
                "staff": {
                    "id": self.member.id,
                    "role": role,
                    "custodian": self.member.custodian,
                },
            }
        )
        return Signature(self.member.id, role, body, self._key.sign(body), self.member.public_key)


SCHEMA = """
CREATE TABLE IF NOT EXISTS staff (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    name_fold TEXT NOT NULL UNIQUE,
    skeleton TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    custodian TEXT NOT NULL,
    key_region TEXT NOT NULL,
    public_key BLOB NOT NULL,
    created_at TEXT NOT NULL,
    created_by INTEGER,
    disabled_at TEXT,
    disabled_by INTEGER
);
CREATE TABLE IF NOT EXISTS staff_keys (
    staff_id INTEGER NOT NULL REFERENCES staff (id),
    public_key BLOB NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (staff_id, public_key)
);
"""
SECRETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    staff_id INTEGER PRIMARY KEY,
    cost TEXT NOT NULL,
    salt BLOB NOT NULL,
    verifier BLOB NOT NULL,
    wrapped BLOB NOT NULL,
    last_totp_step INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    staff_id INTEGER NOT NULL,
    digest BLOB NOT NULL,
    wrapped BLOB NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires REAL NOT NULL,
    revoked_at TEXT
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes | None:
    try:
        return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
    except InvalidTag:
        return None


def _derive(password: str, salt: bytes, cost: PasswordCost) -> tuple[bytes, bytes]:
    """One argon2id derivation, split in two: a verifier (stored, checks the password) and
    a key (never stored, unlocks the person's secrets)."""
    out = hash_secret_raw(
        password.encode(),
        salt,
        time_cost=cost.time_cost,
        memory_cost=cost.memory_cost,
        parallelism=cost.parallelism,
        hash_len=64,
        type=Type.ID,
    )
    return out[:32], out[32:]


def _token_key(secret: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, None, b"borderline-staff-token-v1").derive(secret.encode())


@dataclass(frozen=True)
class Enrollment:
    """What a new person (or a reset) must be given once: the TOTP secret for their app."""

    member: StaffMember
    totp_secret: str

    @property
    def totp_uri(self) -> str:
        return pyotp.TOTP(self.totp_secret).provisioning_uri(
            name=f"staff {self.member.id}: {self.member.name}", issuer_name=TOTP_ISSUER
        )


class StaffRoster:
    """Every staff account of the cloud. `key_regions` maps each region to the custodian that
    runs it: a person's key is held by a region of their employer."""

    def __init__(
        self, data_dir: Path, key_regions: Mapping[str, str], cost: PasswordCost | None = None
    ) -> None:
        self.data_dir = data_dir
        self.key_regions = dict(key_regions)
        self.cost = cost or PasswordCost()
        # Reentrant: a new account's secrets are written inside the profile's transaction.
        self._lock = threading.RLock()
        self._db = open_durable(data_dir / "staff.sqlite")
        with self._db:
            self._db.executescript(SCHEMA)
        self._secrets: dict[str, sqlite3.Connection] = {}

    @classmethod
    def of(cls, config: Config) -> StaffRoster:
        """The roster of a cloud: each region's key holder is the custodian that runs it."""
        return cls(
            config.cloud.data_dir,
            {r.id: r.custodian for r in config.regions},
            PasswordCost.of(config.passwords),
        )

    def _vault(self, region: str) -> sqlite3.Connection:
        db = self._secrets.get(region)
        if db is None:
            folder = self.data_dir / region / "staff"
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = folder / "secrets.sqlite"
            if not path.exists():
                with contextlib.suppress(FileExistsError):
                    path.touch(mode=0o600, exist_ok=False)
            db = open_durable(path)
            with db:
                db.executescript(SECRETS_SCHEMA)
            self._secrets[region] = db
        return db

    @contextlib.contextmanager
    def _tx(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        with self._lock, db:
            yield db

    # profiles

    @staticmethod
    def _member(row: sqlite3.Row | tuple[Any, ...]) -> StaffMember:
        return StaffMember(
            id=int(row[0]),
            name=str(row[1]),
            roles=frozenset(Role(r) for r in str(row[2]).split(",")),
            custodian=str(row[3]),
            key_region=str(row[4]),
            public_key=bytes(row[5]),
            created_at=datetime.fromisoformat(row[6]),
            disabled_at=datetime.fromisoformat(row[7]) if row[7] else None,
        )

    _COLUMNS = "id, name, roles, custodian, key_region, public_key, created_at, disabled_at"

    def members(self, custodian: str | None = None) -> list[StaffMember]:
        query = f"SELECT {self._COLUMNS} FROM staff"
        params: tuple[str, ...] = ()
        if custodian is not None:
            query += " WHERE custodian = ?"
            params = (custodian,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [self._member(r) for r in rows]

    def get(self, staff_id: int) -> StaffMember:
        if not 0 < staff_id < 1 << 63:  # no such id in SQLite, which refuses to compare it
            raise StaffError(f"no staff account {staff_id} (see `staff list`)")
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM staff WHERE id = ?", (staff_id,)
            ).fetchone()
        if row is None:
            raise StaffError(f"no staff account {staff_id} (see `staff list`)")
        return self._member(row)

    def find(self, who: str) -> StaffMember:
        """By account id, or by name as typed (any case or look-alike spelling of it)."""
        who = who.strip()
        if who.isascii() and who.isdigit():
            return self.get(int(who))
        try:
            _, folded, skeleton = name_keys(who)
        except StaffError:
            raise StaffError(f"no staff account named {who!r}") from None
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM staff WHERE name_fold = ? OR skeleton = ?",
                (folded, skeleton),
            ).fetchone()
        if row is None:
            raise StaffError(f"no staff account named {who!r} (see `staff list`)")
        return self._member(row)

    def has_admin(self, custodian: str) -> bool:
        return any(m.active and Role.ADMIN in m.roles for m in self.members(custodian))

    def known_keys(self, staff_id: int) -> list[bytes]:
        """Every public key the person has had (a reset gives a new one; old signatures
        still verify against the old)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT public_key FROM staff_keys WHERE staff_id = ? ORDER BY rowid", (staff_id,)
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def add(
        self,
        name: str,
        roles: frozenset[Role],
        key_region: str,
        password: str,
        created_by: int | None = None,
    ) -> Enrollment:
        """A new person, employed by the custodian of `key_region`, which holds their key."""
        shown, folded, skeleton = name_keys(name)
        if key_region not in self.key_regions:
            raise StaffError(
                f"--region: no region {key_region!r} (regions: {', '.join(self.key_regions)})"
            )
        _check_password(password)
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes_raw()
        with self._tx(self._db) as db:
            clash = db.execute(
                "SELECT id, name FROM staff WHERE name_fold = ? OR skeleton = ?",
                (folded, skeleton),
            ).fetchone()
            if clash is not None:
                raise StaffError(
                    f"name: {shown!r} is staff {clash[0]}, {clash[1]!r} (names that differ only"
                    " in case, width or look-alike letters are one person)"
                )
            cursor = db.execute(
                "INSERT INTO staff (name, name_fold, skeleton, roles, custodian, key_region,"
                " public_key, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    shown,
                    folded,
                    skeleton,
                    ",".join(sorted(roles)),
                    self.key_regions[key_region],
                    key_region,
                    public,
                    _now(),
                    created_by,
                ),
            )
            staff_id = int(cursor.lastrowid or 0)
            db.execute(
                "INSERT INTO staff_keys (staff_id, public_key, since) VALUES (?, ?, ?)",
                (staff_id, public, _now()),
            )
            totp = self._store_secrets(key_region, staff_id, password, key, None)
        return Enrollment(self.get(staff_id), totp)

    def _store_secrets(
        self,
        region: str,
        staff_id: int,
        password: str,
        key: Ed25519PrivateKey,
        totp: str | None,
    ) -> str:
        """Write (or replace) the person's secrets in their key region; returns the TOTP
        secret (a new one unless `totp` is kept)."""
        totp = totp or pyotp.random_base32()
        salt = secrets.token_bytes(16)
        verifier, unlock = _derive(password, salt, self.cost)
        payload = key.private_bytes_raw() + totp.encode()
        wrapped = _seal(unlock, payload, _aad(region, staff_id))
        with self._lock, self._vault(region) as vault:
            vault.execute(
                "INSERT INTO secrets (staff_id, cost, salt, verifier, wrapped)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (staff_id) DO UPDATE SET"
                " cost = excluded.cost, salt = excluded.salt, verifier = excluded.verifier,"
                " wrapped = excluded.wrapped",
                (staff_id, str(self.cost), salt, verifier, wrapped),
            )
        return totp

    def disable(self, staff_id: int, by: int | None = None) -> StaffMember:
        """The person can no longer log in; their tokens stop working. Their past signatures
        still verify."""
        member = self.get(staff_id)
        with self._tx(self._db) as db:
            db.execute(
                "UPDATE staff SET disabled_at = ?, disabled_by = ? WHERE id = ?"
                " AND disabled_at IS NULL",
                (_now(), by, staff_id),
            )
        with self._lock, self._vault(member.key_region) as vault:
            vault.execute(
                "UPDATE tokens SET revoked_at = ? WHERE staff_id = ? AND revoked_at IS NULL",
                (_now(), staff_id),
            )
        return self.get(staff_id)

    def change_password(self, signer: Signer, new_password: str) -> None:
        """A logged-in person sets a new password; key and TOTP stay."""
        _check_password(new_password)
        if signer._totp is None:
            raise AuthenticationError("log in with password and code to change the password")
        member = signer.member
        self._store_secrets(member.key_region, member.id, new_password, signer._key, signer._totp)

    def reset(self, staff_id: int, new_password: str, by: int | None = None) -> Enrollment:
        """A forgotten password: a new key, a new TOTP secret, every token revoked. The old
        key is kept on record, so what the person signed before still verifies."""
        _check_password(new_password)
        member = self.get(staff_id)
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes_raw()
        with self._tx(self._db) as db:
            db.execute("UPDATE staff SET public_key = ? WHERE id = ?", (public, staff_id))
            db.execute(
                "INSERT INTO staff_keys (staff_id, public_key, since) VALUES (?, ?, ?)",
                (staff_id, public, _now()),
            )
        totp = self._store_secrets(member.key_region, staff_id, new_password, key, None)
        with self._lock, self._vault(member.key_region) as vault:
            vault.execute(
                "UPDATE tokens SET revoked_at = ? WHERE staff_id = ? AND revoked_at IS NULL",
                (_now(), staff_id),
            )
        return Enrollment(self.get(staff_id), totp)

    # logins

    def login(self, who: str, password: str, code: str) -> Signer:
        """Password (argon2) then TOTP code, each code good once. Every failure reads the
        same, and an unknown name costs a real password check too."""
        try:
            member = self.find(who)
        except StaffError:
            member = None
        row = None
        if member is not None:
            with self._lock:
                row = (
                    self._vault(member.key_region)
                    .execute(
                        "SELECT cost, salt, verifier, wrapped, last_totp_step FROM secrets"
                        " WHERE staff_id = ?",
                        (member.id,),
                    )
                    .fetchone()
                )
        if member is None or row is None:
            _derive(password, secrets.token_bytes(16), self.cost)
            raise AuthenticationError("wrong name, password or code")
        verifier, unlock = _derive(password, bytes(row[1]), PasswordCost.parse(row[0]))
        payload = _open(unlock, bytes(row[3]), _aad_of(member))
        if not hmac.compare_digest(verifier, bytes(row[2])) or payload is None:
            raise AuthenticationError("wrong name, password or code")
        if not member.active:
            raise AuthenticationError(f"{member.label} is disabled")
        key, totp = Ed25519PrivateKey.from_private_bytes(payload[:32]), payload[32:].decode()
        step = _totp_step(totp, code, int(row[4]))
        if step is None:
            raise AuthenticationError("wrong name, password or code")
        with self._lock, self._vault(member.key_region) as vault:
            cursor = vault.execute(
                "UPDATE secrets SET last_totp_step = ? WHERE staff_id = ? AND last_totp_step < ?",
                (step, member.id, step),
            )
            if cursor.rowcount != 1:
                raise AuthenticationError("wrong name, password or code")
        if row[0] != str(self.cost):
            self._store_secrets(member.key_region, member.id, password, key, totp)
        return Signer(member, key, totp)

    def create_token(self, signer: Signer, days: float = 1, label: str = "") -> str:
        """A bearer token for automation and the command line: it unlocks the person's key
        as their login does, until it expires or they are disabled."""
        if not 0 < days <= MAX_TOKEN_DAYS:
            raise StaffError(f"--days: between 0 and {MAX_TOKEN_DAYS}")
        member = signer.member
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        wrapped = _seal(_token_key(secret), signer._key.private_bytes_raw(), _aad_of(member))
        with self._lock, self._vault(member.key_region) as vault:
            vault.execute(
                "INSERT INTO tokens (id, staff_id, digest, wrapped, label, created_at, expires)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token_id,
                    member.id,
                    hashlib.sha256(secret.encode()).digest(),
                    wrapped,
                    " ".join(label.split())[:100],
                    _now(),
                    time.time() + days * 86400,
                ),
            )
        return f"{TOKEN_PREFIX}.{member.id}.{token_id}.{secret}"

    def token_login(self, token: str) -> Signer:
        parts = token.strip().split(".")
        if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not parts[1].isdigit():
            raise AuthenticationError("not a staff token")
        _, staff_id, token_id, secret = parts
        try:
            member = self.get(int(staff_id))
        except StaffError:
            raise AuthenticationError("unknown or expired token") from None
        with self._lock:
            row = (
                self._vault(member.key_region)
                .execute(
                    "SELECT digest, wrapped, expires, revoked_at FROM tokens"
                    " WHERE id = ? AND staff_id = ?",
                    (token_id, member.id),
                )
                .fetchone()
            )
        if (
            row is None
            or not hmac.compare_digest(bytes(row[0]), hashlib.sha256(secret.encode()).digest())
            or row[2] < time.time()
            or row[3] is not None
            or not member.active
        ):
            raise AuthenticationError("unknown or expired token")
        seed = _open(_token_key(secret), bytes(row[1]), _aad_of(member))
        if seed is None:
            raise AuthenticationError("unknown or expired token")
        return Signer(member, Ed25519PrivateKey.from_private_bytes(seed))

    def close(self) -> None:
        self._db.close()
        for db in self._secrets.values():
            db.close()


def _aad(region: str, staff_id: int) -> bytes:
    return f"borderline-staff-v1\n{region}\n{staff_id}".encode()


def _aad_of(member: StaffMember) -> bytes:
    return _aad(member.key_region, member.id)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")


def _totp_step(secret: str, code: str, last_step: int) -> int | None:
    """The time step the code belongs to (this one, or one either side for clock drift),
    if it is later than the last code used."""
    code = code.strip().replace(" ", "")
    totp = pyotp.TOTP(secret)
    now = totp.timecode(datetime.now(UTC))
    for step in (now - 1, now, now + 1):
        if step > last_step and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def totp_code(secret: str, at: datetime | None = None) -> str:
    """The code an authenticator app shows for `secret` (for scripts that hold the secret)."""
    return pyotp.TOTP(secret).at(at or datetime.now(UTC))


@dataclass
class StaffSession:
    """A browser's login: the person (key unlocked) and the token its forms must carry."""

    id: str
    signer: Signer
    csrf: str
    created: float
    seen: float


class StaffSessions:
    """The logins of one server, in memory only: a restart logs everyone out, and the
    unlocked keys never reach a disk. Sessions end after `idle` seconds unused or `lifetime`
    seconds in all; at most `limit` live at once (the oldest go first)."""

    def __init__(
        self, idle: float = 30 * 60, lifetime: float = 12 * 3600, limit: int = 10_000
    ) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.limit = limit
        self._lock = threading.Lock()
        self._sessions: dict[str, StaffSession] = {}

    def open(self, signer: Signer) -> StaffSession:
        now = time.monotonic()
        session = StaffSession(
            secrets.token_urlsafe(32), signer, secrets.token_urlsafe(32), now, now
        )
        with self._lock:
            while len(self._sessions) >= self.limit:
                oldest = min(self._sessions.values(), key=lambda s: s.seen)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> StaffSession | None:
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle or now - session.created > self.lifetime:
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
