"""RFC 9162 (RFC 6962) Merkle tree hashing, audit paths and their verification, in one small module.

Pure functions over hashes; no database. A proof is built from a ``range_hash(lo, hi)``
callback that returns MTH(D[lo:hi]), so the caller decides where subtree hashes come from
(the stored nodes of :mod:`hub.audit.store`, or a list in memory).

- leaf hash: SHA-256(0x00 || leaf bytes); node: SHA-256(0x01 || left || right);
  the empty tree's root: SHA-256("").
- ``inclusion_ranges`` / ``consistency_ranges`` give the subtrees of RFC 9162 2.1.3.1 and
  2.1.4.1 (PATH and SUBPROOF), deepest first; ``verify_inclusion`` / ``verify_consistency``
  are the verification algorithms of 2.1.3.2 and 2.1.4.2.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()

RangeHash = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves (hashes already taken)."""
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


def range_hash_from(leaf_hashes: Sequence[bytes]) -> RangeHash:
    """A ``range_hash`` over a list of leaf hashes in memory (tests and small trees)."""

    def mth(lo: int, hi: int) -> bytes:
        return root_of(leaf_hashes[lo:hi])

    return mth


class Frontier:
    """The compact range [0, size): the roots of the perfect subtrees, largest first.

    Appending is amortised one node hash per leaf; ``root()`` folds the frontier right to left,
    which is the RFC 9162 MTH of the leaves so far.
    """

    __slots__ = ("size", "stack")

    def __init__(self) -> None:
        self.size = 0
        self.stack: list[bytes] = []

    def append(self, h: bytes) -> None:
        size = self.size
        stack = self.stack
        while size & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            size >>= 1
        stack.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = node_hash(left, h)
        return h


# --- building proofs: which subtrees ------------------------------------------------------------


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees [lo, hi) whose hashes make PATH(index, D[size]), deepest first."""
    if not 0 <= index < size:
        raise ValueError("index must be below size")
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo = lo + k
    out.reverse()
    return out


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes make PROOF(old, D[new]) = SUBPROOF(old, D[new], true), deepest first.

    Empty when old == new or old == 0 (RFC 9162 defines no proof from the empty tree).
    """
    if not 0 <= old <= new:
        raise ValueError("need 0 <= old <= new")
    if old == 0 or old == new:
        return []
    out: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, new, old, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                out.append((lo, hi))
            break
        k = split_point(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out


def inclusion_proof(index: int, size: int, range_hash: RangeHash) -> list[bytes]:
    return [range_hash(lo, hi) for lo, hi in inclusion_ranges(index, size)]


def consistency_proof(old: int, new: int, range_hash: RangeHash) -> list[bytes]:
    return [range_hash(lo, hi) for lo, hi in consistency_ranges(old, new)]


# --- verifying proofs (RFC 9162 2.1.3.2 and 2.1.4.2) --------------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Iterable[bytes]) -> bytes | None:
    """The root that ``path`` proves for the leaf hash ``leaf`` at ``index``, or None if malformed."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> bool:
    return root_from_inclusion(index, size, leaf, path) == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]) -> bool:
    if not 0 <= old <= new:
        return False
    if old == new:
        return not path and old_root == new_root
    if old == 0:
        return not path and old_root == EMPTY_ROOT
    path = list(path)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
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
    return sn == 0 and fr == old_root and sr == new_root


def root_of_nodes(nodes: Sequence[bytes]) -> bytes:
    """The root over subtree hashes of equal size (a power-of-two count), already hashed."""
    level = list(nodes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]
