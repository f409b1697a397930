"""RFC 9162 hashing and proofs against published vectors and an independent reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borderline.tlog import (
    EMPTY_ROOT,
    HashTree,
    VerificationError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

# The RFC 6962 test tree used by Certificate Transparency and transparency-dev/merkle
# (testonly/constants.go): leaves, every complete subtree hash, and the root of each size.
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
NODES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def node(level: int, index: int) -> bytes:
    return bytes.fromhex(NODES[level][index])


# (index, size, proof) and (old, new, proof) from the same test data.
INCLUSION = [
    (0, 1, []),
    (0, 8, [node(0, 1), node(1, 1), node(2, 1)]),
    (5, 8, [node(0, 4), node(1, 3), node(2, 0)]),
    (2, 3, [node(1, 0)]),
    (1, 5, [node(0, 0), node(1, 1), node(0, 4)]),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, [node(0, 1), node(1, 1), node(2, 1)]),
    (2, 8, [node(1, 1), node(2, 1)]),
    (6, 8, [node(1, 2), node(1, 3), node(2, 0)]),
    (2, 5, [node(1, 1), node(0, 4)]),
]


def tree_of(leaves: list[bytes]) -> HashTree:
    tree = HashTree()
    tree.extend([leaf_hash(e) for e in leaves])
    return tree


def reference_root(hashes: list[bytes]) -> bytes:
    """MTH straight from the RFC's recursive definition, to check the iterative code."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    left, right = reference_root(hashes[:k]), reference_root(hashes[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    assert HashTree().root() == EMPTY_ROOT


def test_roots_of_rfc6962_test_tree() -> None:
    tree = tree_of(LEAVES)
    for size, want in enumerate(ROOTS):
        assert tree.root(size).hex() == want


def test_every_complete_subtree_hash() -> None:
    tree = tree_of(LEAVES)
    for level, hashes in enumerate(NODES):
        assert tree.level_bytes(level, 0, len(hashes)).hex() == "".join(hashes)


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, proof: list[bytes]) -> None:
    tree = tree_of(LEAVES)
    assert tree.inclusion_proof(index, size) == proof
    root = bytes.fromhex(ROOTS[size])
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, root)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, proof: list[bytes]) -> None:
    tree = tree_of(LEAVES)
    assert tree.consistency_proof(old, new) == proof
    verify_consistency(old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), proof)


def test_inclusion_rejects_wrong_leaf_index_size_and_root() -> None:
    tree = tree_of(LEAVES)
    proof = tree.inclusion_proof(5, 8)
    root, leaf = bytes.fromhex(ROOTS[8]), leaf_hash(LEAVES[5])
    for args in [
        (leaf_hash(b"other"), 5, 8, proof, root),
        (leaf, 4, 8, proof, root),
        (leaf, 5, 6, proof, root),
        (leaf, 5, 8, proof[:-1], root),
        (leaf, 5, 8, [*proof, proof[0]], root),
        (leaf, 5, 8, proof, bytes.fromhex(ROOTS[7])),
        (leaf, 8, 8, proof, root),
    ]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)


def test_consistency_rejects_wrong_roots_and_sizes() -> None:
    tree = tree_of(LEAVES)
    proof = tree.consistency_proof(6, 8)
    r6, r7, r8 = (bytes.fromhex(ROOTS[i]) for i in (6, 7, 8))
    for old, new, a, b, p in [
        (6, 8, r7, r8, proof),
        (6, 8, r6, r7, proof),
        (5, 8, r6, r8, proof),
        (6, 8, r6, r8, proof[1:]),
        (6, 8, r6, r8, []),
        (8, 6, r8, r6, proof),
        (8, 8, r8, r7, []),
        (0, 8, EMPTY_ROOT, r8, proof),
    ]:
        with pytest.raises(VerificationError):
            verify_consistency(old, new, a, b, p)


def _flip(h: bytes, bit: int) -> bytes:
    return bytes([h[0] ^ (1 << (bit % 8))]) + h[1:]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_every_inclusion_proof_verifies(size: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = HashTree()
    cut = data.draw(st.integers(0, size))
    tree.extend(hashes[:cut])
    tree.extend(hashes[cut:])
    root = reference_root(hashes)
    assert tree.root() == root
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index)
    verify_inclusion(hashes[index], index, size, proof, root)
    if proof:
        bad = list(proof)
        pos = data.draw(st.integers(0, len(bad) - 1))
        bad[pos] = _flip(bad[pos], data.draw(st.integers(0, 7)))
        with pytest.raises(VerificationError):
            verify_inclusion(hashes[index], index, size, bad, root)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_every_consistency_proof_verifies(new: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(new)]
    tree = HashTree()
    tree.extend(hashes)
    old = data.draw(st.integers(1, new))
    proof = tree.consistency_proof(old, new)
    old_root, new_root = reference_root(hashes[:old]), reference_root(hashes)
    assert tree.root(old) == old_root
    verify_consistency(old, new, old_root, new_root, proof)
    if old < new:
        with pytest.raises(VerificationError):
            verify_consistency(old, new, _flip(old_root, 0), new_root, proof)
        with pytest.raises(VerificationError):
            verify_consistency(old, new, old_root, _flip(new_root, 3), proof)
        if proof:
            bad = list(proof)
            pos = data.draw(st.integers(0, len(bad) - 1))
            bad[pos] = _flip(bad[pos], data.draw(st.integers(0, 7)))
            with pytest.raises(VerificationError):
                verify_consistency(old, new, old_root, new_root, bad)


def test_proofs_outside_the_tree_are_refused() -> None:
    tree = tree_of(LEAVES)
    with pytest.raises(IndexError):
        tree.inclusion_proof(8)
    with pytest.raises(IndexError):
        tree.consistency_proof(3, 9)
    with pytest.raises(IndexError):
        tree.root(9)
