"""The durable transparency log of one region: journal, C2SP tiles and signed checkpoints.

Durability comes from an append-only journal of checksummed batches (one fdatasync per batch);
the C2SP tiles are derived from it, written as they fill and fsynced before any checkpoint that
covers them is signed. On reopen the journal is checked against every signed checkpoint the log
can find (its own two files and a copy kept elsewhere): damage inside the signed part refuses to
open and nothing is cut; only a torn tail that no signature covers is cut back. A checkpoint is
published (served to readers) once enough witnesses cosigned it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
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
    Note,
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
CHECKPOINT = "checkpoint"  # the published checkpoint: what readers fetch at <prefix>/checkpoint
SIGNED = "checkpoint.signed"  # the latest signed checkpoint, published or not yet
LOCK = "lock"
_MAGIC = b"BLJ1"
_HEADER = struct.Struct(">4sQII")  # magic, first index, entry count, payload length
_DIGEST = 32
_LEN = struct.Struct(">H")
# Full tiles are written in bursts, not after every batch: creating files between journal
# fsyncs makes each create wait for the filesystem's journal commit (10x slower on ext4).
_TILE_FLUSH = 64 * 256
_Tile = tuple[str, Callable[[], bytes]]  # path below the log directory, and its contents


def _check_record(
    fd: int, pos: int, header: bytes, expected_start: int, end: int
) -> tuple[str | None, bytes]:
    """Why the journal record at `pos` is not intact (None if it is), and its payload."""
    if len(header) < _HEADER.size:
        return "short header", b""
    magic, start, count, length = _HEADER.unpack(header)
    if magic != _MAGIC:
        return "bad magic", b""
    if start != expected_start:
        return f"first index {start}, expected {expected_start}", b""
    if count == 0:
        return "empty batch", b""
    if length + _DIGEST > end - pos - _HEADER.size:
        return "record runs past the end of the journal", b""
    body = os.pread(fd, length + _DIGEST, pos + _HEADER.size)
    payload = body[:length]
    if hashlib.sha256(header + payload).digest() != body[length:]:
        return "bad checksum", b""
    return None, payload


class _Pending:
    """One caller's batch waiting for the group commit."""

    def __init__(self, payload: bytes, leaves: list[bytes], lengths: list[int]) -> None:
        self.payload, self.leaves, self.lengths = payload, leaves, lengths
        self.result: list[int] | None = None


class TransparencyLog:
    """An append-only Merkle log stored as C2SP tiles, opened by one process at a time."""

    def __init__(
        self,
        directory: pathlib.Path,
        origin: str,
        signer: Ed25519PrivateKey,
        *,
        copy: pathlib.Path | None = None,
        witnesses: Sequence[str | VerifierKey] = (),
        quorum: int = 0,
    ) -> None:
        """`copy` is where the latest signed checkpoint is also kept, outside `directory`, so
        deleting the log's own files cannot hide a rollback. A checkpoint is published once
        `quorum` of `witnesses` (cosignature keys) cosigned it; with 0, as soon as it is signed.
        """
        check_key_name(origin)
        self._copy = copy
        self._witnesses = tuple(
            VerifierKey.parse(k) if isinstance(k, str) else k for k in witnesses
        )
        if not 0 <= quorum <= len(self._witnesses):
            raise ValueError(f"a quorum of {quorum} out of {len(self._witnesses)} witnesses")
        self._quorum = quorum
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
        self._signed: Checkpoint | None = None
        self._signed_note = b""
        self._published: Checkpoint | None = None
        self._published_note = b""
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

    def _signed_files(self) -> list[pathlib.Path]:
        """Every place a signed checkpoint of this log is kept."""
        files = [self._dir / CHECKPOINT, self._dir / SIGNED]
        return files if self._copy is None else [*files, self._copy]

    def _recover(self) -> None:
        found: list[tuple[pathlib.Path, bytes, Checkpoint]] = []
        for path in self._signed_files():
            try:
                note = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                found.append((path, note, verify_checkpoint(note, self._vkey)))
            except VerificationError as exc:
                raise CorruptLogError(f"{path} does not verify: {exc}") from exc
        signed = max((cp.size for _, _, cp in found), default=0)
        created = not (self._dir / JOURNAL).exists()
        self._journal_fd = os.open(self._dir / JOURNAL, os.O_RDWR | os.O_CREAT, 0o644)
        if created:
            os.fsync(self._journal_fd)
            fsync_path(self._dir)
        self._journal_end = self._scan_journal(signed)
        for path, _, cp in found:
            if cp.size > self.size:
                raise CorruptLogError(
                    f"refusing to open: {path} is a checkpoint of size {cp.size} this log"
                    f" signed, but its journal holds only {self.size} entries (rolled back or"
                    " truncated); restore the journal, never re-sign a smaller log"
                )
            if self._tree.root(cp.size) != cp.root:
                raise CorruptLogError(
                    f"journal does not reproduce the root of {path} (size {cp.size})"
                )
        if os.fstat(self._journal_fd).st_size != self._journal_end:
            os.ftruncate(self._journal_fd, self._journal_end)
            os.fsync(self._journal_fd)
        for path, note, cp in found:
            if path.name == CHECKPOINT and path.parent == self._dir:
                self._published, self._published_note = cp, note
            best = self._signed
            if best is None or (cp.size, len(note)) > (best.size, len(self._signed_note)):
                self._signed, self._signed_note = cp, note
        # Tiles the checkpoints cover were fsynced before they were signed; put back any that
        # an operator removed, then rebuild those that filled up after them.
        self._write_tiles(self._full_tiles(0, signed), only_missing=True)
        for size in {c.size for _, _, c in found} | {signed}:
            self._write_tiles(self._partial_tiles(size), only_missing=True)
        self._tiled = signed
        self._flush_full_tiles()
        self._sync_tiles()
        if self._signed is not None:
            self._store_signed(self._signed_note, only_if_changed=True)
            self._maybe_publish()

    def _scan_journal(self, signed: int) -> int:
        """Load every intact batch; returns the offset just past the last one.

        A bad record is only cut when it is a torn tail: past every signed checkpoint and
        followed by no intact record. Anything else refuses to open, naming where.
        """
        fd, pos, leaves = self._journal_fd, 0, []
        end = os.fstat(fd).st_size
        while pos < end:
            header = os.pread(fd, _HEADER.size, pos)
            problem, payload = _check_record(fd, pos, header, len(self._offsets), end)
            if problem is not None:
                self._refuse_unless_torn(pos, problem, signed, end)
                break
            _, _, count, length = _HEADER.unpack(header)
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

    def _refuse_unless_torn(self, pos: int, problem: str, signed: int, end: int) -> None:
        held = len(self._offsets)
        if held < signed:
            raise CorruptLogError(
                f"journal record at offset {pos} is damaged ({problem}): the last good size is"
                f" {held} entries but a signed checkpoint covers {signed}; refusing to open,"
                " nothing was cut"
            )
        # Only the last record can be torn: nothing is written after it until it is durable.
        with mmap.mmap(self._journal_fd, end, prot=mmap.PROT_READ) as data:
            at = data.find(_MAGIC, pos + 1)
            while at >= 0:
                header = data[at : at + _HEADER.size]
                if len(header) == _HEADER.size:
                    start = _HEADER.unpack(header)[1]
                    if (
                        start >= held
                        and _check_record(self._journal_fd, at, header, start, end)[0] is None
                    ):
                        raise CorruptLogError(
                            f"journal record at offset {pos} is damaged ({problem}) and an intact"
                            f" record follows at offset {at}: damage, not a torn write; the last"
                            f" good size is {held} entries; refusing to open, nothing was cut"
                        )
                at = data.find(_MAGIC, at + 1)

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
        """The latest signed checkpoint (signing one if the tree grew), with its cosignatures.

        A new checkpoint is signed only after re-deriving the previous one's root from the
        current tree, and is stored (here and in the copy) before it is returned, so two signed
        checkpoints can never be inconsistent and none is ever forgotten.
        """
        with self._lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> bytes:
        self._check_usable()
        size, previous = self.size, self._signed
        if previous is not None and previous.size == size:
            return self._signed_note
        if previous is not None and self._tree.root(previous.size) != previous.root:
            raise CorruptLogError("tree no longer extends the last signed checkpoint")
        checkpoint = Checkpoint(self._origin, size, self._tree.root(size))
        note = sign_note(checkpoint.text(), self._origin, self._signer)
        try:
            self._flush_full_tiles()
            self._write_tiles(self._partial_tiles(size))
            self._sync_tiles()
        except OSError as exc:
            self._failed = f"tile write failed before a checkpoint: {exc}"
            raise
        self._signed, self._signed_note = checkpoint, note
        self._store_signed(note)
        self._maybe_publish()
        return note

    def _store_signed(self, note: bytes, only_if_changed: bool = False) -> None:
        """Persist the latest signed checkpoint: the copy elsewhere first, then the log's own."""
        try:
            for path in (self._copy, self._dir / SIGNED):
                if path is None:
                    continue
                if only_if_changed and path.exists() and path.read_bytes() == note:
                    continue
                write_atomic(path, note, sync=True)
        except OSError as exc:
            self._failed = f"checkpoint write failed: {exc}"
            raise

    def cosigners(self, note: bytes) -> tuple[str, ...]:
        """The configured witnesses whose valid cosignature `note` carries."""
        names = []
        for key in self._witnesses:
            with contextlib.suppress(VerificationError):
                verify_cosignature(note, key)
                names.append(key.name)
        return tuple(names)

    def _maybe_publish(self) -> None:
        """Publish the latest signed checkpoint once it carries the quorum of cosignatures."""
        note, signed = self._signed_note, self._signed
        if signed is None or note == self._published_note:
            return
        if len(self.cosigners(note)) < self._quorum:
            return
        try:
            write_atomic(self._dir / CHECKPOINT, note, sync=True)
        except OSError as exc:
            self._failed = f"checkpoint write failed: {exc}"
            raise
        self._published, self._published_note = signed, note

    def published(self) -> bytes:
        """The published checkpoint (what `<prefix>/checkpoint` serves), or b"" if none yet."""
        with self._lock:
            return self._published_note

    def receipt(self, index: int) -> bytes:
        """C2SP tlog-proof of an entry, against the published checkpoint if it covers the
        entry, else against the latest signed one (signing one if needed)."""
        with self._lock:
            if not 0 <= index < self.size:
                raise IndexError(f"no entry {index} in a log of {self.size}")
            if self._published is not None and index < self._published.size:
                checkpoint, note = self._published, self._published_note
            else:
                if self._signed is None or self._signed.size <= index:
                    self._checkpoint_locked()
                assert self._signed is not None
                checkpoint, note = self._signed, self._signed_note
            proof = self._tree.inclusion_proof(index, checkpoint.size)
            return format_receipt(index, proof, note)

    def witness_request(self, old_size: int) -> bytes:
        """tlog-witness add-checkpoint body for the latest signed checkpoint, from the size the
        witness last cosigned."""
        with self._lock:
            note = self._checkpoint_locked()
            size = self.size
            if old_size > size:
                raise CorruptLogError(
                    f"a witness cosigned size {old_size} of this log, which holds only {size}:"
                    " the log was rolled back"
                )
            proof = self._tree.consistency_proof(old_size, size) if old_size else []
            return format_add_checkpoint(old_size, proof, note)

    def check_witnessed(self, note: bytes, source: str) -> None:
        """Refuse a log that is smaller than, or forked from, a checkpoint it signed that a
        witness (`source`) holds."""
        try:
            checkpoint = verify_checkpoint(note, self._vkey)
        except VerificationError as exc:
            raise VerificationError(f"{source}: not a checkpoint of this log: {exc}") from exc
        with self._lock:
            if checkpoint.size > self.size:
                raise CorruptLogError(
                    f"refusing to start: {source} holds a checkpoint of size {checkpoint.size}"
                    f" this log signed, but the log holds only {self.size} entries (rolled back)"
                )
            if self._tree.root(checkpoint.size) != checkpoint.root:
                raise CorruptLogError(
                    f"refusing to start: {source} holds a checkpoint of size {checkpoint.size}"
                    " this log signed for another history"
                )

    def add_cosignature(self, signature_lines: bytes, witness_key: str | VerifierKey) -> bytes:
        """Attach a witness's cosignature to the latest signed checkpoint (replacing an older
        one by the same key); receipts then carry it, and it may complete the quorum."""
        key = VerifierKey.parse(witness_key) if isinstance(witness_key, str) else witness_key
        with self._lock:
            self._check_usable()
            current = parse_note(self._signed_note)
            added = parse_note(self._signed_note + signature_lines).signatures[
                len(current.signatures) :
            ]
            if not added or any(s.name != key.name or s.key_id != key.key_id for s in added):
                raise VerificationError("only cosignatures by the given witness can be added")
            verify_cosignature(Note(current.text, tuple(added)).encode(), key)
            kept = tuple(
                s for s in current.signatures if (s.name, s.key_id) != (key.name, key.key_id)
            )
            note = Note(current.text, (*kept, *added)).encode()
            self._signed_note = note
            self._store_signed(note)
            self._maybe_publish()
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
