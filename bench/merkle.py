"""Benchmark of contracts_spec.merkle: the figures that guard its hot paths.

Run: `python bench/merkle.py` (add `--quick` to stop at 1e5 leaves). Prints keccak cost,
bulk-build time, cost per updated leaf against depth, root() after a 20,000-update batch on a
1e6-leaf tree (goal < 1 s) and multiproof sizes. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import gc
import random
import sys
import time

from contracts_spec.crypto import keccak
from contracts_spec.merkle import SparseMerkleTree, _Node

SIZES = (10_000, 100_000, 1_000_000)
SINGLE_UPDATES = 2_000
BATCH = 20_000


def make_key(i: int) -> bytes:
    return keccak(b"bench-key" + i.to_bytes(8, "big"))


def make_value(i: int) -> bytes:
    return keccak(b"bench-value" + i.to_bytes(8, "big")) + bytes(32)  # a 64-byte record


def leaf_depth(tree: SparseMerkleTree, key: bytes) -> int:
    """Depth of the leaf (or empty slot) a key's path ends at; reads the private trie."""
    k = int.from_bytes(key, "big")
    node = tree._root
    depth = 0
    while type(node) is _Node:
        node = node.right if (k >> (255 - depth)) & 1 else node.left
        depth += 1
    return depth


def bench_keccak() -> float:
    data = bytes(65)
    n = 200_000
    start = time.perf_counter()
    for _ in range(n):
        keccak(data)
    return (time.perf_counter() - start) / n * 1e6


def bench_size(n: int, rng: random.Random) -> SparseMerkleTree:
    items = [(make_key(i), make_value(i)) for i in range(n)]
    start = time.perf_counter()
    tree = SparseMerkleTree.from_items(items)
    build = time.perf_counter() - start
    del items
    # A long-running node freezes its loaded state so the cyclic collector stops rescanning
    # millions of acyclic nodes; without it a full collection can land inside a timed batch.
    gc.collect()
    gc.freeze()
    sample = [make_key(rng.randrange(n)) for _ in range(SINGLE_UPDATES)]
    depth = sum(leaf_depth(tree, key) for key in sample) / len(sample)

    # One update then root(): every level of the path is rehashed. Best of 3 rounds (the
    # machine may be shared).
    values = [make_value(n + j) for j in range(len(sample))]
    single = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for key, value in zip(sample, values, strict=True):
            tree.set(key, value)
            tree.root()
        single = min(single, (time.perf_counter() - start) / len(sample) * 1e6)
        values = [value[::-1] for value in values]

    # A batch of updates (half new keys, half changes), then one root(): upper levels shared.
    batch = [(make_key(n + 10_000_000 + j), make_value(j)) for j in range(BATCH // 2)]
    batch += [(make_key(rng.randrange(n)), make_value(n + j)) for j in range(BATCH // 2)]
    rng.shuffle(batch)
    start = time.perf_counter()
    for key, value in batch:
        tree.set(key, value)
    sets = time.perf_counter() - start
    start = time.perf_counter()
    tree.root()
    root = time.perf_counter() - start
    per_leaf = (sets + root) / len(batch) * 1e6

    gc.unfreeze()
    print(
        f"n={n:>9,}  from_items {build:6.2f} s  depth {depth:5.2f}  "
        f"single update+root {single:5.1f} µs/leaf ({single / depth:4.2f} µs/level)  "
        f"batch of {BATCH:,}: {per_leaf:5.1f} µs/leaf (set {sets * 1e3:5.0f} ms + root {root * 1e3:5.0f} ms "
        f"= {(sets + root) * 1e3:5.0f} ms)"
    )
    return tree


def bench_proofs(tree: SparseMerkleTree, n: int, rng: random.Random) -> None:
    one = tree.prove(make_key(rng.randrange(n)))
    absent = tree.prove(keccak(b"absent"))
    keys = [make_key(rng.randrange(n)) for _ in range(20)]
    start = time.perf_counter()
    twenty = tree.multiproof(keys)
    make = time.perf_counter() - start
    start = time.perf_counter()
    partial = SparseMerkleTree.from_multiproof(tree.root(), twenty)
    check = time.perf_counter() - start
    for key in keys:
        partial.set(key, b"updated")
    print(
        f"proofs at n={n:,}: 1 key {len(one)} B, 1 absent key {len(absent)} B, 20 keys {len(twenty)} B "
        f"(build {make * 1e3:.1f} ms, decode+verify {check * 1e3:.1f} ms)"
    )


def main() -> None:
    quick = "--quick" in sys.argv
    rng = random.Random(7)
    print(f"keccak: {bench_keccak():.2f} µs per hash (65-byte input)")
    tree = None
    n = 0
    for n in SIZES[:2] if quick else SIZES:
        tree = bench_size(n, rng)
    if tree is not None:
        bench_proofs(tree, n, rng)


if __name__ == "__main__":
    main()
