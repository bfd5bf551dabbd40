"""RFC 9162 Merkle proofs: the public transparency-dev vectors, an RFC oracle, properties."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.ledger import (
    EMPTY_ROOT,
    CompactRange,
    ConsistencyProofError,
    InclusionProofError,
    MalformedProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# transparency-dev/merkle's vectors, copied into the repo with their licence (vectors/README.md).
VECTORS = Path(__file__).resolve().parent / "vectors" / "merkle"

# The 8 leaves behind the vectors' happy paths (vectors/README.md).
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOT_OF_8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")

# One upstream vector accepts equal sizes with 12-byte "roots" ("don't care 2"): upstream's
# verifier never looks at root lengths when sizes are equal. Our rule (vectors/README.md,
# DESIGN) is that a hash that is not 32 bytes is always rejected, so we reject it on purpose.
REJECTED_ON_PURPOSE = {"consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


def _vector_files(kind: str) -> list[str]:
    return sorted(p.relative_to(VECTORS).as_posix() for p in (VECTORS / kind).rglob("*.json"))


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(data: dict[str, Any]) -> list[bytes]:
    return [_b64(p) for p in data["proof"] or []]


def _store(leaf_hashes: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    tree = CompactRange()
    store: dict[tuple[int, int], bytes] = {}
    for level, index, value in tree.extend(leaf_hashes):
        store[level, index] = value
    return store


# --- an independent oracle: RFC 9162 sections 2.1.1, 2.1.3.1 and 2.1.4.1 as written -------


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_root(hashes: Sequence[bytes]) -> bytes:
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(ref_root(hashes[:k]), ref_root(hashes[k:]))


def ref_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if m < k:
        return [*ref_path(m, hashes[:k]), ref_root(hashes[k:])]
    return [*ref_path(m - k, hashes[k:]), ref_root(hashes[:k])]


def ref_subproof(m: int, hashes: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if whole else [ref_root(hashes)]
    k = _split(n)
    if m <= k:
        return [*ref_subproof(m, hashes[:k], whole), ref_root(hashes[k:])]
    return [*ref_subproof(m - k, hashes[k:], False), ref_root(hashes[:k])]


# --- the public vectors --------------------------------------------------------------------


def test_vectors_are_present() -> None:
    assert len(_vector_files("inclusion")) > 50
    assert len(_vector_files("consistency")) > 50


@pytest.mark.parametrize("name", _vector_files("inclusion"))
def test_inclusion_vector(name: str) -> None:
    data = _load(name)
    args = (
        _b64(data["leafHash"]),
        data["leafIdx"],
        data["treeSize"],
        _proof(data),
        _b64(data["root"]),
    )
    if data["wantErr"]:
        with pytest.raises((InclusionProofError, MalformedProofError)):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("name", _vector_files("consistency"))
def test_consistency_vector(name: str) -> None:
    data = _load(name)
    args = (
        data["size1"],
        data["size2"],
        _b64(data["root1"]),
        _b64(data["root2"]),
        _proof(data),
    )
    if name in REJECTED_ON_PURPOSE:
        with pytest.raises(MalformedProofError, match="32 bytes"):
            verify_consistency(*args)
    elif data["wantErr"]:
        with pytest.raises((ConsistencyProofError, MalformedProofError)):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_equal_sizes_with_equal_real_roots_and_empty_proof_verify() -> None:
    # The 32-byte version of the vector rejected on purpose above.
    root = root_from_leaf_hashes([leaf_hash(b"x")])
    verify_consistency(1, 1, root, root, [])


def test_consistency_from_size_zero_is_rejected() -> None:
    with pytest.raises(MalformedProofError, match="non-empty tree"):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])


def test_generated_proofs_equal_the_vectors() -> None:
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    store = _store(hashes)
    assert root_from_leaf_hashes(hashes) == ROOT_OF_8
    assert CompactRange.from_nodes(8, lambda lv, i: store[lv, i]).root() == ROOT_OF_8
    happy = [n for n in _vector_files("") if n.endswith("happy-path.json")]
    assert len(happy) >= 10
    for name in happy:
        data = _load(name)
        if name.startswith("inclusion/"):
            proof = inclusion_proof(data["leafIdx"], data["treeSize"], lambda lv, i: store[lv, i])
            assert root_from_leaf_hashes(hashes[: data["treeSize"]]) == _b64(data["root"])
        else:
            proof = consistency_proof(data["size1"], data["size2"], lambda lv, i: store[lv, i])
        assert proof == _proof(data), name


# --- properties ----------------------------------------------------------------------------


def _flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@st.composite
def trees(draw: st.DrawFn, max_size: int = 300) -> list[bytes]:
    size = draw(st.integers(min_value=1, max_value=max_size))
    seed = draw(st.binary(max_size=8))
    return [leaf_hash(seed + i.to_bytes(4, "big")) for i in range(size)]


@settings(max_examples=150, deadline=None)
@given(hashes=trees(), data=st.data())
def test_inclusion_proofs_verify_and_any_bit_flip_fails(
    hashes: list[bytes], data: st.DataObject
) -> None:
    store = _store(hashes)
    size = len(hashes)
    root = root_from_leaf_hashes(hashes)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = inclusion_proof(index, size, lambda lv, i: store[lv, i])
    assert proof == ref_path(index, hashes)
    verify_inclusion(hashes[index], index, size, proof, root)

    bit = data.draw(st.integers(min_value=0, max_value=255))
    with pytest.raises(InclusionProofError):
        verify_inclusion(hashes[index], index, size, proof, _flip(root, bit))
    if proof:
        at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        tampered = [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]
        with pytest.raises(InclusionProofError):
            verify_inclusion(hashes[index], index, size, tampered, root)


@settings(max_examples=150, deadline=None)
@given(hashes=trees(), data=st.data())
def test_consistency_proofs_verify_and_any_bit_flip_fails(
    hashes: list[bytes], data: st.DataObject
) -> None:
    store = _store(hashes)
    size2 = len(hashes)
    size1 = data.draw(st.integers(min_value=1, max_value=size2))
    root1, root2 = root_from_leaf_hashes(hashes[:size1]), root_from_leaf_hashes(hashes)
    proof = consistency_proof(size1, size2, lambda lv, i: store[lv, i])
    assert proof == ref_subproof(size1, hashes, True)
    verify_consistency(size1, size2, root1, root2, proof)

    bit = data.draw(st.integers(min_value=0, max_value=255))
    with pytest.raises(ConsistencyProofError):
        verify_consistency(size1, size2, _flip(root1, bit), root2, proof)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(size1, size2, root1, _flip(root2, bit), proof)
    if proof:
        at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        tampered = [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]
        with pytest.raises(ConsistencyProofError):
            verify_consistency(size1, size2, root1, root2, tampered)


@settings(max_examples=60, deadline=None)
@given(hashes=trees())
def test_incremental_root_equals_recomputed_root(hashes: list[bytes]) -> None:
    tree = CompactRange()
    store: dict[tuple[int, int], bytes] = {}
    for n, value in enumerate(hashes, start=1):
        for level, index, node in tree.append(value):
            store[level, index] = node
        assert tree.size == n
        assert tree.root() == root_from_leaf_hashes(hashes[:n]) == ref_root(hashes[:n])
    # Every node handed to storage is the root of exactly the leaves it claims to cover.
    for (level, index), node in store.items():
        assert node == ref_root(hashes[index << level : (index + 1) << level])
    resumed = CompactRange.from_nodes(len(hashes), lambda lv, i: store[lv, i])
    assert resumed.frontier == tree.frontier
    assert CompactRange(tree.size, tree.frontier).root() == tree.root()


@settings(max_examples=300, deadline=None)
@given(
    leaf=st.binary(max_size=40),
    index=st.integers(min_value=-3, max_value=2**65),
    size=st.integers(min_value=-3, max_value=2**65),
    proof=st.lists(st.binary(min_size=30, max_size=34), max_size=70),
    root=st.binary(min_size=30, max_size=34),
)
def test_garbage_proofs_raise_only_proof_errors(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    with pytest.raises((InclusionProofError, MalformedProofError)):
        verify_inclusion(leaf, index, size, proof, root)
    # Equal sizes, no proof and equal 32-byte roots is the one garbage that may verify.
    with contextlib.suppress(ConsistencyProofError, MalformedProofError):
        verify_consistency(index, size, leaf, root, proof)


def test_empty_tree_root_and_wrong_sized_hashes() -> None:
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == CompactRange().root()
    with pytest.raises(MalformedProofError):
        root_from_leaf_hashes([b"short"])
    with pytest.raises(MalformedProofError):
        CompactRange().append(b"\x00" * 31)
    with pytest.raises(MalformedProofError):
        CompactRange(3, [EMPTY_ROOT])
    with pytest.raises(MalformedProofError):
        root_from_inclusion_proof(EMPTY_ROOT, 0, 2, [b"\x00" * 33])


def test_proof_generation_rejects_impossible_ranges() -> None:
    def no_reads(level: int, index: int) -> bytes:
        raise AssertionError("no node should be read")

    with pytest.raises(MalformedProofError):
        inclusion_proof(5, 5, no_reads)
    with pytest.raises(MalformedProofError):
        consistency_proof(0, 5, no_reads)
    with pytest.raises(MalformedProofError):
        consistency_proof(6, 5, no_reads)
    assert consistency_proof(5, 5, no_reads) == []


def test_proofs_read_logarithmically_many_nodes() -> None:
    size = 1_000_003
    reads: list[tuple[int, int]] = []

    def node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, "only complete subtrees are stored"
        reads.append((level, index))
        return leaf_hash(b"%d/%d" % (level, index))

    inclusion_proof(size - 1, size, node)
    assert len(reads) <= 2 * size.bit_length()
    reads.clear()
    consistency_proof(777_777, size, node)
    assert len(reads) <= 2 * size.bit_length()


def test_verification_is_well_under_a_millisecond() -> None:
    size, index = 1_000_000, 123_457
    proof = [leaf_hash(bytes([i])) for i in range(20)]
    root = root_from_inclusion_proof(proof[0], index, size, proof)
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        verify_inclusion(proof[0], index, size, proof, root)
    assert (time.perf_counter() - start) / rounds < 0.001


def test_a_bad_batch_changes_nothing() -> None:
    tree = CompactRange()
    tree.extend([leaf_hash(b"a"), leaf_hash(b"b")])
    before = (tree.size, tree.frontier)
    with pytest.raises(MalformedProofError):
        tree.extend([leaf_hash(b"c"), b"\x00" * 31])
    assert (tree.size, tree.frontier) == before
    assert tree.extend([]) == []
