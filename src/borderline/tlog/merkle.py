"""RFC 9162 Merkle tree hashing, proofs and their verification.

Hand-written: the algorithms are short and exactly specified (RFC 9162 section 2.1), and the
Python libraries that implement them are either GPL, unmaintained, or pull in a whole CT stack.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from borderline.tlog.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_CACHE_LIMIT = 4096


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n > 1): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 section 2.1.3.2; raises VerificationError unless `leaf` is at `index`."""
    if root != root_from_inclusion(leaf, index, size, proof):
        raise VerificationError("inclusion proof does not lead to the root")


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    if not 0 <= index < size:
        raise VerificationError(f"index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise VerificationError("proof hash has the wrong length")
        if sn == 0:
            raise VerificationError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is too short")
    return r


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2; raises VerificationError unless new extends old."""
    if not 0 <= old_size <= new_size:
        raise VerificationError(f"old size {old_size} is not within new size {new_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise VerificationError("equal sizes need an empty proof and equal roots")
        return
    if old_size == 0:
        if proof:
            raise VerificationError("a proof from the empty tree must be empty")
        return
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        raise VerificationError("malformed consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise VerificationError("consistency proof does not match the roots")


class HashTree:
    """All complete-subtree hashes of a growing tree, one contiguous buffer per level.

    Level l holds MTH of every aligned complete subtree of 2**l leaves, so any proof is a
    handful of slices plus a few hashes for the ragged right edge (cached: the log is
    append-only, so MTH(D[lo:hi]) never changes once computed).
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._cache: dict[tuple[int, int], bytes] = {}

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def level_bytes(self, level: int, start: int, end: int) -> bytes:
        """Concatenated hashes [start, end) of a level: exactly what a tile holds."""
        buf = self._levels[level] if level < len(self._levels) else bytearray()
        if end * HASH_SIZE > len(buf) or start > end:
            raise IndexError(f"level {level} has no hashes [{start}, {end})")
        return bytes(buf[start * HASH_SIZE : end * HASH_SIZE])

    def level_count(self, level: int) -> int:
        return len(self._levels[level]) // HASH_SIZE if level < len(self._levels) else 0

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        self._levels[0] += b"".join(leaf_hashes)
        level = 0
        sha256 = hashlib.sha256
        while True:
            cur = self._levels[level]
            parents = len(cur) // (2 * HASH_SIZE)
            if parents == 0:
                return
            if level + 1 == len(self._levels):
                self._levels.append(bytearray())
            up = self._levels[level + 1]
            have = len(up) // HASH_SIZE
            if have == parents:
                return
            step = 2 * HASH_SIZE
            up += b"".join(
                sha256(_NODE_PREFIX + cur[i * step : (i + 1) * step]).digest()
                for i in range(have, parents)
            )
            level += 1

    def _node(self, level: int, index: int) -> bytes:
        off = index * HASH_SIZE
        return bytes(self._levels[level][off : off + HASH_SIZE])

    def subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range that starts on a subtree boundary, as proofs need."""
        if hi > self.size or not 0 <= lo < hi:
            raise IndexError(f"no subtree [{lo}, {hi}) in a tree of size {self.size}")
        width = hi - lo
        if width & (width - 1) == 0 and lo % width == 0:
            return self._node(width.bit_length() - 1, lo // width)
        cached = self._cache.get((lo, hi))
        if cached is not None:
            return cached
        parts: list[bytes] = []
        pos = lo
        while pos < hi:
            p = 1 << ((hi - pos).bit_length() - 1)
            parts.append(self._node(p.bit_length() - 1, pos // p))
            pos += p
        r = parts[-1]
        for h in reversed(parts[:-1]):
            r = node_hash(h, r)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[(lo, hi)] = r
        return r

    def root(self, size: int | None = None) -> bytes:
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise IndexError(f"no tree of size {n}; the log has {self.size} entries")
        return EMPTY_ROOT if n == 0 else self.subtree(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 section 2.1.3.1 PATH(m, D[n]), leaf sibling first."""
        n = self.size if size is None else size
        if not 0 <= index < n <= self.size:
            raise IndexError(f"no entry {index} in a tree of size {n}")
        out: list[bytes] = []
        lo, hi = 0, n
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                out.append(self.subtree(lo + k, hi))
                hi = lo + k
            else:
                out.append(self.subtree(lo, lo + k))
                lo += k
        out.reverse()
        return out

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 section 2.1.4.1 PROOF(m, D[n])."""
        n = self.size if new_size is None else new_size
        if not 0 <= old_size <= n <= self.size:
            raise IndexError(f"no consistency proof from {old_size} to {n}")
        if old_size in (0, n):
            return []
        out: list[bytes] = []
        lo, hi, complete = 0, n, True
        while old_size - lo != hi - lo:
            k = _split(hi - lo)
            if old_size - lo <= k:
                out.append(self.subtree(lo + k, hi))
                hi = lo + k
            else:
                out.append(self.subtree(lo, lo + k))
                lo += k
                complete = False
        if not complete:
            out.append(self.subtree(lo, hi))
        out.reverse()
        return out
