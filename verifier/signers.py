"""Order ids and signers for a batch, derived ahead of the STF: remembered across batches (a
resting order is filled in many batches) and, on machines with cores to spare, in worker
processes for big batches.

Each id is `eip712.order_digest` and each signer `crypto.recover_address`, the very functions
`BatchOrders.verify` would call: handing them to `apply_batch` changes where they run, never
what they are. An order whose signature does not recover is left out, so the STF itself
rejects it with its named error. Recovery dominates replay: ~65 us an order here, against
~40 us a trade for the rest of the STF (bench/verifier.py).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor

from contracts_spec import codec, eip712
from contracts_spec.crypto import recover_address
from contracts_spec.errors import SpecError
from contracts_spec.types import Address, Hash32, Preset, SignedOrder

_Derived = tuple[Hash32, Address | None]

# Below this many CPUs a pool only competes with the node's own process for the same cores
POOL_MIN_CPUS = 4


def derive(preset: Preset, orders: Sequence[SignedOrder]) -> list[_Derived]:
    """(order id, signer or None when the signature does not recover) per order."""
    out: list[_Derived] = []
    for so in orders:
        oid = eip712.order_digest(preset, so.order)
        try:
            signer: Address | None = recover_address(oid, so.signature)
        except SpecError:
            signer = None
        out.append((oid, signer))
    return out


def derive_encoded(preset: Preset, encoded: Sequence[bytes]) -> list[_Derived]:
    """`derive` in a worker: orders travel as their canonical encoding (pickling bytes costs
    ~1/50 of pickling the dataclasses)."""
    return derive(preset, [codec.decode_signed_order(b) for b in encoded])


class Signers:
    """Derives (ids, signers) for `apply_batch`: from a cache keyed by each signed order's
    canonical encoding (the signature included), the rest inline or in a process pool."""

    def __init__(self, preset: Preset, workers: int = 0, parallel_orders: int = 2_000, cache_size: int = 200_000):
        self.preset = preset
        cpus = os.cpu_count() or 1
        self.workers = workers or (cpus if cpus >= POOL_MIN_CPUS else 1)
        self.parallel_orders = parallel_orders
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, _Derived] = OrderedDict()
        self._pool: Executor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def for_batch(self, orders: Sequence[SignedOrder]) -> tuple[dict[int, Hash32], dict[int, Address]]:
        ids: dict[int, Hash32] = {}
        signers: dict[int, Address] = {}
        todo: list[int] = []
        keys: list[bytes] = []
        cache, encode = self._cache, codec.encode_signed_order
        for i, so in enumerate(orders):
            key = encode(so)
            hit = cache.get(key)
            if hit is None:
                todo.append(i)
                keys.append(key)
                continue
            ids[i] = hit[0]
            if hit[1] is not None:
                signers[i] = hit[1]
        for i, key, derived in zip(todo, keys, self._derive([orders[i] for i in todo], keys), strict=True):
            ids[i] = derived[0]
            if derived[1] is not None:
                signers[i] = derived[1]
            if self.cache_size:
                cache[key] = derived
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return ids, signers

    def _derive(self, orders: list[SignedOrder], encoded: list[bytes]) -> list[_Derived]:
        if len(orders) < self.parallel_orders or self.workers < 2:
            return derive(self.preset, orders)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers)
        chunks = self.workers * 4  # small enough chunks that a slow worker does not hold up the rest
        size = -(-len(encoded) // chunks)
        parts = [encoded[i : i + size] for i in range(0, len(encoded), size)]
        out: list[_Derived] = []
        for part in self._pool.map(derive_encoded, [self.preset] * len(parts), parts):
            out.extend(part)
        return out
