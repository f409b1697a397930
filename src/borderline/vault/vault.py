"""One region's key vault: the only place that region's keys exist."""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from borderline import dkimsign
from borderline.durable_sqlite import open_durable
from borderline.vault.access import (
    ENTRY_FORMAT,
    AccessEvent,
    AccessLog,
    Justification,
    account_hash,
    commitment,
    deletion_entry,
    reveal_entry,
    seal_commitment,
    sealed_entry,
)
from borderline.vault.sealing import encrypt_over, open_in_place, open_sealed

log = logging.getLogger(__name__)

BLOB_VERSION = b"\x01"
NONCE_SIZE = 12
TAG_SIZE = 16
JOIN_PIECES_UP_TO = 1 << 20
# A DKIM key stays published this long after a newer one took over signing: longer than
# mail is retried (5 days), so a message signed just before a rotation still verifies.
DKIM_GRACE_SECONDS = 7 * 24 * 3600
CHECKPOINT_TRIES = 50


class KeyReleaseDenied(Exception):
    """The vault refused to release a key; the reason says why."""


class AccessLogUnavailable(Exception):
    """The access could not be logged (the log's disk is full, say), so no key was released.
    The vault reopens the log for the next access, which recovers it once it can write."""


def _message_aad(address: str) -> bytes:
    return b"borderline-message-v1\n" + address.lower().encode()


def _summary_aad(address: str) -> bytes:
    """Distinct from a message's, so a summary can never be served as a message."""
    return b"borderline-summary-v1\n" + address.lower().encode()


def _column_aad(address: str, mailbox_id: int, field: str) -> bytes:
    """A summary column is bound to its mailbox (its run's UIDs mean nothing in another)
    and its field (so one cannot be answered for another)."""
    return f"borderline-summary-column-v1\n{address.lower()}\n{mailbox_id}\n{field}".encode()


def _wrap_aad(region_id: str, address: str) -> bytes:
    return f"borderline-dek-v1\n{region_id}\n{address.lower()}".encode()


def _record_aad(region_id: str, address: str, committed_to: str) -> bytes:
    return f"borderline-access-record-v1\n{region_id}\n{address}\n{committed_to}".encode()


def _outbound_aad(region_id: str, sender: str, domain: str) -> bytes:
    return f"borderline-outbound-v1\n{region_id}\n{sender.lower()}\n{domain}".encode()


def _dkim_aad(region_id: str, generation: int) -> bytes:
    return f"borderline-dkim-v1\n{region_id}\n{generation}".encode()


def _derived_key(data_key: bytes, purpose: bytes) -> bytes:
    hkdf = HKDF(hashes.SHA256(), length=32, salt=None, info=purpose)
    return hkdf.derive(data_key)


def _encrypt_pieces(
    key: bytes, aead: AESGCM, aad: bytes, pieces: tuple[bytes | bytearray, ...]
) -> bytes:
    """A blob (version, nonce, ciphertext, tag) written in place: beyond a small message,
    the only copy of the message this makes is the ciphertext."""
    nonce = os.urandom(NONCE_SIZE)
    size = sum(len(piece) for piece in pieces)
    blob = io.BytesIO()
    blob.write(BLOB_VERSION + nonce)
    start = blob.tell()
    blob.seek(start + size + TAG_SIZE - 1)
    blob.write(b"\0")  # sizes the buffer once
    with blob.getbuffer() as view:
        if size <= JOIN_PIECES_UP_TO:  # one AES-GCM call is quicker than a stream
            aead.encrypt_into(nonce, b"".join(pieces), aad, view[start:])
        else:
            encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
            encryptor.authenticate_additional_data(aad)
            at = start
            for piece in pieces:
                at += encryptor.update_into(piece, view[at:])
            encryptor.finalize()
            view[at:] = encryptor.tag
    # Either way the layout of AESGCM.encrypt: ciphertext, then tag. getvalue() hands
    # over the buffer itself.
    return blob.getvalue()


def _encrypt_in_place(aead: AESGCM, aad: bytes, head: bytes, message: bytearray) -> bytearray:
    """The blob of `head` + `message` made out of `message` itself: the version, nonce and
    head go before it (a move within the buffer, not a copy of the message), the
    ciphertext over it and the tag after it. Memory for a message is then its size once."""
    nonce = os.urandom(NONCE_SIZE)
    message[0:0] = BLOB_VERSION + nonce + head
    encrypt_over(aead, nonce, aad, message, len(BLOB_VERSION) + NONCE_SIZE)
    return message


def _decrypt_blob(aead: AESGCM, blob: bytes, aad: bytes, what: str, owner: str) -> bytes:
    """`what` of `owner` decrypted (the error says which, and is the only place they are
    joined: this runs once per message or summary read)."""
    if not blob.startswith(BLOB_VERSION):
        raise ValueError(f"unknown version of {what} of {owner}")
    nonce = blob[1 : 1 + NONCE_SIZE]
    try:  # a view: a slice of the blob would copy the whole message once more
        return aead.decrypt(nonce, memoryview(blob)[1 + NONCE_SIZE :], aad)
    except InvalidTag as exc:
        raise ValueError(f"{what} of {owner} fails authentication") from exc


@dataclass(frozen=True)
class DkimKey:
    """One generation of a region's DKIM key, as published (the private key stays here)."""

    generation: int
    selector: str  # g<generation>.<region>
    algorithm: str
    record: str  # the TXT record text
    created: float
    active_from: float  # signs from then on, until a newer generation is active
    retired_at: float | None  # when a newer generation took over, if one has

    def signing(self, now: float) -> bool:
        return self.active_from <= now and (self.retired_at is None or now < self.retired_at)

    def published(self, now: float) -> bool:
        """Keys to keep in DNS: every key not yet retired for longer than the grace period
        (one that will sign soon is published before it does)."""
        return self.retired_at is None or now < self.retired_at + DKIM_GRACE_SECONDS


def _record_cipher(data_key: bytes) -> AESGCM:
    """The key private access records are kept under: derived from the account's data key,
    so only a path that may unwrap that key (the account holder's, the region's lawful
    process) opens them, and it decrypts no mail."""
    hkdf = HKDF(hashes.SHA256(), length=32, salt=None, info=b"borderline-access-records-v1")
    return AESGCM(hkdf.derive(data_key))


@dataclass(frozen=True)
class AccessRecord:
    """A private access record, opened: the commitment on the log it must match, and the
    salt and record that open it."""

    commitment: str
    salt: bytes
    record: bytes  # canonical JSON, exactly as committed
    sealed_until: date | None

    @property
    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record)
        return data

    def opens(self) -> bool:
        return commitment(self.salt, self.record) == self.commitment


def _write_secret(path: Path, data: bytes) -> None:
    """Create a key file readable only by its owner; never overwrite an existing key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    if not path.exists():
        _write_secret(path, make())
    return path.read_bytes()


class ContentKey:
    """A released data key: decrypts one account's messages, nothing else."""

    def __init__(self, address: str, data_key: bytes, log_index: int) -> None:
        self.address = address.lower()
        self._data_key = data_key
        self._aead = AESGCM(data_key)
        self.log_index = log_index
        self._name_key = HKDF(
            hashes.SHA256(), 32, salt=None, info=b"borderline-column-names-v1"
        ).derive(data_key)
        # Made once: a session decrypts thousands of summaries in one FETCH.
        self._message_aad = _message_aad(self.address)
        self._summary_aad = _summary_aad(self.address)

    def decrypt(self, blob: bytes) -> bytes:
        return _decrypt_blob(self._aead, blob, self._message_aad, "message blob", self.address)

    def decrypt_summary(self, blob: bytes) -> bytes:
        return _decrypt_blob(self._aead, blob, self._summary_aad, "summary", self.address)

    def encrypt_summary(self, summary: bytes) -> bytes:
        """A summary computed by the session that released the key (a message stored
        without one)."""
        return _encrypt_pieces(self._data_key, self._aead, self._summary_aad, (summary,))

    def name(self, text: str) -> str:
        """A name for `text` that only this account's key gives (HMAC-SHA256 under a key
        derived from it): stored in plaintext, it says nothing of `text` to the store,
        nor whether another account's is the same."""
        mac = hmac.new(self._name_key, text.encode("utf-8", "surrogateescape"), "sha256")
        return mac.hexdigest()[:32]

    def decrypt_column(self, mailbox_id: int, field: str, blob: bytes) -> bytes:
        aad = _column_aad(self.address, mailbox_id, field)
        return _decrypt_blob(self._aead, blob, aad, "summary column", self.address)

    def encrypt_column(self, mailbox_id: int, field: str, column: bytes) -> bytes:
        """One field of the summaries of a run of a mailbox's messages, encrypted once
        (docs/store.md, "Summary columns"): made by a session that read them."""
        aad = _column_aad(self.address, mailbox_id, field)
        return _encrypt_pieces(self._data_key, self._aead, aad, (column,))


class Vault:
    """Region KEK, per-account DEKs, the region's HPKE and signing keys.

    Writing mail encrypts inside the vault and releases nothing; reading needs `release`,
    which appends the access event to the transparency log before the key leaves.
    """

    def __init__(
        self,
        region_id: str,
        directory: Path,
        open_log: Callable[[Ed25519PrivateKey], AccessLog],
        on_release: Callable[[Justification, bool], None] | None = None,
    ) -> None:
        """`on_release` hears of each key released (its justification, and whether it was
        sealed), once it is logged: the operator's metrics."""
        self.region_id = region_id
        self._on_release = on_release
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._kek = AESGCM(_load_or_create(directory / "kek.bin", lambda: AESGCM.generate_key(256)))
        self._sealing_key = X25519PrivateKey.from_private_bytes(
            _load_or_create(
                directory / "sealing.key", lambda: X25519PrivateKey.generate().private_bytes_raw()
            )
        )
        self.signing_key = Ed25519PrivateKey.from_private_bytes(
            _load_or_create(
                directory / "signing.key", lambda: Ed25519PrivateKey.generate().private_bytes_raw()
            )
        )
        self._open_log = open_log
        self._log: AccessLog | None = None
        self._log_lock = threading.Lock()
        self._lock = threading.Lock()
        self._db = open_durable(directory / "keys.sqlite")
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS data_keys"
                " (address TEXT PRIMARY KEY, wrapped BLOB NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS sealed_events (log_index INTEGER PRIMARY KEY,"
                " salt BLOB NOT NULL, event BLOB NOT NULL, until TEXT NOT NULL,"
                " revealed_at INTEGER)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS access_records (commitment TEXT PRIMARY KEY,"
                " account TEXT NOT NULL, sealed_until TEXT, record BLOB NOT NULL)"
            )
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS access_records_account ON access_records (account)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS dkim_keys (generation INTEGER PRIMARY KEY,"
                " algorithm TEXT NOT NULL, wrapped BLOB NOT NULL, record TEXT NOT NULL,"
                " created REAL NOT NULL, active_from REAL NOT NULL)"
            )
        # Per account: its data key, and an AESGCM of it (which keeps the key schedule);
        # the same for the key its outbound mail is queued under.
        self._writers: dict[str, tuple[bytes, AESGCM]] = {}
        self._outbound: dict[str, tuple[bytes, AESGCM]] = {}

    @property
    def access_log(self) -> AccessLog:
        """Opened on first use (ingest-only processes encrypt but never release keys), and
        again after an append failed."""
        with self._log_lock:
            if self._log is None:
                self._log = self._open_log(self.signing_key)
            return self._log

    def _log_access(self, entry: bytes) -> int:
        """Append to the access log. A log that failed to append stays failed until it is
        reopened (tlog), so it is dropped here and the next access reopens it: a full disk
        refuses releases while it is full, not until a restart."""
        try:
            log = self.access_log
        except Exception as exc:  # reopening needs room to recover, too
            raise AccessLogUnavailable(f"the access log cannot be opened: {exc}") from exc
        try:
            return log.append(entry)
        except Exception as exc:
            with self._log_lock:
                if self._log is log:
                    self._log = None
                    with contextlib.suppress(Exception):
                        log.close()
            raise AccessLogUnavailable(f"the access could not be logged: {exc}") from exc

    @property
    def sealing_public_key(self) -> bytes:
        return self._sealing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def signing_public_key(self) -> bytes:
        return self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def create_account_key(self, address: str) -> None:
        """Give an account its data key; idempotent, so re-adding an account is harmless."""
        address = address.lower()
        nonce = os.urandom(NONCE_SIZE)
        wrapped = nonce + self._kek.encrypt(
            nonce, AESGCM.generate_key(256), _wrap_aad(self.region_id, address)
        )
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO data_keys (address, wrapped) VALUES (?, ?)",
                (address, wrapped),
            )

    def _unwrap(self, address: str) -> AESGCM:
        return AESGCM(self._data_key(address))

    def _data_key(self, address: str) -> bytes:
        with self._lock:
            row = self._db.execute(
                "SELECT wrapped FROM data_keys WHERE address = ?", (address,)
            ).fetchone()
        if row is None:
            raise KeyReleaseDenied(f"no data key for {address} in region {self.region_id}")
        wrapped: bytes = row[0]
        return self._kek.decrypt(
            wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], _wrap_aad(self.region_id, address)
        )

    def encrypt(self, address: str, *pieces: bytes | bytearray) -> bytes:
        """Encrypt a message (the pieces, one after another) for an account at rest; the key
        stays inside the vault."""
        address = address.lower()
        return _encrypt_pieces(*self._writer(address), _message_aad(address), pieces)

    def encrypt_in_place(self, address: str, head: bytes, message: bytearray) -> bytearray:
        """`encrypt(address, head, message)` written over `message`, which then holds the
        blob and no longer the plaintext: for a caller that holds the only reference."""
        address = address.lower()
        return _encrypt_in_place(self._writer(address)[1], _message_aad(address), head, message)

    def _writer(self, address: str) -> tuple[bytes, AESGCM]:
        writer = self._writers.get(address)
        if writer is None:
            dek = self._data_key(address)
            writer = self._writers[address] = (dek, AESGCM(dek))
        return writer

    def encrypt_summary(self, address: str, summary: bytes) -> bytes:
        """Encrypt what IMAP reads of a message instead of the message (docs/store.md,
        "Message summaries") under the account's data key, as the message is."""
        address = address.lower()
        return _encrypt_pieces(*self._writer(address), _summary_aad(address), (summary,))

    def _outbound_key(self, sender: str) -> tuple[bytes, AESGCM]:
        key = self._outbound.get(sender)
        if key is None:
            derived = _derived_key(self._data_key(sender), b"borderline-outbound-v1")
            key = self._outbound[sender] = (derived, AESGCM(derived))
        return key

    def encrypt_outbound(self, sender: str, domain: str, *pieces: bytes) -> bytes:
        """Encrypt mail an account of this region sends to the Internet, for the outbound
        queue: under a key derived from the sender's data key (so the queue is encrypted
        per account, as the mailbox is, and destroying that key erases what is queued too),
        bound to this region, the sender and the destination domain."""
        sender = sender.lower()
        key, aead = self._outbound_key(sender)
        return _encrypt_pieces(key, aead, _outbound_aad(self.region_id, sender, domain), pieces)

    def open_outbound(self, sender: str, domain: str, blob: bytes) -> bytes:
        """The queued message, for the delivery its sender asked for. No key leaves the
        vault and no access is logged: the derived key opens queued outbound mail only,
        never the account's mailbox. KeyReleaseDenied if the account has no data key (it
        was deleted); ValueError if the blob does not authenticate."""
        sender = sender.lower()
        _, aead = self._outbound_key(sender)
        aad = _outbound_aad(self.region_id, sender, domain)
        return _decrypt_blob(aead, blob, aad, "outbound blob", sender)

    # DKIM keys: generations g1, g2, ... per region, wrapped by the KEK.

    def dkim_keys(self, now: float | None = None) -> list[DkimKey]:
        """Every kept generation, oldest first; the first one is made (RSA, in use at once)
        when there is none, so a region always has a key to sign and publish."""
        now = time.time() if now is None else now
        keys = self._dkim_rows()
        if not keys:
            self._add_dkim_key("rsa", 1, now, now)
            keys = self._dkim_rows()
        active = [row[4] for row in keys]
        result = []
        for index, (generation, algorithm, record, created, active_from) in enumerate(keys):
            later = [t for t in active[index + 1 :] if t <= now]
            result.append(
                DkimKey(
                    generation=generation,
                    selector=f"g{generation}.{self.region_id}",
                    algorithm=algorithm,
                    record=record,
                    created=created,
                    active_from=active_from,
                    retired_at=min(later) if later else None,
                )
            )
        return result

    def _dkim_rows(self) -> list[tuple[int, str, str, float, float]]:
        with self._lock:
            return [
                (int(r[0]), str(r[1]), str(r[2]), float(r[3]), float(r[4]))
                for r in self._db.execute(
                    "SELECT generation, algorithm, record, created, active_from FROM dkim_keys"
                    " ORDER BY generation"
                )
            ]

    def _add_dkim_key(
        self, algorithm: dkimsign.Algorithm, generation: int, now: float, active_from: float
    ) -> bool:
        private = dkimsign.generate_key(algorithm)
        nonce = os.urandom(NONCE_SIZE)
        wrapped = nonce + self._kek.encrypt(nonce, private, _dkim_aad(self.region_id, generation))
        with self._lock, self._db:
            added = self._db.execute(
                "INSERT OR IGNORE INTO dkim_keys VALUES (?, ?, ?, ?, ?, ?)",
                (generation, algorithm, wrapped, dkimsign.public_record(private), now, active_from),
            )
        return added.rowcount == 1

    def rotate_dkim(
        self, algorithm: dkimsign.Algorithm, active_from: float, now: float | None = None
    ) -> DkimKey:
        """A new generation that signs from `active_from` on (publish it before then); the
        one it replaces stays published for DKIM_GRACE_SECONDS after that. Keys past their
        grace period are destroyed."""
        now = time.time() if now is None else now
        keys = self.dkim_keys(now)
        gone = [k.generation for k in keys if not k.published(now)]
        with self._lock, self._db:
            self._db.executemany("DELETE FROM dkim_keys WHERE generation = ?", [(g,) for g in gone])
        generation = keys[-1].generation + 1
        while not self._add_dkim_key(algorithm, generation, now, max(active_from, now)):
            generation += 1  # another process rotated at the same moment
        return next(k for k in self.dkim_keys(now) if k.generation == generation)

    def dkim_sign(self, message: bytes, domain: str, now: float | None = None) -> bytes:
        """The message with a DKIM-Signature of the generation in use, d=`domain`."""
        now = time.time() if now is None else now
        key = next(k for k in self.dkim_keys(now) if k.signing(now))
        with self._lock:
            row = self._db.execute(
                "SELECT wrapped FROM dkim_keys WHERE generation = ?", (key.generation,)
            ).fetchone()
        wrapped: bytes = row[0]
        private = self._kek.decrypt(
            wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], _dkim_aad(self.region_id, key.generation)
        )
        return dkimsign.sign(message, domain=domain, selector=key.selector, private_key=private)

    def release(
        self,
        address: str,
        justification: Justification,
        principal: str,
        *,
        decision_id: str | None = None,
        request_id: str | None = None,
        sealed_until: date | None = None,
    ) -> ContentKey:
        """Log the access durably, then hand out the account's key (invariant 4).

        The principal, the account and the decision go into the private record only; the
        log gets the justification, the minute, the legal request's public id and the
        commitment (DESIGN.md invariant 8).
        """
        if not isinstance(justification, Justification):
            raise KeyReleaseDenied(f"{justification!r} is not a justification code")
        lawful = justification is Justification.THIRD_PARTY_DATA_REQUEST
        if lawful and not (decision_id and request_id):
            raise KeyReleaseDenied(
                "THIRD_PARTY_DATA_REQUEST must name an approved decision and the public id"
                " of its legal request"
            )
        if not principal:
            raise KeyReleaseDenied("a key release must name the principal asking for it")
        address = address.lower()
        data_key = self._data_key(address)
        event = AccessEvent(
            region=self.region_id,
            address=address,
            justification=justification,
            principal=principal,
            time=datetime.now(UTC),
            decision_id=decision_id,
            request_id=request_id if lawful else None,
        )
        salt = secrets.token_bytes(32)
        private = event.private()
        committed = commitment(salt, private)
        # The private record is durable before the public entry that commits to it.
        self._keep_record(address, data_key, committed, salt + private, sealed_until)
        public = event.public(committed)
        index = (
            self._append_sealed(public, sealed_until)
            if sealed_until is not None
            else self._log_access(public)
        )
        if self._on_release is not None:
            self._on_release(justification, sealed_until is not None)
        return ContentKey(address, data_key, index)

    def _keep_record(
        self, address: str, data_key: bytes, committed: str, opening: bytes, until: date | None
    ) -> None:
        nonce = os.urandom(NONCE_SIZE)
        blob = nonce + _record_cipher(data_key).encrypt(
            nonce, opening, _record_aad(self.region_id, address, committed)
        )
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO access_records (commitment, account, sealed_until, record)"
                " VALUES (?, ?, ?, ?)",
                (committed, address, until.isoformat() if until else None, blob),
            )

    def access_records(self, address: str, today: date) -> list[AccessRecord]:
        """The account's private access records, opened, except those still under a
        nondisclosure order: for the account holder once authenticated (`access-history`)."""
        address = address.lower()
        cipher = _record_cipher(self._data_key(address))
        with self._lock:
            rows = self._db.execute(
                "SELECT commitment, sealed_until, record FROM access_records WHERE account = ?"
                " AND (sealed_until IS NULL OR sealed_until <= ?) ORDER BY rowid",
                (address, today.isoformat()),
            ).fetchall()
        opened = []
        for committed, until, blob in rows:
            plain = cipher.decrypt(
                blob[:NONCE_SIZE],
                blob[NONCE_SIZE:],
                _record_aad(self.region_id, address, committed),
            )
            opened.append(
                AccessRecord(
                    commitment=committed,
                    salt=plain[:32],
                    record=plain[32:],
                    sealed_until=date.fromisoformat(until) if until else None,
                )
            )
        return opened

    def _append_sealed(self, public: bytes, until: date) -> int:
        """Log a seal over the entry now; the entry itself is revealed when the order lapses."""
        salt = secrets.token_bytes(32)
        with self._lock:
            index = self._log_access(sealed_entry(self.region_id, seal_commitment(salt, public)))
            with self._db:
                self._db.execute(
                    "INSERT INTO sealed_events (log_index, salt, event, until) VALUES (?,?,?,?)",
                    (index, salt, public, until.isoformat()),
                )
        return index

    def reveal_lapsed(self, today: date) -> list[int]:
        """Publish the sealed entry of every access whose nondisclosure order has lapsed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT log_index, salt, event FROM sealed_events"
                " WHERE revealed_at IS NULL AND until <= ? ORDER BY log_index",
                (today.isoformat(),),
            ).fetchall()
        revealed = []
        for log_index, salt, body in rows:
            if json.loads(body).get("v") == ENTRY_FORMAT:
                entry = reveal_entry(log_index, bytes(salt), bytes(body))
            else:
                entry = reveal_entry(log_index, None, self._reopen_format1(log_index, salt, body))
            entry_index = self._log_access(entry)
            with self._lock, self._db:
                self._db.execute(
                    "UPDATE sealed_events SET revealed_at = ? WHERE log_index = ?",
                    (entry_index, log_index),
                )
            revealed.append(entry_index)
        return revealed

    def _reopen_format1(self, log_index: int, salt: bytes, body: bytes) -> bytes:
        """A seal written in format 1 commits to a record naming its principal, so its
        opening goes into the account holder's private record, and the log gets a format-2
        entry that names no one."""
        old: dict[str, Any] = json.loads(body)
        address = self._address_of(str(old["account"]))
        event = AccessEvent(
            region=self.region_id,
            address=address or str(old["account"]),
            justification=Justification(old["justification"]),
            principal=str(old["principal"]),
            time=datetime.fromisoformat(str(old["time"])),
            decision_id=old.get("decision"),
        )
        opening = secrets.token_bytes(32)
        private = event.private(
            format1_seal={"index": log_index, "salt": bytes(salt).hex(), "event": old}
        )
        committed = commitment(opening, private)
        if address is not None:
            self._keep_record(address, self._data_key(address), committed, opening + private, None)
        return event.public(committed)

    def _address_of(self, hashed: str) -> str | None:
        with self._lock:
            addresses = [r[0] for r in self._db.execute("SELECT address FROM data_keys")]
        return next((a for a in addresses if account_hash(a) == hashed), None)

    def destroy_account_key(self, address: str) -> int:
        """Destroy the account's data key, so its ciphertext (mail, access records), wherever
        a copy of it is, can never be read again; the deletion goes on the log first (its
        index is returned), naming no one. SQLite's secure_delete zeroes the freed key and
        a checkpoint drops the old pages from the WAL, so no copy of the wrapped key stays
        in the vault's files (a backup of them keeps its own)."""
        address = address.lower()
        index = self._log_access(deletion_entry(self.region_id, datetime.now(UTC)))
        with self._lock:
            self._db.execute("PRAGMA secure_delete = ON")
            with self._db:
                self._db.execute("DELETE FROM data_keys WHERE address = ?", (address,))
                self._db.execute("DELETE FROM access_records WHERE account = ?", (address,))
            # A reader in another process (an ingest worker) can hold the checkpoint back.
            for _ in range(CHECKPOINT_TRIES):
                if self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                    break
                time.sleep(0.1)
            else:
                log.warning("vault %s: the WAL still holds a deleted key", self.region_id)
            self._writers.pop(address, None)
        return index

    def forget_cached_keys(self) -> None:
        """Drop the data keys kept for encrypting (accounts deleted by another process)."""
        with self._lock:
            self._writers.clear()

    def open_sealed(self, sealed: bytes) -> bytes:
        """Open mail sealed to this region by another region (sealed transit)."""
        return open_sealed(self._sealing_key, self.region_id, sealed)

    def open_sealed_in_place(self, sealed: bytearray) -> None:
        """`open_sealed` over the buffer itself, which then holds the plaintext."""
        open_in_place(self._sealing_key, self.region_id, sealed)

    def close(self) -> None:
        self._db.close()
