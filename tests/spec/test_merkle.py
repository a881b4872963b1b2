"""contracts_spec.merkle: the sparse Merkle tree (full and partial), list roots, withdrawal tree."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts_spec.crypto import keccak
from contracts_spec.errors import BadProof, WitnessIncomplete
from contracts_spec.merkle import (
    EMPTY,
    EMPTY_WITHDRAWAL_BRANCH,
    PROOF_VERSION,
    TAG_EMPTY,
    TAG_HASH,
    TAG_LEAF,
    TAG_LEAF_HASH,
    TAG_NODE,
    TAG_PAIR,
    WITHDRAWAL_TREE_CAPACITY,
    WITHDRAWAL_TREE_DEPTH,
    SparseMerkleTree,
    leaf_hash,
    list_proof,
    list_root,
    node_hash,
    verify_list_proof,
    verify_proof,
    verify_withdrawal_proof,
    withdrawal_append,
    withdrawal_proof,
    withdrawal_root,
)

SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


# --- helpers -------------------------------------------------------------------------------


def key_of(i: int) -> bytes:
    return keccak(b"test-key" + i.to_bytes(8, "big"))


def key_with_prefix(bits: str, salt: int = 0) -> bytes:
    """A key whose first bits are `bits`, the rest pseudo-random: shapes the trie on purpose."""
    tail = int.from_bytes(keccak(b"tail" + bits.encode() + salt.to_bytes(8, "big")), "big")
    n = len(bits)
    k = (int(bits, 2) << (256 - n)) | (tail >> n) if n else tail
    return k.to_bytes(32, "big")


# A pool mixing uniform keys with keys that share long prefixes (deep chains in the trie).
POOL = [key_of(i) for i in range(24)] + [key_with_prefix("1011" + "0" * 20, s) for s in range(4)]
POOL += [key_with_prefix("0" * 250 + format(i, "06b")[-6:]) for i in (0, 1, 3)]

values = st.binary(min_size=1, max_size=40)
pool_items = st.dictionaries(st.sampled_from(POOL), values, max_size=len(POOL))


def tree_of(items: dict[bytes, bytes]) -> SparseMerkleTree:
    tree = SparseMerkleTree()
    for key, value in items.items():
        tree.set(key, value)
    return tree


def leaf_depths(tree: SparseMerkleTree) -> list[int]:
    """Depths of every leaf (reads the private trie: structure is what is under test)."""
    from contracts_spec.merkle import _Leaf, _Node

    depths, stack = [], [(tree._root, 0)]
    while stack:
        node, depth = stack.pop()
        if type(node) is _Node:
            stack += [(node.left, depth + 1), (node.right, depth + 1)]
        elif type(node) is _Leaf:
            depths.append(depth)
    return depths


def flipped(data: bytes, i: int, mask: int = 0xFF) -> bytes:
    return data[:i] + bytes((data[i] ^ mask,)) + data[i + 1 :]


BIG = SparseMerkleTree.from_items((key_of(i), b"value-%d" % i) for i in range(1000))


# --- the tree's shape and root -------------------------------------------------------------


def test_empty_tree() -> None:
    tree = SparseMerkleTree()
    assert tree.root() == EMPTY == bytes(32)
    assert len(tree) == 0
    assert tree.get(key_of(0)) is None
    assert list(tree.items()) == []
    assert SparseMerkleTree.from_items([]).root() == EMPTY


def test_known_roots() -> None:
    a, b, c = key_with_prefix("00"), key_with_prefix("01"), key_with_prefix("1")
    tree = SparseMerkleTree()
    tree.set(a, b"A")
    # Verify a lone key is its leaf, lifted to the root
    assert tree.root() == leaf_hash(a, b"A") == keccak(b"\x00" + a + keccak(b"A"))
    tree.set(c, b"C")
    assert tree.root() == node_hash(leaf_hash(a, b"A"), leaf_hash(c, b"C"))
    tree.set(b, b"B")
    inner = node_hash(leaf_hash(a, b"A"), leaf_hash(b, b"B"))
    assert tree.root() == keccak(b"\x01" + inner + leaf_hash(c, b"C"))
    # Two keys sharing their first two bits hang under a chain with an empty side
    d, e = key_with_prefix("110"), key_with_prefix("111")
    two = SparseMerkleTree.from_items([(d, b"D"), (e, b"E")])
    chain = node_hash(EMPTY, node_hash(leaf_hash(d, b"D"), leaf_hash(e, b"E")))
    assert two.root() == node_hash(EMPTY, chain)


def test_depth_is_logarithmic() -> None:
    depths = leaf_depths(BIG)
    assert len(depths) == len(BIG) == 1000
    assert 9 <= sum(depths) / len(depths) <= 12  # log2(1000) ~ 10
    assert max(depths) <= 22


@SETTINGS
@given(
    ops=st.lists(st.tuples(st.sampled_from(POOL), st.one_of(st.just(b""), values)), max_size=60),
    data=st.data(),
)
def test_root_is_independent_of_update_order(ops: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    tree = SparseMerkleTree()
    final: dict[bytes, bytes] = {}
    for key, value in ops:
        tree.set(key, value)
        if value:
            final[key] = value
        else:
            final.pop(key, None)
    shuffled = data.draw(st.permutations(list(final.items())))
    assert tree.root() == tree_of(dict(shuffled)).root() == SparseMerkleTree.from_items(ops).root()
    assert len(tree) == len(final)
    assert dict(tree.items()) == final
    assert [k for k, _ in tree.items()] == sorted(final)
    for key in POOL:
        assert tree.get(key) == final.get(key)


@SETTINGS
@given(items=pool_items, extra=st.sampled_from(POOL), value=values)
def test_delete_restores_the_previous_root(items: dict[bytes, bytes], extra: bytes, value: bytes) -> None:
    items.pop(extra, None)
    tree = tree_of(items)
    before = tree.root()
    tree.set(extra, value)
    assert tree.root() != before
    tree.set(extra, b"")
    assert tree.root() == before
    assert len(tree) == len(items)
    for key in list(items):
        tree.set(key, b"")
    assert tree.root() == EMPTY


def test_bulk_build_matches_incremental() -> None:
    tree = SparseMerkleTree()
    for i in range(1000):
        tree.set(key_of(i), b"value-%d" % i)
    assert tree.root() == BIG.root()
    for key, value in [(b"short", b"x"), (key_of(1), bytearray(b"x")), (key_of(1).hex(), b"x")]:
        with pytest.raises(ValueError):
            tree.set(key, value)  # type: ignore[arg-type]


# --- single-key proofs ---------------------------------------------------------------------


def path_end(tree: SparseMerkleTree, key: bytes) -> str:
    """Where a key's path ends: "empty", "leaf" (its own) or "other" (another key's leaf)."""
    from contracts_spec.merkle import _Node

    k, node, depth = int.from_bytes(key, "big"), tree._root, 0
    while type(node) is _Node:
        node = node.right if (k >> (255 - depth)) & 1 else node.left
        depth += 1
    if node is None:
        return "empty"
    return "leaf" if node.key == key else "other"  # type: ignore[union-attr]


def absent_keys(tree: SparseMerkleTree) -> tuple[bytes, bytes]:
    """An absent key whose path ends at an empty slot, and one whose path ends at another leaf."""
    found: dict[str, bytes] = {}
    for i in range(10_000, 20_000):
        found.setdefault(path_end(tree, key_of(i)), key_of(i))
        if "empty" in found and "other" in found:
            return found["empty"], found["other"]
    raise AssertionError("no absent keys found")


def test_membership_and_non_membership_proofs_verify() -> None:
    root = BIG.root()
    for i in (0, 1, 500, 999):
        verify_proof(root, key_of(i), b"value-%d" % i, BIG.prove(key_of(i)))
    at_empty, at_leaf = absent_keys(BIG)
    for key in (at_empty, at_leaf):
        verify_proof(root, key, None, BIG.prove(key))
        verify_proof(root, key, b"", BIG.prove(key))


@pytest.mark.parametrize(
    ("claimed", "valid"),
    [(b"value-7", True), (b"value-8", False), (None, False), (b"", False)],
)
def test_proof_shows_exactly_the_claimed_value(claimed: bytes | None, valid: bool) -> None:
    proof = BIG.prove(key_of(7))
    if valid:
        verify_proof(BIG.root(), key_of(7), claimed, proof)
    else:
        with pytest.raises(BadProof):
            verify_proof(BIG.root(), key_of(7), claimed, proof)


def test_proof_of_one_key_does_not_cover_another() -> None:
    with pytest.raises(BadProof):
        verify_proof(BIG.root(), key_of(8), b"value-8", BIG.prove(key_of(7)))
    at_empty, _ = absent_keys(BIG)
    with pytest.raises(BadProof):
        verify_proof(BIG.root(), key_of(7), b"value-7", BIG.prove(at_empty))


def proofs_to_tamper() -> list[tuple[str, bytes, bytes | None, bytes]]:
    at_empty, at_leaf = absent_keys(BIG)
    cases = [("member", key_of(3), b"value-3"), ("absent-at-empty", at_empty, None)]
    cases.append(("absent-at-leaf", at_leaf, None))
    return [(name, key, value, BIG.prove(key)) for name, key, value in cases]


@pytest.mark.parametrize("case", proofs_to_tamper(), ids=lambda c: c[0])
def test_tampering_with_any_byte_of_a_proof_fails(case: tuple[str, bytes, bytes | None, bytes]) -> None:
    _, key, value, proof = case
    root = BIG.root()
    verify_proof(root, key, value, proof)
    for i in range(len(proof)):
        for mask in (0x01, 0xFF):
            with pytest.raises(BadProof):
                verify_proof(root, key, value, flipped(proof, i, mask))
    for bad in (proof[:-1], proof + b"\x00", proof[:1], b"", bytes((PROOF_VERSION + 1,)) + proof[1:]):
        with pytest.raises(BadProof):
            verify_proof(root, key, value, bad)


def test_proof_against_another_root_fails() -> None:
    other = SparseMerkleTree.from_items(BIG.items())
    other.set(key_of(999), b"changed")
    proof = BIG.prove(key_of(3))
    with pytest.raises(BadProof):
        verify_proof(other.root(), key_of(3), b"value-3", proof)
    with pytest.raises(BadProof):
        SparseMerkleTree.from_multiproof(other.root(), proof)


def test_multiproof_tampering_fails() -> None:
    keys = [key_of(i) for i in (1, 2, 3, 400, 401)] + [key_of(50_000)]
    proof = BIG.multiproof(keys)
    assert BIG.multiproof(iter(keys[::-1] + keys)) == proof  # order and repeats do not matter
    root = BIG.root()
    SparseMerkleTree.from_multiproof(root, proof)
    for i in range(len(proof)):
        with pytest.raises(BadProof):
            SparseMerkleTree.from_multiproof(root, flipped(proof, i))


# --- the format ----------------------------------------------------------------------------


SHAPE = {"A1": "0000", "A2": "0001", "B": "010", "C": "011", "D": "1"}


def shaped_tree() -> tuple[SparseMerkleTree, dict[str, bytes]]:
    """root(X, D), X = node(Y, Z), Y = node(W, EMPTY), W = node(A1, A2), Z = node(B, C).

    Also E, absent with its path ending at Y's empty slot, and F, absent, one bit from C.
    """
    keys = {name: key_with_prefix(bits) for name, bits in SHAPE.items()}
    tree = SparseMerkleTree.from_items((key, name.encode()) for name, key in keys.items())
    keys["E"] = key_with_prefix("001")
    keys["F"] = (int.from_bytes(keys["C"], "big") ^ 1).to_bytes(32, "big")
    return tree, keys


def test_proof_format_by_hand() -> None:
    tree, k = shaped_tree()
    lh = {name: leaf_hash(k[name], name.encode()) for name in SHAPE}
    w = node_hash(lh["A1"], lh["A2"])
    y, z = node_hash(w, EMPTY), node_hash(lh["B"], lh["C"])
    v, one = bytes((PROOF_VERSION,)), (1).to_bytes(4, "big")
    node, empty, hash_, pair = (bytes((tag,)) for tag in (TAG_NODE, TAG_EMPTY, TAG_HASH, TAG_PAIR))
    leaf, leaf_h = bytes((TAG_LEAF,)), bytes((TAG_LEAF_HASH,))
    assert tree.root() == node_hash(node_hash(y, z), lh["D"])
    # D: its sibling X is proven internal (D's side holds no opaque node)
    assert tree.prove(k["D"]) == v + node + pair + y + z + leaf + k["D"] + one + b"D"
    # B: Y beside the leaves of Z is a pair; D is a hash-only leaf
    assert tree.prove(k["B"]) == (
        v + node + node + pair + w + EMPTY + node + leaf + k["B"] + one + b"B" + leaf_h + k["C"] + keccak(b"C")
        + leaf_h + k["D"] + keccak(b"D")
    )  # fmt: skip
    # E: W beside an empty slot and Z beside an opaque node need no pair
    assert tree.prove(k["E"]) == v + node + node + node + hash_ + w + empty + hash_ + z + leaf_h + k[
        "D"
    ] + keccak(b"D")
    # No key: the root itself, opaque
    assert tree.multiproof([]) == v + hash_ + tree.root()


@pytest.mark.parametrize(("proven", "hidden"), [("A", "B"), ("B", "A")])
def test_a_leaf_disguised_as_an_opaque_node_is_refused(proven: str, hidden: str) -> None:
    # The attack TAG_PAIR closes: hide that the proven leaf's sibling is a lone leaf, so that
    # deleting the proven leaf would not lift it and the partial tree would get a wrong root.
    k = {"A": key_with_prefix("00"), "B": key_with_prefix("01"), "C": key_with_prefix("1")}
    tree = SparseMerkleTree.from_items((key, name.encode()) for name, key in k.items())
    honest = tree.prove(k[proven])
    shown = bytes((TAG_LEAF_HASH,)) + k[hidden] + keccak(hidden.encode())
    disguised = honest.replace(shown, bytes((TAG_HASH,)) + leaf_hash(k[hidden], hidden.encode()))
    assert len(disguised) == len(honest) - 32
    with pytest.raises(BadProof):
        SparseMerkleTree.from_multiproof(tree.root(), disguised)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (bytes((TAG_NODE, TAG_EMPTY, TAG_EMPTY)), "node without leaves"),
        (bytes((TAG_HASH,)) + EMPTY, "opaque empty subtree"),
        (bytes((TAG_PAIR,)) + bytes(64), "opaque root as a pair"),
        (bytes((TAG_LEAF,)) + bytes(32) + bytes(4), "empty value"),
        (bytes((TAG_LEAF,)) + bytes(32) + (5).to_bytes(4, "big") + b"abc", "truncated value"),
        (bytes((9,)), "unknown tag"),
        (bytes((TAG_NODE,)) * 300, "too deep"),
        (
            bytes((TAG_NODE, TAG_HASH)) + bytes(31) + b"\x01" + bytes((TAG_HASH,)) + bytes(31) + b"\x02",
            "two opaque",
        ),
    ],
)
def test_malformed_proofs_are_refused(body: bytes, why: str) -> None:
    with pytest.raises(BadProof):
        SparseMerkleTree.from_multiproof(EMPTY, bytes((PROOF_VERSION,)) + body)


def test_a_leaf_off_its_path_is_refused() -> None:
    a, c = key_with_prefix("0"), key_with_prefix("1")
    tree = SparseMerkleTree.from_items([(a, b"A"), (c, b"C")])
    swapped = bytes((PROOF_VERSION, TAG_NODE, TAG_LEAF_HASH)) + c + keccak(b"C")
    swapped += bytes((TAG_LEAF_HASH,)) + a + keccak(b"A")
    with pytest.raises(BadProof):
        SparseMerkleTree.from_multiproof(node_hash(leaf_hash(c, b"C"), leaf_hash(a, b"A")), swapped)
    SparseMerkleTree.from_multiproof(tree.root(), tree.multiproof([]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_hostile_bytes_raise_only_bad_proof(data: bytes) -> None:
    for proof in (data, bytes((PROOF_VERSION,)) + data):
        with pytest.raises(BadProof):
            SparseMerkleTree.from_multiproof(BIG.root(), proof)


MUTABLE_PROOF = BIG.multiproof([key_of(i) for i in (5, 6, 7)] + [key_of(77_777)])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(MUTABLE_PROOF)),
            st.sampled_from(["set", "insert", "delete"]),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_proofs_raise_only_bad_proof(edits: list[tuple[int, str, int]]) -> None:
    proof = bytearray(MUTABLE_PROOF)
    for position, kind, byte in edits:
        i = min(position, len(proof) - 1)
        if kind == "set":
            proof[i] = byte
        elif kind == "insert":
            proof.insert(i, byte)
        else:
            del proof[i]
    if bytes(proof) == MUTABLE_PROOF:
        return
    with pytest.raises(BadProof):
        SparseMerkleTree.from_multiproof(BIG.root(), bytes(proof))


# --- partial trees -------------------------------------------------------------------------


@SETTINGS
@given(items=pool_items, data=st.data())
def test_partial_tree_tracks_the_full_tree(items: dict[bytes, bytes], data: st.DataObject) -> None:
    full = tree_of(items)
    covered = data.draw(st.lists(st.sampled_from(POOL), unique=True, max_size=8))
    proof = full.multiproof(covered)
    partial = SparseMerkleTree.from_multiproof(full.root(), proof)
    assert partial.root() == full.root()
    # Verify the partial tree re-proves its keys byte for byte
    assert partial.multiproof(covered) == proof
    for key in covered:
        assert partial.get(key) == full.get(key)
    ops = (
        data.draw(st.lists(st.tuples(st.sampled_from(covered), st.one_of(st.just(b""), values)), max_size=20))
        if covered
        else []
    )
    for key, value in ops:
        full.set(key, value)
        partial.set(key, value)
        assert partial.root() == full.root()
        assert partial.get(key) == full.get(key)
    # Keys not covered: a partial tree answers right or admits it cannot
    for key in POOL:
        if key in covered:
            continue
        try:
            assert partial.get(key) == full.get(key)
        except WitnessIncomplete:
            pass
        try:
            partial.set(key, b"probe")
        except WitnessIncomplete:
            continue
        full.set(key, b"probe")
        assert partial.root() == full.root()


def test_partial_tree_refuses_what_it_does_not_hold() -> None:
    proof = BIG.prove(key_of(10))
    partial = SparseMerkleTree.from_multiproof(BIG.root(), proof)
    incomplete = 0
    for i in range(200):
        if i == 10:
            continue
        try:
            assert partial.get(key_of(i)) is None  # only a non-member can be answered
        except WitnessIncomplete:
            incomplete += 1
            with pytest.raises(WitnessIncomplete):
                partial.set(key_of(i), b"x")
    assert incomplete >= 195
    with pytest.raises(WitnessIncomplete):
        len(partial)
    with pytest.raises(WitnessIncomplete):
        list(partial.items())
    with pytest.raises(WitnessIncomplete):
        partial.multiproof([key_of(11)])


def test_partial_tree_of_no_keys_opens_nothing() -> None:
    partial = SparseMerkleTree.from_multiproof(BIG.root(), BIG.multiproof([]))
    assert partial.root() == BIG.root()
    with pytest.raises(WitnessIncomplete):
        partial.get(key_of(0))
    with pytest.raises(WitnessIncomplete):
        partial.set(key_of(0), b"")


def shaped_cases() -> list[tuple[str, list[str], list[tuple[str, bytes]]]]:
    return [
        ("delete beside a hash-only leaf: lift it", ["B"], [("B", b"")]),
        ("delete beside a leaf: lift it two levels", ["A1"], [("A1", b"")]),
        ("delete beside an opaque node: no collapse", ["D"], [("D", b"")]),
        ("empty a side beside a proven-internal node", ["B", "C"], [("B", b""), ("C", b"")]),
        ("empty a side beside another", ["A1", "A2"], [("A2", b""), ("A1", b"")]),
        ("insert into an empty slot and delete it", ["E"], [("E", b"e"), ("E", b"")]),
        ("split a hash-only leaf, delete it blind", ["B"], [("F", b"f"), ("C", b""), ("F", b"")]),
        ("update a hash-only leaf blind", ["B"], [("C", b"c2"), ("B", b"b2")]),
        ("everything covered", list(SHAPE) + ["E", "F"], [(n, b"") for n in SHAPE] + [("E", b"e")]),
    ]


@pytest.mark.parametrize("case", shaped_cases(), ids=lambda c: c[0])
def test_partial_tree_splits_and_collapses_like_the_full_tree(
    case: tuple[str, list[str], list[tuple[str, bytes]]],
) -> None:
    _, covered, ops = case
    full, k = shaped_tree()
    partial = SparseMerkleTree.from_multiproof(full.root(), full.multiproof([k[n] for n in covered]))
    for name, value in ops:
        full.set(k[name], value)
        partial.set(k[name], value)
        assert partial.root() == full.root()


def test_partial_tree_refuses_to_open_opaque_nodes() -> None:
    full, k = shaped_tree()
    partial = SparseMerkleTree.from_multiproof(full.root(), full.prove(k["D"]))
    for name in ("A1", "B", "E"):
        with pytest.raises(WitnessIncomplete):
            partial.get(k[name])
        with pytest.raises(WitnessIncomplete):
            partial.set(k[name], b"")
    partial = SparseMerkleTree.from_multiproof(full.root(), full.prove(k["B"]))
    with pytest.raises(WitnessIncomplete):
        partial.get(k["C"])  # only its value hash is known
    assert partial.get(k["F"]) is None  # absent: its path ends at C's leaf


def test_keys_differing_only_in_the_last_bit() -> None:
    zero, one, far = bytes(32), bytes(31) + b"\x01", key_with_prefix("1")
    full = SparseMerkleTree.from_items([(zero, b"0"), (one, b"1"), (far, b"f")])
    assert sorted(leaf_depths(full)) == [1, 256, 256]
    proof = full.prove(one)
    verify_proof(full.root(), one, b"1", proof)
    partial = SparseMerkleTree.from_multiproof(full.root(), proof)
    for key, value in [(one, b""), (zero, b""), (one, b"back"), (zero, b"z")]:
        full.set(key, value)
        partial.set(key, value)
        assert partial.root() == full.root()
    assert sorted(leaf_depths(full)) == [1, 256, 256]


# --- ordered list root ---------------------------------------------------------------------


def naive_list_root(hashes: list[bytes]) -> bytes:
    width = 1
    while width < len(hashes):
        width *= 2
    level = hashes + [bytes(32)] * (width - len(hashes))
    if not level:
        level = [bytes(32)]
    while len(level) > 1:
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return keccak(level[0] + len(hashes).to_bytes(32, "big"))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_list_root_and_proofs(n: int) -> None:
    hashes = [keccak(b"tx%d" % i) for i in range(n)]
    root = list_root(hashes)
    assert root == naive_list_root(hashes)
    for index in range(n):
        proof = list_proof(hashes, index)
        verify_list_proof(root, n, index, hashes[index], proof)
        # Verify a wrong index, count or leaf fails
        for bad_index, bad_count in [(index ^ 1, n), (index, n + 1), (n, n)]:
            if (bad_index, bad_count) != (index, n):
                with pytest.raises(BadProof):
                    verify_list_proof(root, bad_count, bad_index, hashes[index], proof)
        with pytest.raises(BadProof):
            verify_list_proof(root, n, index, keccak(b"other"), proof)
        # Verify tampering with any byte of the proof fails
        for j in range(len(proof)):
            for i in range(32):
                tampered = [*proof[:j], flipped(proof[j], i), *proof[j + 1 :]]
                with pytest.raises(BadProof):
                    verify_list_proof(root, n, index, hashes[index], tampered)
        with pytest.raises(BadProof):
            verify_list_proof(root, n, index, hashes[index], [*proof, bytes(32)])


def test_list_roots_of_different_lengths_differ() -> None:
    a = keccak(b"a")
    roots = {list_root([]), list_root([a]), list_root([a, bytes(32)]), list_root([a, bytes(32), bytes(32)])}
    assert len(roots) == 4
    assert list_root([]) == keccak(bytes(32) + bytes(32))


# --- withdrawal tree -----------------------------------------------------------------------


def naive_withdrawal_root(leaves: list[bytes]) -> bytes:
    zero = bytes(32)
    level = list(leaves)
    for _ in range(WITHDRAWAL_TREE_DEPTH):
        if len(level) % 2:
            level.append(zero)
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)] or []
        zero = keccak(zero + zero)
    top = level[0] if level else zero
    return keccak(top + len(leaves).to_bytes(8, "little") + bytes(24))


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(0, 40))
def test_withdrawal_tree_incremental_root(n: int) -> None:
    leaves = [keccak(b"w%d" % i) for i in range(n)]
    branch = EMPTY_WITHDRAWAL_BRANCH
    assert len(branch) == WITHDRAWAL_TREE_DEPTH
    for count, leaf in enumerate(leaves):
        assert withdrawal_root(branch, count) == naive_withdrawal_root(leaves[:count])
        branch = withdrawal_append(branch, count, leaf)
        assert len(branch) == WITHDRAWAL_TREE_DEPTH
    assert withdrawal_root(branch, n) == naive_withdrawal_root(leaves)


def test_withdrawal_proofs() -> None:
    leaves = [keccak(b"w%d" % i) for i in range(13)]
    branch = EMPTY_WITHDRAWAL_BRANCH
    for count, leaf in enumerate(leaves):
        branch = withdrawal_append(branch, count, leaf)
    root = withdrawal_root(branch, len(leaves))
    for index in (0, 5, 12):
        proof = withdrawal_proof(leaves, index)
        assert len(proof) == WITHDRAWAL_TREE_DEPTH
        verify_withdrawal_proof(root, len(leaves), index, leaves[index], proof)
        for bad_index, bad_count in [(index ^ 1, 13), (index, 14), (13, 13)]:
            with pytest.raises(BadProof):
                verify_withdrawal_proof(root, bad_count, bad_index, leaves[index], proof)
        for j in range(len(proof)):
            for i in (0, 17, 31):
                with pytest.raises(BadProof):
                    verify_withdrawal_proof(
                        root, 13, index, leaves[index], [*proof[:j], flipped(proof[j], i), *proof[j + 1 :]]
                    )
        with pytest.raises(BadProof):
            verify_withdrawal_proof(root, 13, index, leaves[index], proof[:-1])


def test_withdrawal_tree_bounds() -> None:
    assert withdrawal_root(EMPTY_WITHDRAWAL_BRANCH, 0) == naive_withdrawal_root([])
    with pytest.raises(ValueError):
        withdrawal_append(EMPTY_WITHDRAWAL_BRANCH, WITHDRAWAL_TREE_CAPACITY, keccak(b"x"))
    with pytest.raises(ValueError):
        withdrawal_append(EMPTY_WITHDRAWAL_BRANCH[:-1], 0, keccak(b"x"))
