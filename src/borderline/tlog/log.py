"""The durable transparency log of one region: journal, C2SP tiles and signed checkpoints.

Durability comes from an append-only journal of checksummed batches (one fdatasync per batch);
the C2SP tiles are derived from it, written as they fill and fsynced before any checkpoint that
covers them is published. On reopen the journal is cut back to its last intact batch, the tree
is rebuilt and checked against the persisted checkpoint, and any tile newer than that checkpoint
is rewritten, so a crash can never lead to a checkpoint inconsistent with an earlier one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import pathlib
import struct
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.tlog.checkpoint import Checkpoint, verify_checkpoint
from borderline.tlog.errors import CorruptLogError, LogLockedError, TlogError, VerificationError
from borderline.tlog.files import fsync_path, write_all, write_atomic
from borderline.tlog.merkle import HashTree, leaf_hash
from borderline.tlog.note import (
    VerifierKey,
    check_key_name,
    parse_note,
    sign_note,
    verify_cosignature,
)
from borderline.tlog.proof import format_receipt
from borderline.tlog.tiles import MAX_ENTRY, TILE_HEIGHT, TILE_WIDTH, tile_path
from borderline.tlog.witness import format_add_checkpoint

JOURNAL = "journal"
CHECKPOINT = "checkpoint"
LOCK = "lock"
_MAGIC = b"BLJ1"
_HEADER = struct.Struct(">4sQII")  # magic, first index, entry count, payload length
_DIGEST = 32
_LEN = struct.Struct(">H")
# Full tiles are written in bursts, not after every batch: creating files between journal
# fsyncs makes each create wait for the filesystem's journal commit (10x slower on ext4).
_TILE_FLUSH = 64 * 256
_Tile = tuple[str, Callable[[], bytes]]  # path below the log directory, and its contents


class _Pending:
    """One caller's batch waiting for the group commit."""

    def __init__(self, payload: bytes, leaves: list[bytes], lengths: list[int]) -> None:
        self.payload, self.leaves, self.lengths = payload, leaves, lengths
        self.result: list[int] | None = None


class TransparencyLog:
    """An append-only Merkle log stored as C2SP tiles, opened by one process at a time."""

    def __init__(self, directory: pathlib.Path, origin: str, signer: Ed25519PrivateKey) -> None:
        check_key_name(origin)
        self._dir = pathlib.Path(directory)
        self._origin = origin
        self._signer = signer
        self._vkey = VerifierKey.for_key(origin, signer)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: list[_Pending] = []
        self._committing = False
        self._tree = HashTree()
        self._offsets = array("Q")
        self._lengths = array("H")
        self._dirty_files: set[pathlib.Path] = set()
        self._dirty_dirs: set[pathlib.Path] = set()
        self._checkpoint: Checkpoint | None = None
        self._checkpoint_note = b""
        self._failed: str | None = None
        self._journal_end = 0
        self._tiled = 0  # full tiles and bundles are on disk for entries below this
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self._dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LogLockedError(f"{self._dir} is open in another process") from exc
            raise
        self._journal_fd = -1
        try:
            self._recover()
        except BaseException:
            self._release()
            raise

    # -- opening and recovery ----------------------------------------------------------

    def _recover(self) -> None:
        cp_path = self._dir / CHECKPOINT
        if cp_path.exists():
            note = cp_path.read_bytes()
            try:
                self._checkpoint = verify_checkpoint(note, self._vkey)
            except VerificationError as exc:
                raise CorruptLogError(f"persisted checkpoint does not verify: {exc}") from exc
            self._checkpoint_note = note
        created = not (self._dir / JOURNAL).exists()
        self._journal_fd = os.open(self._dir / JOURNAL, os.O_RDWR | os.O_CREAT, 0o644)
        if created:
            os.fsync(self._journal_fd)
            fsync_path(self._dir)
        self._journal_end = self._scan_journal()
        if os.fstat(self._journal_fd).st_size != self._journal_end:
            os.ftruncate(self._journal_fd, self._journal_end)
            os.fsync(self._journal_fd)
        cp = self._checkpoint
        durable = cp.size if cp else 0
        if cp is not None:
            if cp.size > self.size:
                raise CorruptLogError(
                    f"checkpoint covers {cp.size} entries but the journal holds {self.size}"
                )
            if self._tree.root(cp.size) != cp.root:
                raise CorruptLogError("journal does not reproduce the persisted checkpoint root")
        # Tiles the checkpoint covers were fsynced before it was signed; put back any that an
        # operator removed, then rebuild those that filled up after it.
        self._write_tiles(self._full_tiles(0, durable), only_missing=True)
        self._write_tiles(self._partial_tiles(durable), only_missing=True)
        self._tiled = durable
        self._flush_full_tiles()
        self._sync_tiles()

    def _scan_journal(self) -> int:
        """Load every intact batch; returns the offset just past the last one."""
        fd, pos, leaves = self._journal_fd, 0, []
        while True:
            header = os.pread(fd, _HEADER.size, pos)
            if len(header) < _HEADER.size:
                break
            magic, start, count, length = _HEADER.unpack(header)
            if magic != _MAGIC or start != len(self._offsets) or count == 0:
                break
            body = os.pread(fd, length + _DIGEST, pos + _HEADER.size)
            if len(body) < length + _DIGEST:
                break
            payload = body[:length]
            if hashlib.sha256(header + payload).digest() != body[length:]:
                # Only the last record can be torn: nothing is written after it until it is
                # durable. An intact record after this one means damage, not a crash.
                after = os.pread(fd, _HEADER.size, pos + _HEADER.size + length + _DIGEST)
                if after[:4] == _MAGIC and after[4:12] == (start + count).to_bytes(8, "big"):
                    raise CorruptLogError(f"journal record at offset {pos} is damaged")
                break
            base, p, seen = pos + _HEADER.size, 0, 0
            while p < length and seen < count:
                (n,) = _LEN.unpack_from(payload, p)
                self._offsets.append(base + p + 2)
                self._lengths.append(n)
                leaves.append(leaf_hash(payload[p + 2 : p + 2 + n]))
                p += 2 + n
                seen += 1
            if p != length or seen != count:
                raise CorruptLogError(f"journal batch at offset {pos} has a bad layout")
            pos += _HEADER.size + length + _DIGEST
        self._tree.extend(leaves)
        return pos

    # -- appending ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._journal_fd < 0:
            raise TlogError("the log is closed")
        if self._failed is not None:
            raise TlogError(f"the log failed and must be reopened: {self._failed}")

    def append(self, entry: bytes) -> int:
        return self.append_batch([entry])[0]

    def append_batch(self, entries: Sequence[bytes]) -> list[int]:
        """Append entries durably; all or none survive a crash.

        Group commit: batches from threads that arrive while a journal write is in flight
        are written together by the next thread, with one fdatasync for all of them.
        """
        if not entries:
            return []
        pack, parts, leaves, lengths = _LEN.pack, [], [], []
        for e in entries:
            n = len(e)
            if n > MAX_ENTRY:
                raise ValueError(f"entry of {n} bytes exceeds the {MAX_ENTRY}-byte limit")
            parts.append(pack(n))
            parts.append(e)
            lengths.append(n)
            leaves.append(leaf_hash(e))
        request = _Pending(b"".join(parts), leaves, lengths)
        with self._cond:
            self._pending.append(request)
            while request.result is None:
                try:
                    self._check_usable()
                except TlogError:
                    if request in self._pending:
                        self._pending.remove(request)
                    raise
                if self._committing:
                    self._cond.wait()
                else:
                    self._commit_pending()
            return request.result

    def _commit_pending(self) -> None:
        """Write every queued batch as one journal record; the lock is released for the I/O."""
        group, self._pending = self._pending, []
        self._committing = True
        start, offset = self.size, self._journal_end
        payload = b"".join(r.payload for r in group)
        count = sum(len(r.lengths) for r in group)
        header = _HEADER.pack(_MAGIC, start, count, len(payload))
        record = header + payload + hashlib.sha256(header + payload).digest()
        error: OSError | None = None
        self._cond.release()
        try:
            write_all(self._journal_fd, record, offset)
            os.fdatasync(self._journal_fd)
        except OSError as exc:
            error = exc
        finally:
            self._cond.acquire()
            self._committing = False
            self._cond.notify_all()
        if error is not None:
            self._failed = f"journal write failed: {error}"
            return
        pos, offsets = offset + _HEADER.size, self._offsets
        for r in group:
            r.result = list(range(self.size, self.size + len(r.lengths)))
            for n in r.lengths:
                offsets.append(pos + 2)
                pos += 2 + n
            self._lengths.extend(r.lengths)
            self._tree.extend(r.leaves)
        self._journal_end += len(record)
        if self.size - self._tiled >= _TILE_FLUSH:
            try:
                self._flush_full_tiles()
            except OSError as exc:
                self._failed = f"tile write failed after a durable append: {exc}"

    # -- tiles -------------------------------------------------------------------------

    def _write_tiles(self, tiles: Iterable[_Tile], only_missing: bool = False) -> None:
        for rel, make in tiles:
            path = self._dir / rel
            if only_missing and path.exists():
                continue
            write_atomic(path, make(), sync=False)
            self._dirty_files.add(path)
            self._dirty_dirs.add(path.parent)

    def _bundle(self, lo: int, hi: int) -> bytes:
        """Entries [lo, hi) in bundle encoding: one journal read, minus batch framing."""
        offsets, lengths = self._offsets, self._lengths
        start = offsets[lo] - 2
        span = os.pread(self._journal_fd, offsets[hi - 1] + lengths[hi - 1] - start, start)
        if len(span) == 2 * (hi - lo) + sum(lengths[lo:hi]):
            return span
        parts, run = [], lo
        for i in range(lo + 1, hi):
            if offsets[i] != offsets[i - 1] + lengths[i - 1] + 2:
                parts.append(
                    span[offsets[run] - 2 - start : offsets[i - 1] + lengths[i - 1] - start]
                )
                run = i
        parts.append(span[offsets[run] - 2 - start :])
        return b"".join(parts)

    def _flush_full_tiles(self) -> None:
        self._write_tiles(self._full_tiles(self._tiled, self.size))
        self._tiled = self.size

    def _full_tiles(self, old_size: int, new_size: int) -> Iterator[_Tile]:
        """Every tile and entry bundle that became full between the two sizes."""
        for n in range(old_size // TILE_WIDTH, new_size // TILE_WIDTH):
            yield (
                tile_path("entries", n),
                partial(self._bundle, n * TILE_WIDTH, (n + 1) * TILE_WIDTH),
            )
        level = 0
        while (new_size >> (level * TILE_HEIGHT)) >= TILE_WIDTH:
            height = level * TILE_HEIGHT
            lo, hi = old_size >> height, new_size >> height
            for n in range(lo // TILE_WIDTH, hi // TILE_WIDTH):
                hashes = partial(
                    self._tree.level_bytes, height, n * TILE_WIDTH, (n + 1) * TILE_WIDTH
                )
                yield tile_path(level, n), hashes
            level += 1

    def _partial_tiles(self, size: int) -> Iterator[_Tile]:
        """The partial tiles and bundle a checkpoint of `size` needs."""
        width = size % TILE_WIDTH
        if width:
            start = size - width
            yield (
                tile_path("entries", start // TILE_WIDTH, width),
                partial(self._bundle, start, size),
            )
        level = 0
        while (count := size >> (level * TILE_HEIGHT)) > 0:
            width = count % TILE_WIDTH
            if width:
                start = count - width
                hashes = partial(self._tree.level_bytes, level * TILE_HEIGHT, start, count)
                yield tile_path(level, start // TILE_WIDTH, width), hashes
            level += 1

    def _sync_tiles(self) -> None:
        for path in sorted(self._dirty_files):
            fsync_path(path)
        dirs: set[pathlib.Path] = set()
        for path in self._dirty_dirs:
            while path not in dirs:
                dirs.add(path)
                if path == self._dir:
                    break
                path = path.parent
        for path in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_path(path)
        self._dirty_files.clear()
        self._dirty_dirs.clear()

    # -- reading -----------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def directory(self) -> pathlib.Path:
        return self._dir

    @property
    def size(self) -> int:
        return len(self._offsets)

    def entry(self, index: int) -> bytes:
        with self._lock:
            if not 0 <= index < self.size:
                raise IndexError(f"no entry {index} in a log of {self.size}")
            return os.pread(self._journal_fd, self._lengths[index], self._offsets[index])

    def root(self, size: int | None = None) -> bytes:
        with self._lock:
            return self._tree.root(size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        with self._lock:
            return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        with self._lock:
            return self._tree.consistency_proof(old_size, new_size)

    def verifier_key(self) -> str:
        return str(self._vkey)

    # -- checkpoints -------------------------------------------------------------------

    def checkpoint(self) -> bytes:
        """The signed note of the current tree, persisted before it is returned.

        A new checkpoint is signed only after re-deriving the previous one's root from the
        current tree, so two signed checkpoints can never be inconsistent.
        """
        with self._lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> bytes:
        self._check_usable()
        size, previous = self.size, self._checkpoint
        if previous is not None and previous.size == size:
            return self._checkpoint_note
        if previous is not None and self._tree.root(previous.size) != previous.root:
            raise CorruptLogError("tree no longer extends the last signed checkpoint")
        checkpoint = Checkpoint(self._origin, size, self._tree.root(size))
        note = sign_note(checkpoint.text(), self._origin, self._signer)
        try:
            self._flush_full_tiles()
            self._write_tiles(self._partial_tiles(size))
            self._sync_tiles()
            write_atomic(self._dir / CHECKPOINT, note, sync=True)
        except OSError as exc:
            self._failed = f"checkpoint write failed: {exc}"
            raise
        self._checkpoint, self._checkpoint_note = checkpoint, note
        return note

    def receipt(self, index: int) -> bytes:
        """C2SP tlog-proof of an entry, against the latest checkpoint if it covers the entry."""
        with self._lock:
            if not 0 <= index < self.size:
                raise IndexError(f"no entry {index} in a log of {self.size}")
            if self._checkpoint is None or self._checkpoint.size <= index:
                self._checkpoint_locked()
            assert self._checkpoint is not None
            proof = self._tree.inclusion_proof(index, self._checkpoint.size)
            return format_receipt(index, proof, self._checkpoint_note)

    def witness_request(self, old_size: int) -> bytes:
        """tlog-witness add-checkpoint body for the current checkpoint, from a witness's size."""
        with self._lock:
            note = self._checkpoint_locked()
            proof = self._tree.consistency_proof(old_size, self.size) if old_size else []
            return format_add_checkpoint(old_size, proof, note)

    def add_cosignature(self, signature_lines: bytes, witness_key: str) -> bytes:
        """Attach a witness's cosignature to the current checkpoint; receipts then carry it."""
        key = VerifierKey.parse(witness_key)
        with self._lock:
            self._check_usable()
            note = self._checkpoint_note + signature_lines
            added = parse_note(note).signatures[len(parse_note(self._checkpoint_note).signatures) :]
            if not added or any(s.name != key.name or s.key_id != key.key_id for s in added):
                raise VerificationError("only cosignatures by the given witness can be added")
            verify_cosignature(note, key)
            try:
                write_atomic(self._dir / CHECKPOINT, note, sync=True)
            except OSError as exc:
                self._failed = f"checkpoint write failed: {exc}"
                raise
            self._checkpoint_note = note
            return note

    # -- closing -----------------------------------------------------------------------

    def _release(self) -> None:
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def close(self) -> None:
        with self._cond:
            while self._committing:
                self._cond.wait()
            self._release()

    def __enter__(self) -> TransparencyLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
