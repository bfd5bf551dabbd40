"""RFC 9162 (RFC 6962) Merkle tree hashing, proof generation and proof verification.

Leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right), and the
root of n leaves splits at the largest power of two below n (RFC 9162 section 2.1.1).

Proofs are generated from `get_node(level, index)`: the hash of the *complete, aligned*
subtree of 2**level leaves that starts at leaf index * 2**level (level 0 is a leaf hash).
Those nodes never change once complete, so storage can keep them and every proof costs
O(log n) reads. `CompactRange` yields exactly those nodes as leaves are appended.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step. Every hash must
be exactly 32 bytes. A proof of the wrong shape raises `MalformedProofError`; a proof of
the right shape that leads elsewhere raises `InclusionProofError` or
`ConsistencyProofError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from exchange.ledger.errors import ConsistencyProofError, InclusionProofError, MalformedProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# No tree below 2**64 leaves needs more: at most 64 path hashes plus a consistency seed.
MAX_PROOF_HASHES = 65

GetNode = Callable[[int, int], bytes]
"""Hash of the complete subtree at (level, index); see the module docstring."""

Node = tuple[int, int, bytes]
"""A complete subtree as (level, index, hash)."""

# Bound once: the hot paths call these millions of times.
_sha256 = hashlib.sha256
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash the tree commits to for one leaf."""
    return _sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return _sha256(_NODE + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of the given leaf hashes; SHA-256("") for none."""
    if not hashes:
        return EMPTY_ROOT
    if set(map(len, hashes)) != {HASH_SIZE}:
        raise MalformedProofError("Every leaf hash must be exactly 32 bytes.")
    sha = _sha256
    level = list(hashes)
    # Pairing neighbours level by level, an unpaired last node moving up unchanged, builds
    # exactly the RFC tree (which splits at the largest power of two) without recursion.
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        pairs = iter(level)
        # zip over one iterator pairs neighbours and drops the odd node kept above.
        level = [
            sha(_NODE + left + right).digest() for left, right in zip(pairs, pairs, strict=False)
        ]
        if odd is not None:
            level.append(odd)
    return level[0]


# --- proof generation ----------------------------------------------------------------------


def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `size` leaves, lowest sibling first."""
    if not 0 <= index < size:
        raise MalformedProofError(f"Leaf index {index} is outside a tree of size {size}.")
    return _path(0, index, size, get_node)


def consistency_proof(old_size: int, new_size: int, get_node: GetNode) -> list[bytes]:
    """The RFC 9162 consistency proof that the tree of `old_size` is a prefix of `new_size`."""
    if not 0 < old_size <= new_size:
        raise MalformedProofError(
            f"No consistency proof exists from size {old_size} to size {new_size}."
        )
    if old_size == new_size:
        return []
    # The largest complete subtree ending at old_size is on both trees' paths; the verifier
    # starts from it (and knows it already when it is the whole old tree).
    shift = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> shift
    proof = [] if old_size == 1 << shift else [get_node(shift, index)]
    proof += _path(shift, index, new_size, get_node)
    return proof


def _path(level: int, index: int, size: int, get_node: GetNode) -> list[bytes]:
    """Sibling hashes from node (level, index) up to the root of the tree of `size` leaves."""
    proof: list[bytes] = []
    last = (size - 1) >> level  # the rightmost node of this level, possibly incomplete
    while last:
        sibling = index ^ 1
        if sibling < last:
            proof.append(get_node(level, sibling))
        elif sibling == last:
            start = sibling << level
            if size - start == 1 << level:
                proof.append(get_node(level, sibling))
            else:
                proof.append(_range_root(start, size, get_node))
        # sibling > last: this node has no sibling here and moves up unchanged (RFC split).
        index >>= 1
        last >>= 1
        level += 1
    return proof


def _range_root(start: int, end: int, get_node: GetNode) -> bytes:
    """MTH of leaves [start, end) where `start` is aligned to a power of two above end-start."""
    width = end - start
    parts: list[bytes] = []
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            parts.append(get_node(level, start >> level))
            start += 1 << level
    root = parts.pop()
    while parts:
        root = node_hash(parts.pop(), root)
    return root


# --- verification --------------------------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise MalformedProofError(f"The {what} is {len(value)} bytes; a hash is 32 bytes.")


def _check_proof(proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise MalformedProofError(f"The proof has {len(proof)} hashes; no valid proof does.")
    for position, value in enumerate(proof):
        if len(value) != HASH_SIZE:
            raise MalformedProofError(
                f"Proof hash {position} is {len(value)} bytes; a hash is 32 bytes."
            )


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that `proof` implies for leaf `index` in a tree of `size` (RFC 9162 2.1.3.2)."""
    _check_hash(leaf_hash, "leaf hash")
    _check_proof(proof)
    if not 0 <= index < size:
        raise MalformedProofError(f"Leaf index {index} is outside a tree of size {size}.")
    sha = _sha256
    fn, sn = index, size - 1
    root = leaf_hash
    for sibling in proof:
        if sn == 0:
            raise MalformedProofError(f"The proof is too long for a tree of size {size}.")
        if fn & 1 or fn == sn:
            root = sha(_NODE + sibling + root).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            root = sha(_NODE + root + sibling).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MalformedProofError(f"The proof is too short for a tree of size {size}.")
    return root


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf `index` with `leaf_hash` is in the tree of `size` leaves and `root`."""
    _check_hash(root, "root hash")
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise InclusionProofError(
            f"Leaf {index} is not in the tree of size {size} with the given root."
        )


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (size1, root1) is a prefix of (size2, root2) (RFC 9162 2.1.4.2)."""
    _check_hash(root1, "first root hash")
    _check_hash(root2, "second root hash")
    _check_proof(proof)
    if size1 < 1:
        # Every tree extends the empty one, so such a proof would prove nothing.
        raise MalformedProofError("A consistency proof must start from a non-empty tree.")
    if size2 < size1:
        raise MalformedProofError(f"Size {size2} is smaller than the earlier size {size1}.")
    if size1 == size2:
        if proof:
            raise MalformedProofError("Equal tree sizes need an empty consistency proof.")
        if root1 != root2:
            raise ConsistencyProofError(f"Two different roots for the same size {size1}.")
        return
    if not proof:
        raise MalformedProofError(f"An empty proof cannot link size {size1} to size {size2}.")

    sha = _sha256
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else proof
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for sibling in path[1:]:
        if sn == 0:
            raise MalformedProofError(f"The proof is too long for sizes {size1} and {size2}.")
        if fn & 1 or fn == sn:
            fr = sha(_NODE + sibling + fr).digest()
            sr = sha(_NODE + sibling + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha(_NODE + sr + sibling).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MalformedProofError(f"The proof is too short for sizes {size1} and {size2}.")
    if fr != root1 or sr != root2:
        raise ConsistencyProofError(
            f"The tree of size {size1} is not a prefix of the tree of size {size2}."
        )


# --- incremental building ------------------------------------------------------------------


class CompactRange:
    """The right frontier of a growing tree: the hashes of its maximal complete subtrees.

    There is one subtree per set bit of the size, largest (leftmost) first. Appending a leaf
    merges equal subtrees like a binary carry: amortised one node hash per leaf, and the
    root costs O(log n). Deliberately mutable (a frozen copy per append would dominate the
    cost of a million appends); it does no I/O, callers persist what `append` returns.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        if size < 0 or len(frontier) != size.bit_count():
            raise MalformedProofError(
                f"A tree of size {size} has {max(size, 0).bit_count()} frontier hashes, "
                f"not {len(frontier)}."
            )
        for value in frontier:
            _check_hash(value, "frontier hash")
        self._size = size
        self._frontier = list(frontier)

    @classmethod
    def from_nodes(cls, size: int, get_node: GetNode) -> CompactRange:
        """Resume the frontier of a stored tree of `size` leaves from its complete subtrees."""
        if size < 0:
            raise MalformedProofError(f"A tree cannot have size {size}.")
        frontier: list[bytes] = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                frontier.append(get_node(level, start >> level))
                start += 1 << level
        return cls(size, frontier)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """The maximal complete subtree hashes, leftmost (largest) first."""
        return tuple(self._frontier)

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Add one leaf hash; returns the subtrees it completed, the leaf itself first."""
        if len(leaf_hash) != HASH_SIZE:
            raise MalformedProofError(f"A leaf hash is 32 bytes, not {len(leaf_hash)}.")
        sha = _sha256
        frontier = self._frontier
        index = self._size
        completed: list[Node] = [(0, index, leaf_hash)]
        value = leaf_hash
        level = 0
        # Each trailing one bit of the old size is a left neighbour of equal size to merge.
        while index & 1:
            value = sha(_NODE + frontier.pop() + value).digest()
            index >>= 1
            level += 1
            completed.append((level, index, value))
        frontier.append(value)
        self._size += 1
        return completed

    def extend(self, leaf_hashes: Sequence[bytes]) -> list[Node]:
        """Add many leaf hashes in order; returns every subtree they completed."""
        if leaf_hashes and set(map(len, leaf_hashes)) != {HASH_SIZE}:
            # Checked up front so a bad batch changes nothing.
            raise MalformedProofError("Every leaf hash must be exactly 32 bytes.")
        # The carry loop of `append`, inlined: this is the bulk path for big batches.
        sha = _sha256
        frontier = self._frontier
        pop, push = frontier.pop, frontier.append
        size = self._size
        completed: list[Node] = []
        record = completed.append
        for value in leaf_hashes:
            index = size
            level = 0
            record((0, index, value))
            while index & 1:
                value = sha(_NODE + pop() + value).digest()
                index >>= 1
                level += 1
                record((level, index, value))
            push(value)
            size += 1
        self._size = size
        return completed

    def root(self) -> bytes:
        """The tree's root hash, folding the frontier from the right."""
        frontier = self._frontier
        if not frontier:
            return EMPTY_ROOT
        root = frontier[-1]
        for left in reversed(frontier[:-1]):
            root = _sha256(_NODE + left + root).digest()
        return root
