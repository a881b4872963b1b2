"""Merkle commitments of the spec: the sparse Merkle tree that commits to state (full or
partial, one class, so the same code computes both roots), the ordered-list root of a batch
header's tx_root and orders_root, and the append-only withdrawal tree of the deposit kind.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from contracts_spec.crypto import keccak
from contracts_spec.errors import BadProof, WitnessIncomplete
from contracts_spec.types import Hash32, Root

# --- sparse Merkle tree: constants ---------------------------------------------------------

EMPTY: Final = bytes(32)  # the hash of an empty subtree, and the root of the empty tree
KEY_BYTES: Final = 32
KEY_BITS: Final = 256
LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"

# Multiproof byte format, version 1: VERSION, then the pruned tree in pre-order, one tag a node.
PROOF_VERSION: Final = 1
TAG_EMPTY: Final = 0  # an empty subtree
TAG_HASH: Final = 1  # + hash(32): an opaque internal node (internal by structure, see below)
TAG_PAIR: Final = 2  # + left(32) + right(32): an opaque internal node, proven internal
TAG_LEAF: Final = 3  # + key(32) + len(4, big-endian, > 0) + value: a leaf with its value
TAG_LEAF_HASH: Final = 4  # + key(32) + keccak(value)(32): a leaf with its value hash only
TAG_NODE: Final = 5  # + left + right: an internal node on a proven path
VALUE_LENGTH_BYTES: Final = 4

# Why TAG_PAIR: a deletion collapses a parent whose last other child is a single leaf, so a
# partial tree must know that an opaque sibling is an internal node, and a hash alone cannot
# show it. An opaque node needs proving (TAG_PAIR) only where its type could ever matter: when
# its on-path sibling is not EMPTY and holds no opaque node (which would keep at least two
# leaves there forever). Beside EMPTY it is internal because the tree is canonical. Everywhere
# else it is TAG_HASH. Leaves are never opaque: off the paths they are TAG_LEAF_HASH.


def leaf_hash(key: bytes, value: bytes) -> Hash32:
    return keccak(LEAF_PREFIX + key + keccak(value))


def node_hash(left: Hash32, right: Hash32) -> Hash32:
    return keccak(NODE_PREFIX + left + right)


# --- sparse Merkle tree: nodes -------------------------------------------------------------
#
# Hot path, written for speed on purpose and guarded by bench/merkle.py: slotted nodes, the
# empty subtree is None, hashes are cached on the node and cleared (None) on the path of an
# update, so that `root()` rehashes each dirty node once however many updates share it.


class _Node:
    """An internal node: at least two leaves below it."""

    __slots__ = ("left", "right", "hash")

    def __init__(self, left: _Child, right: _Child, hash_: Hash32 | None) -> None:
        self.left = left
        self.right = right
        self.hash = hash_


class _Leaf:
    """A leaf with its value, or in a partial tree with only its value hash (value None)."""

    __slots__ = ("key", "value", "vhash", "hash")

    def __init__(self, key: bytes, value: bytes | None, vhash: Hash32 | None, hash_: Hash32 | None) -> None:
        self.key = key
        self.value = value
        self.vhash = vhash
        self.hash = hash_


class _Opaque:
    """A subtree of a partial tree known only by its hash: an internal node (see TAG_PAIR)."""

    __slots__ = ("hash", "pair")

    def __init__(self, hash_: Hash32, pair: tuple[Hash32, Hash32] | None) -> None:
        self.hash = hash_
        self.pair = pair


_Child = _Node | _Leaf | _Opaque | None


def _rehash_leaf(leaf: _Leaf) -> Hash32:
    value = leaf.value
    vhash = keccak(value) if value is not None else leaf.vhash
    if vhash is None:  # pragma: no cover - a hash-only leaf always has its value hash
        raise WitnessIncomplete("leaf without value or value hash")
    h = leaf.hash = keccak(LEAF_PREFIX + leaf.key + vhash)
    return h


def _rehash(node: _Node) -> Hash32:
    """Hash of a dirty internal node; recurses only into dirty children."""
    left = node.left
    if left is None:
        lh = EMPTY
    else:
        lh = left.hash  # type: ignore[assignment]
        if lh is None:
            lh = _rehash(left) if type(left) is _Node else _rehash_leaf(left)
    right = node.right
    if right is None:
        rh = EMPTY
    else:
        rh = right.hash  # type: ignore[assignment]
        if rh is None:
            rh = _rehash(right) if type(right) is _Node else _rehash_leaf(right)
    h = node.hash = keccak(NODE_PREFIX + lh + rh)
    return h


def _hash_of(node: _Child) -> Hash32:
    if node is None:
        return EMPTY
    h = node.hash
    if h is not None:
        return h
    if type(node) is _Node:
        return _rehash(node)
    return _rehash_leaf(node)  # type: ignore[arg-type]


def _value_hash(leaf: _Leaf) -> Hash32:
    if leaf.value is not None:
        return keccak(leaf.value)
    if leaf.vhash is None:  # pragma: no cover - a hash-only leaf always has its value hash
        raise WitnessIncomplete("leaf without value or value hash")
    return leaf.vhash


def _check_key(key: bytes) -> None:
    if type(key) is not bytes or len(key) != KEY_BYTES:
        raise ValueError("a tree key is 32 bytes")


# --- sparse Merkle tree --------------------------------------------------------------------


class SparseMerkleTree:
    """A compact binary radix trie over 256-bit keys (MSB first), the binary Jellyfish form.

    Each leaf sits at the shallowest depth where no other key shares its subtree; every
    internal node has at least two leaves below it; empty subtrees hash to EMPTY. A partial
    tree (from `from_multiproof`) is the same class with opaque subtrees and hash-only leaves:
    reads and writes that would look inside them raise WitnessIncomplete.
    """

    __slots__ = ("_root", "_count")

    def __init__(self) -> None:
        self._root: _Child = None
        self._count: int | None = 0  # None in a partial tree: the opaque parts are uncounted

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_items(cls, items: Iterable[tuple[bytes, bytes]]) -> SparseMerkleTree:
        """Bulk build from (key, value) pairs; later pairs win, b"" deletes. Hashes eagerly."""
        # A bulk build allocates millions of acyclic nodes, and the cyclic collector would
        # rescan the growing heap over and over: 1e6 leaves take ~9 s paused, ~22 s not
        # (bench/merkle.py). Pausing it loses nothing, as nothing here makes a cycle.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return cls._build_from(items)
        finally:
            if collecting:
                gc.enable()

    @classmethod
    def _build_from(cls, items: Iterable[tuple[bytes, bytes]]) -> SparseMerkleTree:
        values: dict[bytes, bytes] = {}
        for key, value in items:
            _check_key(key)
            if type(value) is not bytes:
                raise ValueError("a tree value is bytes")
            if value:
                values[key] = value
            else:
                values.pop(key, None)
        ints = sorted([int.from_bytes(key, "big") for key in values])  # ints sort faster than bytes
        leaves = []
        for k in ints:
            key = k.to_bytes(KEY_BYTES, "big")
            value = values[key]
            leaves.append(_Leaf(key, value, None, keccak(LEAF_PREFIX + key + keccak(value))))
        tree = cls()
        tree._count = len(leaves)
        if len(leaves) == 1:
            tree._root = leaves[0]
        elif leaves:
            tree._root = _build(leaves, ints, 0, len(leaves), 0)
        return tree

    @classmethod
    def from_multiproof(cls, root: Root, proof: bytes) -> SparseMerkleTree:
        """The partial tree a multiproof shows; BadProof unless it is canonical and hashes to root."""
        # Verify the root is a hash
        if type(root) is not bytes or len(root) != 32:
            raise BadProof("a root is 32 bytes")
        node, count = _decode_proof(proof)
        tree = cls()
        tree._root = node
        tree._count = count
        # Verify the proof hashes to the root
        if tree.root() != root:
            raise BadProof("multiproof does not hash to the root")
        return tree

    # --- reads -----------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value at key, None if absent; WitnessIncomplete if a partial tree cannot tell."""
        _check_key(key)
        k = int.from_bytes(key, "big")
        node = self._root
        shift = KEY_BITS - 1
        while type(node) is _Node:
            node = node.right if (k >> shift) & 1 else node.left
            shift -= 1
        if node is None:
            return None
        if type(node) is _Leaf:
            if node.key != key:
                return None
            if node.value is None:
                raise WitnessIncomplete("the witness has only the hash of this leaf's value")
            return node.value
        raise WitnessIncomplete("the key's path enters a subtree the witness does not open")

    def root(self) -> Root:
        return _hash_of(self._root)

    def __len__(self) -> int:
        if self._count is None:
            raise WitnessIncomplete("a partial tree does not know its size")
        return self._count

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs in key order; WitnessIncomplete on a part a partial tree lacks."""
        stack: list[_Child] = [self._root]
        while stack:
            node = stack.pop()
            if node is None:
                continue
            if type(node) is _Node:
                stack.append(node.right)
                stack.append(node.left)
            elif type(node) is _Leaf and node.value is not None:
                yield node.key, node.value
            else:
                raise WitnessIncomplete("a partial tree cannot list what its witness hides")

    # --- writes ----------------------------------------------------------------------------

    def set(self, key: bytes, value: bytes) -> None:
        """Set key to value; b"" deletes. Hashes are recomputed lazily by `root()`."""
        if not value:
            self._delete(key)
            return
        # _check_key, inlined on the hot path; values are immutable bytes as hashes are cached
        if type(key) is not bytes or len(key) != KEY_BYTES or type(value) is not bytes:
            raise ValueError("a tree key is 32 bytes and a value is bytes")
        k = int.from_bytes(key, "big")
        node = self._root
        parent: _Node | None = None
        shift = KEY_BITS - 1
        while type(node) is _Node:
            node.hash = None
            parent = node
            node = node.right if (k >> shift) & 1 else node.left
            shift -= 1
        if type(node) is _Leaf and node.key == key:
            node.value = value
            node.vhash = None
            node.hash = None
            return
        if node is None:
            new: _Child = _Leaf(key, value, None, None)
        elif type(node) is _Leaf:
            new = _split(node, key, k, value, KEY_BITS - 1 - shift)
        else:
            raise WitnessIncomplete("the key's path enters a subtree the witness does not open")
        if self._count is not None:
            self._count += 1
        if parent is None:
            self._root = new
        elif (k >> (shift + 1)) & 1:
            parent.right = new
        else:
            parent.left = new

    def _delete(self, key: bytes) -> None:
        _check_key(key)
        k = int.from_bytes(key, "big")
        node = self._root
        path: list[_Node] = []
        shift = KEY_BITS - 1
        while type(node) is _Node:
            path.append(node)
            node = node.right if (k >> shift) & 1 else node.left
            shift -= 1
        if node is None:
            return
        if type(node) is not _Leaf:
            raise WitnessIncomplete("the key's path enters a subtree the witness does not open")
        if node.key != key:
            return
        if self._count is not None:
            self._count -= 1
        # Walk up: a parent left with one leaf and nothing else is replaced by that leaf.
        replacement: _Child = None
        while path:
            parent = path.pop()
            shift += 1
            bit = (k >> shift) & 1
            sibling = parent.left if bit else parent.right
            if replacement is None:
                if type(sibling) is _Leaf:
                    replacement = sibling
                    continue
            elif sibling is None:
                continue
            if bit:
                parent.right = replacement
            else:
                parent.left = replacement
            parent.hash = None
            for ancestor in path:
                ancestor.hash = None
            return
        self._root = replacement

    # --- proofs ----------------------------------------------------------------------------

    def multiproof(self, keys: Iterable[bytes]) -> bytes:
        """The tree pruned to the paths of keys, serialised (format: see the TAG_ constants)."""
        keys = list(keys)
        for key in keys:
            _check_key(key)
        ints = sorted({int.from_bytes(key, "big") for key in keys})
        self.root()  # refresh cached hashes
        if ints:
            body, _ = _encode_on_path(self._root, ints, 0, len(ints), 0)
        else:
            body, _ = _encode_off_path(self._root, True)
        return bytes((PROOF_VERSION,)) + body

    def prove(self, key: bytes) -> bytes:
        return self.multiproof([key])


def verify_proof(root: Root, key: bytes, value: bytes | None, proof: bytes) -> None:
    """BadProof unless proof shows key holding value under root (absence for None or b"")."""
    _check_key(key)
    tree = SparseMerkleTree.from_multiproof(root, proof)
    try:
        found = tree.get(key)
    except WitnessIncomplete as exc:
        raise BadProof("the proof does not cover the key") from exc
    # Verify the proof shows exactly the claimed value (or absence)
    if found != (value or None):
        raise BadProof("the proof shows another value for the key")


# --- sparse Merkle tree: helpers -----------------------------------------------------------


def _split(leaf: _Leaf, key: bytes, k: int, value: bytes, depth: int) -> _Node:
    """The subtree replacing `leaf` (at depth) once key is inserted beside it."""
    other = int.from_bytes(leaf.key, "big")
    fork = KEY_BITS - (k ^ other).bit_length()  # the first bit where the two keys differ
    new = _Leaf(key, value, None, None)
    if (k >> (KEY_BITS - 1 - fork)) & 1:
        sub = _Node(leaf, new, None)
    else:
        sub = _Node(new, leaf, None)
    for d in range(fork - 1, depth - 1, -1):
        sub = _Node(None, sub, None) if (k >> (KEY_BITS - 1 - d)) & 1 else _Node(sub, None, None)
    return sub


def _build(leaves: list[_Leaf], ints: list[int], lo: int, hi: int, depth: int) -> _Node:
    """The hashed subtree at depth of the sorted leaves[lo:hi], two or more."""
    first = ints[lo]
    fork = KEY_BITS - (first ^ ints[hi - 1]).bit_length()  # the first bit the range differs in
    shift = KEY_BITS - 1 - fork
    mid = bisect_left(ints, ((first >> shift) | 1) << shift, lo, hi)
    left = leaves[lo] if mid - lo == 1 else _build(leaves, ints, lo, mid, fork + 1)
    right = leaves[mid] if hi - mid == 1 else _build(leaves, ints, mid, hi, fork + 1)
    h = keccak(NODE_PREFIX + left.hash + right.hash)  # type: ignore[operator]
    node = _Node(left, right, h)
    # Above the fork, down from depth, a chain of nodes with one empty child each
    for d in range(fork - 1, depth - 1, -1):
        if (first >> (KEY_BITS - 1 - d)) & 1:
            h = keccak(NODE_PREFIX + EMPTY + h)
            node = _Node(None, node, h)
        else:
            h = keccak(NODE_PREFIX + h + EMPTY)
            node = _Node(node, None, h)
    return node


def _encode_on_path(node: _Child, ints: list[int], lo: int, hi: int, depth: int) -> tuple[bytes, bool]:
    """Encoding of a subtree on the path of ints[lo:hi], and whether it holds an opaque node."""
    if node is None:
        return bytes((TAG_EMPTY,)), False
    if type(node) is _Leaf:
        k = int.from_bytes(node.key, "big")
        i = bisect_left(ints, k, lo, hi)
        if i < hi and ints[i] == k:
            if node.value is None:
                raise WitnessIncomplete("the witness has only the hash of this leaf's value")
            length = len(node.value).to_bytes(VALUE_LENGTH_BYTES, "big")
            return bytes((TAG_LEAF,)) + node.key + length + node.value, False
        return bytes((TAG_LEAF_HASH,)) + node.key + _value_hash(node), False
    if type(node) is not _Node:
        raise WitnessIncomplete("a key's path enters a subtree the witness does not open")
    shift = KEY_BITS - 1 - depth
    mid = bisect_left(ints, ((ints[lo] >> shift) | 1) << shift, lo, hi)
    if mid == lo:
        right, right_opaque = _encode_on_path(node.right, ints, lo, hi, depth + 1)
        left, left_opaque = _encode_off_path(node.left, node.right is None or right_opaque)
    elif mid == hi:
        left, left_opaque = _encode_on_path(node.left, ints, lo, hi, depth + 1)
        right, right_opaque = _encode_off_path(node.right, node.left is None or left_opaque)
    else:
        left, left_opaque = _encode_on_path(node.left, ints, lo, mid, depth + 1)
        right, right_opaque = _encode_on_path(node.right, ints, mid, hi, depth + 1)
    return bytes((TAG_NODE,)) + left + right, left_opaque or right_opaque


def _encode_off_path(node: _Child, type_is_implied: bool) -> tuple[bytes, bool]:
    """Encoding of a subtree off every path: EMPTY, a hash-only leaf, or an opaque node."""
    if node is None:
        return bytes((TAG_EMPTY,)), False
    if type(node) is _Leaf:
        return bytes((TAG_LEAF_HASH,)) + node.key + _value_hash(node), False
    if type_is_implied:
        return bytes((TAG_HASH,)) + _hash_of(node), True
    if type(node) is _Node:
        return bytes((TAG_PAIR,)) + _hash_of(node.left) + _hash_of(node.right), True
    if type(node) is _Opaque and node.pair is not None:
        return bytes((TAG_PAIR,)) + node.pair[0] + node.pair[1], True
    raise WitnessIncomplete("the witness does not show this subtree's children")


def _decode_proof(proof: bytes) -> tuple[_Child, int | None]:
    """The partial tree in proof (unhashed) and its leaf count (None if it has opaque nodes)."""
    # Verify the version
    if type(proof) is not bytes or len(proof) < 2 or proof[0] != PROOF_VERSION:
        raise BadProof("not a version-1 multiproof")
    decoder = _ProofDecoder(proof)
    node, tag, has_opaque = decoder.node(0, 0)
    # Verify nothing trails the tree
    if decoder.pos != len(proof):
        raise BadProof("trailing bytes after the multiproof")
    # Verify an opaque root is not needlessly proven
    if tag == TAG_PAIR:
        raise BadProof("non-canonical multiproof: opaque root as a pair")
    return node, None if has_opaque else decoder.leaves


class _ProofDecoder:
    """A bounds-checked reader of the multiproof format; every failure is BadProof."""

    __slots__ = ("data", "pos", "leaves")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 1
        self.leaves = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise BadProof("truncated multiproof")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def node(self, depth: int, prefix: int) -> tuple[_Child, int, bool]:
        """The subtree at depth whose path is prefix: (node, tag, holds an opaque node)."""
        tag = self.take(1)[0]
        if tag == TAG_EMPTY:
            return None, tag, False
        if tag == TAG_HASH:
            hash_ = self.take(32)
            # Verify the opaque node is not the empty subtree in disguise
            if hash_ == EMPTY:
                raise BadProof("non-canonical multiproof: an opaque empty subtree")
            return _Opaque(hash_, None), tag, True
        if tag == TAG_PAIR:
            pair = (self.take(32), self.take(32))
            return _Opaque(node_hash(*pair), pair), tag, True
        if tag == TAG_LEAF or tag == TAG_LEAF_HASH:
            key = self.take(KEY_BYTES)
            # Verify the leaf lies on its own key's path
            if int.from_bytes(key, "big") >> (KEY_BITS - depth) != prefix:
                raise BadProof("a leaf off its key's path")
            self.leaves += 1
            if tag == TAG_LEAF_HASH:
                return _Leaf(key, None, self.take(32), None), tag, False
            length = int.from_bytes(self.take(VALUE_LENGTH_BYTES), "big")
            # Verify the value is not empty (an empty value is an absent key)
            if length == 0:
                raise BadProof("a leaf with an empty value")
            return _Leaf(key, self.take(length), None, None), tag, False
        if tag != TAG_NODE:
            raise BadProof("unknown multiproof tag")
        # Verify the node is above the deepest level (two keys differ by the last bit at most)
        if depth >= KEY_BITS:
            raise BadProof("multiproof deeper than the key length")
        left, left_tag, left_opaque = self.node(depth + 1, prefix << 1)
        right, right_tag, right_opaque = self.node(depth + 1, (prefix << 1) | 1)
        _check_canonical_node(left_tag, left_opaque, right_tag, right_opaque)
        return _Node(left, right, None), tag, left_opaque or right_opaque


_OPAQUE_TAGS: Final = (TAG_HASH, TAG_PAIR)
_LEAF_TAGS: Final = (TAG_LEAF, TAG_LEAF_HASH)


def _check_canonical_node(left_tag: int, left_opaque: bool, right_tag: int, right_opaque: bool) -> None:
    # Verify the node has two leaves below it (a lone leaf would have been lifted)
    if (left_tag == TAG_EMPTY and (right_tag == TAG_EMPTY or right_tag in _LEAF_TAGS)) or (
        right_tag == TAG_EMPTY and left_tag in _LEAF_TAGS
    ):
        raise BadProof("non-canonical multiproof: a node without two leaves")
    # Verify the node is on a path (an off-path node is opaque)
    if left_tag in _OPAQUE_TAGS and right_tag in _OPAQUE_TAGS:
        raise BadProof("non-canonical multiproof: a node with two opaque children")
    # Verify each opaque child is proven internal exactly when its type could matter
    if left_tag in _OPAQUE_TAGS:
        implied = right_tag == TAG_EMPTY or right_opaque
        if (left_tag == TAG_HASH) != implied:
            raise BadProof("non-canonical multiproof: opaque node form")
    if right_tag in _OPAQUE_TAGS:
        implied = left_tag == TAG_EMPTY or left_opaque
        if (right_tag == TAG_HASH) != implied:
            raise BadProof("non-canonical multiproof: opaque node form")


# --- ordered list root ---------------------------------------------------------------------

ZERO_HASHES_DEPTH: Final = 64


def _zero_hashes(depth: int) -> tuple[Hash32, ...]:
    """ZERO_HASHES[h]: the root of a height-h subtree of zero leaves."""
    hashes = [bytes(32)]
    for _ in range(depth):
        hashes.append(keccak(hashes[-1] + hashes[-1]))
    return tuple(hashes)


ZERO_HASHES: Final = _zero_hashes(ZERO_HASHES_DEPTH)
MAX_LIST_LENGTH: Final = 2**ZERO_HASHES_DEPTH


def _list_depth(count: int) -> int:
    """Height of the list tree: the list padded to a power of two (0 for 0 or 1 element)."""
    return max(count - 1, 0).bit_length()


def _check_hashes(hashes: Sequence[bytes]) -> list[bytes]:
    level = list(hashes)
    if len(level) > MAX_LIST_LENGTH or any(type(h) is not bytes or len(h) != 32 for h in level):
        raise ValueError("a list of at most 2**64 hashes of 32 bytes")
    return level


def _mix_count(tree_root: Hash32, count: int) -> Root:
    return keccak(tree_root + count.to_bytes(32, "big"))


def list_root(hashes: Sequence[Hash32]) -> Root:
    """Root of an ordered list of 32-byte hashes; the empty list's root is keccak(0^32 || 0^32)."""
    level = _check_hashes(hashes)
    count = len(level)
    if not level:
        return _mix_count(ZERO_HASHES[0], 0)
    for height in range(_list_depth(count)):
        if len(level) & 1:
            level.append(ZERO_HASHES[height])
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return _mix_count(level[0], count)


def list_proof(hashes: Sequence[Hash32], index: int) -> list[Hash32]:
    """Sibling hashes, bottom-up, from hashes[index] to the list's tree root."""
    level = _check_hashes(hashes)
    if not 0 <= index < len(level):
        raise IndexError("list index out of range")
    proof = []
    for height in range(_list_depth(len(level))):
        if len(level) & 1:
            level.append(ZERO_HASHES[height])
        proof.append(level[index ^ 1])
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        index >>= 1
    return proof


def verify_list_proof(root: Root, count: int, index: int, leaf_hash: Hash32, proof: Sequence[Hash32]) -> None:
    """BadProof unless proof shows leaf_hash at index of a count-long list with this root."""
    # Verify the index lies in the list and the proof has the list tree's height
    if not 0 <= index < count <= MAX_LIST_LENGTH or len(proof) != _list_depth(count):
        raise BadProof("list proof of the wrong shape")
    node = _fold_branch(leaf_hash, index, proof)
    # Verify the proof hashes to the root
    if _mix_count(node, count) != root:
        raise BadProof("list proof does not hash to the root")


def _fold_branch(leaf: Hash32, index: int, proof: Sequence[Hash32]) -> Hash32:
    # Verify every hash is 32 bytes
    if type(leaf) is not bytes or len(leaf) != 32 or any(type(h) is not bytes or len(h) != 32 for h in proof):
        raise BadProof("proof hashes are 32 bytes")
    node = leaf
    for sibling in proof:
        node = keccak(sibling + node) if index & 1 else keccak(node + sibling)
        index >>= 1
    return node


# --- append-only withdrawal tree (the deposit contract's incremental tree) -----------------

WITHDRAWAL_TREE_DEPTH: Final = 32
WITHDRAWAL_TREE_CAPACITY: Final = 2**WITHDRAWAL_TREE_DEPTH - 1
EMPTY_WITHDRAWAL_BRANCH: Final[tuple[bytes, ...]] = (bytes(32),) * WITHDRAWAL_TREE_DEPTH


def _check_branch(branch: tuple[bytes, ...], count: int) -> None:
    if len(branch) != WITHDRAWAL_TREE_DEPTH or not 0 <= count <= WITHDRAWAL_TREE_CAPACITY:
        raise ValueError("a withdrawal branch is 32 hashes and the count at most 2**32 - 1")


def withdrawal_append(branch: tuple[bytes, ...], count: int, leaf: Hash32) -> tuple[bytes, ...]:
    """The branch after appending leaf as leaf number count; O(depth), from the branch alone."""
    _check_branch(branch, count)
    if count == WITHDRAWAL_TREE_CAPACITY:
        raise ValueError("the withdrawal tree is full")
    size = count + 1
    node = leaf
    for height in range(WITHDRAWAL_TREE_DEPTH):
        if size & 1:
            return branch[:height] + (node,) + branch[height + 1 :]
        node = keccak(branch[height] + node)
        size >>= 1
    raise ValueError("the withdrawal tree is full")  # pragma: no cover - excluded by the count check


def _withdrawal_mix(node: Hash32, count: int) -> Root:
    # As the deposit contract: the count as 8 little-endian bytes, padded to 32.
    return keccak(node + count.to_bytes(8, "little") + bytes(24))


def withdrawal_root(branch: tuple[bytes, ...], count: int) -> Root:
    """Root of the first count leaves, zero-padded to 2**32, with count mixed in."""
    _check_branch(branch, count)
    node = ZERO_HASHES[0]
    size = count
    for height in range(WITHDRAWAL_TREE_DEPTH):
        node = keccak(branch[height] + node) if size & 1 else keccak(node + ZERO_HASHES[height])
        size >>= 1
    return _withdrawal_mix(node, count)


def withdrawal_proof(leaves: Sequence[Hash32], index: int) -> list[Hash32]:
    """The 32 sibling hashes, bottom-up, of leaves[index] (a full node keeps every leaf)."""
    level = _check_hashes(leaves)
    if not 0 <= index < len(level) or len(level) > WITHDRAWAL_TREE_CAPACITY:
        raise IndexError("withdrawal index out of range")
    proof = []
    for height in range(WITHDRAWAL_TREE_DEPTH):
        if len(level) & 1:
            level.append(ZERO_HASHES[height])
        proof.append(level[index ^ 1])
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        index >>= 1
    return proof


def verify_withdrawal_proof(
    root: Root, count: int, index: int, leaf: Hash32, proof: Sequence[Hash32]
) -> None:
    """BadProof unless proof shows leaf at index of the withdrawal tree of count leaves."""
    # Verify the index lies in the tree and the proof is a full branch
    if not 0 <= index < count <= WITHDRAWAL_TREE_CAPACITY or len(proof) != WITHDRAWAL_TREE_DEPTH:
        raise BadProof("withdrawal proof of the wrong shape")
    node = _fold_branch(leaf, index, proof)
    # Verify the proof hashes to the root
    if _withdrawal_mix(node, count) != root:
        raise BadProof("withdrawal proof does not hash to the root")
