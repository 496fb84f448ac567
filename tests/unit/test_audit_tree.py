"""The Merkle tree module against the published RFC 6962 test vectors and an independent
verifier written here straight from RFC 9162 section 2.1 (recursive MTH, PATH and PROOF)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hub.audit import tree

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "rfc6962" / "reference.json").read_text())
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaves_hex"]]
HASHES = [tree.leaf_hash(d) for d in LEAVES]


# --- an independent reading of RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1 -----------------------------

def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(data: list[bytes]) -> bytes:
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(len(data))
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def path(m: int, data: list[bytes]) -> list[bytes]:
    if len(data) == 1:
        return []
    k = _k(len(data))
    if m < k:
        return path(m, data[:k]) + [mth(data[k:])]
    return path(m - k, data[k:]) + [mth(data[:k])]


def subproof(m: int, data: list[bytes], b: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if b else [mth(data)]
    k = _k(n)
    if m <= k:
        return subproof(m, data[:k], b) + [mth(data[k:])]
    return subproof(m - k, data[k:], False) + [mth(data[:k])]


def data_of(n: int) -> list[bytes]:
    return [b"leaf %d" % i for i in range(n)]


# --- the published vectors -----------------------------------------------------------------------

def test_empty_root_is_sha256_of_nothing():
    assert tree.root_of([]) == bytes.fromhex(VECTORS["empty_root"]) == tree.EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_reference(size):
    assert tree.root_of(HASHES[:size]).hex() == VECTORS["roots"][size - 1]
    assert mth(LEAVES[:size]).hex() == VECTORS["roots"][size - 1]


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['index']}-of-{c['size']}")
def test_inclusion_vectors(case):
    index, size, want = case["index"], case["size"], [bytes.fromhex(h) for h in case["path"]]
    got = tree.inclusion_proof(index, size, tree.range_hash_from(HASHES[:size]))
    assert got == want
    root = bytes.fromhex(VECTORS["roots"][size - 1])
    assert tree.verify_inclusion(index, size, HASHES[index], want, root)
    # the reference's corruptions: each must fail
    bad = [
        (index - 1, size, HASHES[index], want), (index + 1, size, HASHES[index], want),
        (index ^ 2, size, HASHES[index], want), (index, size * 2, HASHES[index], want),
        (index, size // 2, HASHES[index], want), (index, size, b"WrongLeaf", want),
        (index, size, HASHES[index], want + [b""]), (index, size, HASHES[index], want + [root]),
        (index, size, HASHES[index], [root] + want),
    ]
    for i in range(len(want)):
        flipped = list(want)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        bad.append((index, size, HASHES[index], flipped))
    if want:
        bad.append((index, size, HASHES[index], want[:-1]))
    for args in bad:
        if args[:2] == (index, size) and args[2:] == (HASHES[index], want):
            continue
        assert not tree.verify_inclusion(*args, root), args[:2]


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: f"{c['from']}-to-{c['size']}")
def test_consistency_vectors(case):
    old, new, want = case["from"], case["size"], [bytes.fromhex(h) for h in case["path"]]
    got = tree.consistency_proof(old, new, tree.range_hash_from(HASHES[:new]))
    assert got == want
    r1, r2 = bytes.fromhex(VECTORS["roots"][old - 1]), bytes.fromhex(VECTORS["roots"][new - 1])
    assert tree.verify_consistency(old, new, r1, r2, want)
    if not want:
        return
    bad = [(old - 1, new, r1, r2, want), (old + 1, new, r1, r2, want), (old ^ 2, new, r1, r2, want),
           (old, new * 2, r1, r2, want), (old, new // 2, r1, r2, want), (old, new, b"WrongRoot", r2, want),
           (old, new, r1, b"WrongRoot", want), (old, new, r2, r1, want), (old, new, r1, r2, []),
           (old, new, r1, r2, want + [b""]), (old, new, r1, r2, want + [r1]), (old, new, r1, r2, [r2] + want),
           (old, new, r1, r2, [want[0]] + want), (old, new, r1, r2, want[:-1])]
    for i in range(len(want)):
        flipped = list(want)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        bad.append((old, new, r1, r2, flipped))
    for args in bad:
        assert not tree.verify_consistency(*args), args[:2]


# --- every small tree, against the independent reading -------------------------------------------

@pytest.mark.parametrize("n", range(1, 70))
def test_every_proof_of_small_trees_matches_the_rfc_text(n):
    data = data_of(n)
    hashes = [tree.leaf_hash(d) for d in data]
    rh = tree.range_hash_from(hashes)
    root = mth(data)
    assert tree.root_of(hashes) == root
    for i in range(n):
        p = tree.inclusion_proof(i, n, rh)
        assert p == path(i, data)
        assert tree.verify_inclusion(i, n, hashes[i], p, root)
        assert not tree.verify_inclusion(i, n, tree.leaf_hash(b"other"), p, root)
    for m in range(1, n):
        p = tree.consistency_proof(m, n, rh)
        assert p == subproof(m, data, True)
        assert tree.verify_consistency(m, n, mth(data[:m]), root, p)
        assert not tree.verify_consistency(m, n, mth(data[:m] + [b"x"])if m < n else root, root, p)


def test_frontier_equals_mth_at_every_size():
    frontier = tree.Frontier()
    data = data_of(300)
    for i, d in enumerate(data):
        frontier.append(tree.leaf_hash(d))
        if i % 37 == 0 or i in (255, 256, 299):
            assert frontier.root() == mth(data[: i + 1])
