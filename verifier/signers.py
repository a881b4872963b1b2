"""Order ids and signers for a batch, derived ahead of the STF: in worker processes for big
batches, and remembered across batches (a resting order is filled in many batches).

Each id is `eip712.order_digest` and each signer `crypto.recover_address`, the very functions
`BatchOrders.verify` would call: handing them to `apply_batch` changes where they run, never
what they are. An order whose signature does not recover is left out, so the STF itself
rejects it with its named error. Replay is dominated by recovery (bench/verifier.py).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor

from contracts_spec import eip712
from contracts_spec.crypto import recover_address
from contracts_spec.errors import SpecError
from contracts_spec.types import Address, Hash32, Preset, SignedOrder

_Derived = tuple[Hash32, Address | None]


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


class Signers:
    """Derives (ids, signers) for `apply_batch`, in a process pool when a batch is big."""

    def __init__(self, preset: Preset, workers: int = 0, parallel_orders: int = 2_000, cache_size: int = 200_000):
        self.preset = preset
        self.workers = workers or (os.cpu_count() or 1)
        self.parallel_orders = parallel_orders
        self.cache_size = cache_size
        # (signature, order id) -> signer: keyed by the signature too, as one order
        # signed twice is two different inputs to the STF
        self._cache: OrderedDict[tuple[bytes, Hash32], Address] = OrderedDict()
        self._pool: Executor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def for_batch(self, orders: Sequence[SignedOrder]) -> tuple[dict[int, Hash32], dict[int, Address]]:
        ids: dict[int, Hash32] = {}
        signers: dict[int, Address] = {}
        todo: list[int] = []
        cache = self._cache
        for i, so in enumerate(orders):
            oid = eip712.order_digest(self.preset, so.order)
            ids[i] = oid
            signer = cache.get((so.signature, oid))
            if signer is None:
                todo.append(i)
            else:
                signers[i] = signer
        for i, (oid, signer) in zip(todo, self._derive([orders[i] for i in todo]), strict=True):
            # Verify the pool derived the id this process did (a mismatched pool is a bug, not a verdict)
            if oid != ids[i]:
                raise RuntimeError("signature worker returned another order id")
            if signer is not None:
                signers[i] = signer
                cache[(orders[i].signature, oid)] = signer
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return ids, signers

    def _derive(self, orders: list[SignedOrder]) -> list[_Derived]:
        if len(orders) < self.parallel_orders or self.workers < 2:
            return derive(self.preset, orders)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers)
        size = -(-len(orders) // self.workers)
        chunks = [orders[i : i + size] for i in range(0, len(orders), size)]
        out: list[_Derived] = []
        for part in self._pool.map(derive, [self.preset] * len(chunks), chunks):
            out.extend(part)
        return out
