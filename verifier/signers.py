"""Order ids and signers for a batch, derived ahead of the STF: remembered across batches (a
resting order is filled in many batches) and, on machines with two cores or more, in worker
processes for big batches, in the background while the node executes the batch before. The
signers of the batch's cancels and cancel-alls come along the same way.

Each id is `eip712.order_digest_of_encoding` (the spec's `order_digest`, read off the order's
encoding) and each signer `crypto.recover_address`, as `BatchOrders.verify` computes them:
handing them to `apply_batch` changes where they run, never what they are. An order whose
signature does not recover is left out, so the STF itself rejects it with its named error.
Recovery dominated replay (~50 us a signature here, two fresh orders a trade, against ~70 us a
trade for the rest of the replay), so the signatures of accounts seen before are checked
together against the keys recovered earlier (`crypto.is_each_signed_by`, ~25 us a signature;
bench/verifier.py). Each order's leaf of the header's orders_root (`codec.signed_order_hash`,
the keccak of the encoding the cache is keyed by) comes along, so the node's own thread does
not hash the orders again.
"""

from __future__ import annotations

import secrets
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import Generic, TypeVar

from contracts_spec import codec, eip712
from contracts_spec.crypto import address_of_key_bytes, is_each_signed_by, keccak, recover_public_key
from contracts_spec.errors import SpecError
from contracts_spec.types import Address, Cancel, CancelAll, Hash32, Preset, SignedOrder, Trade, Tx
from l1_mock.cli_common import usable_cpus

_Known = tuple[Hash32, Address | None, Hash32]  # (order id, signer or None, orders_root leaf)
Message = tuple[Address, bytes | int, bytes]  # a cancel's (account, order id, signature), a cancel-all's (.., nonce floor, ..)
T = TypeVar("T")
R = TypeVar("R")
ACCOUNT_BYTES = 20  # a signed order's encoding starts with its account
TOGETHER_AT_LEAST = 64  # fewer orders than this are cheaper to recover one by one (bench/verifier.py)
KEYS_KEPT = 100_000  # accounts whose public key a process remembers (64 bytes each)
_PUBLIC_KEYS: dict[bytes, bytes] = {}  # account -> its public key, per process (each pool worker has its own)


def default_pool_size(cpus: int) -> int:
    """Worker processes when none are configured: every CPU but the one the node executes batches
    on, since the pool recovers the next batch's signatures meanwhile. A worker per CPU starved the
    node on a busy 2-CPU machine (bench/sustained.py: judge_batch twice as slow); one CPU, none."""
    return max(cpus - 1, 0)


def derive_encoded(preset: Preset, encoded: Sequence[bytes]) -> list[_Known]:
    """(order id, signer or None when the signature does not recover, orders_root leaf) of each
    order, from its canonical encoding: what travels to a worker (pickling bytes costs ~1/50 of
    pickling the dataclasses), and the id is read off it (`eip712.order_digest_of_encoding`: no
    Order is built)."""
    digest, signature_at = eip712.order_digest_of_encoding, -codec.SIGNATURE_BYTES
    ids = [digest(preset, b) for b in encoded]
    signers = signers_of(ids, [b[signature_at:] for b in encoded], [b[:ACCOUNT_BYTES] for b in encoded])
    return [(oid, signer, keccak(b)) for oid, signer, b in zip(ids, signers, encoded, strict=True)]


def derive_messages(preset: Preset, messages: Sequence[Message]) -> list[tuple[Hash32 | None, Address | None]]:
    """(digest, signer or None) of each cancel's or cancel-all's signed message, as the STF
    computes them (`eip712.cancel_digest`, `cancel_all_digest`, `recover_address`); (None, None)
    where the message has no digest (the STF then refuses it itself)."""
    digests: list[Hash32 | None] = []
    for account, what, _ in messages:
        try:
            digests.append(eip712.cancel_digest(preset, account, what) if isinstance(what, bytes)
                           else eip712.cancel_all_digest(preset, account, what))
        except SpecError:
            digests.append(None)
    ok = [i for i, digest in enumerate(digests) if digest is not None]
    found = signers_of([d for d in digests if d is not None], [messages[i][2] for i in ok], [messages[i][0] for i in ok])
    signers: list[Address | None] = [None] * len(messages)
    for i, signer in zip(ok, found, strict=True):
        signers[i] = signer
    return list(zip(digests, signers, strict=True))


def signers_of(digests: Sequence[Hash32], signatures: Sequence[bytes], accounts: Sequence[Address]) -> list[Address | None]:
    """`recover_address(digest, signature)` of each, None where it raises. The signatures of
    accounts whose key this process knows, two or more of them, are checked together against it
    (`crypto.is_each_signed_by`, ~2.4x cheaper a signature), and those accounts are the signers; the
    rest, and all of them if that check fails, are recovered one by one, which teaches the keys."""
    signers: list[Address | None] = [None] * len(digests)
    recover: Sequence[int] = range(len(digests))
    counts = Counter(accounts)
    keys = _PUBLIC_KEYS
    together = [i for i, account in enumerate(accounts) if counts[account] > 1 and account in keys]
    if len(together) >= TOGETHER_AT_LEAST:
        items = [(digests[i], signatures[i], keys[accounts[i]]) for i in together]
        if is_each_signed_by(items, secrets.token_bytes(32)):
            for i in together:
                signers[i] = accounts[i]
            settled = set(together)
            recover = [i for i in recover if i not in settled]
    for i in recover:
        try:
            key = recover_public_key(digests[i], signatures[i])
        except SpecError:
            continue
        signer = signers[i] = address_of_key_bytes(key)
        if signer == accounts[i] and signer not in keys:
            if len(keys) >= KEYS_KEPT:
                del keys[next(iter(keys))]
            keys[signer] = key
    return signers


class _Chunks(Generic[T, R]):
    """`derive(preset, items)`, in the pool chunk by chunk, or inline when `pool` is None."""

    def __init__(self, preset: Preset, derive: Callable[[Preset, Sequence[T]], list[R]], items: Sequence[T],
                 pool: ProcessPoolExecutor | None, size: int) -> None:
        self.preset, self.derive, self.items, self.size = preset, derive, items, size
        self.derived: list[R] | None = None
        self.futures: list[Future[list[R]]] = []
        try:
            if pool is not None:
                self.futures = [pool.submit(derive, preset, items[i : i + size]) for i in range(0, len(items), size)]
                return
        except BrokenExecutor:
            self.cancel()
            self.broken = True
        self.derived = derive(preset, items)

    def collect(self) -> list[R]:
        """The pool works through the chunks from the first; the node, now waiting for them, takes
        every chunk no worker has started from the last, so both CPUs recover until they meet. A
        worker that died (killed, out of memory) costs time: the node derives everything itself."""
        if self.derived is not None:
            return self.derived
        futures, size = self.futures, self.size
        got: list[list[R] | None] = [None] * len(futures)
        for j in range(len(futures) - 1, -1, -1):
            if not futures[j].cancel():
                break  # started: so is every chunk before it (the pool's queue is first in, first out)
            got[j] = self.derive(self.preset, self.items[j * size : (j + 1) * size])
        derived: list[R] = []
        try:
            for future, mine in zip(futures, got, strict=True):
                derived.extend(mine if mine is not None else future.result())
        except BrokenExecutor:
            derived = self.derive(self.preset, self.items)
            self.broken = True
        self.derived = derived
        return derived

    broken = False

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()


class Pending:
    """One batch's (ids, signers), derived in the background: `result()` waits for the workers,
    fills the cache and answers the same dicts every time it is called; `recovered()` the
    signers of its cancels' messages, for `apply_batch`'s `recovered`."""

    def __init__(self, owner: Signers, ids: dict[int, Hash32], signers: dict[int, Address], todo: list[int],
                 keys: list[bytes], orders: _Chunks[bytes, _Known], leaves: dict[int, Hash32],
                 messages: _Chunks[Message, tuple[Hash32 | None, Address | None]]) -> None:
        """`leaves`: the orders_root leaves known so far (of the orders not in `todo`)."""
        self.owner, self.ids, self.signers, self._leaves = owner, ids, signers, leaves
        self.todo, self.keys, self.orders, self.messages = todo, keys, orders, messages
        self.done = not todo
        self._recovered: dict[tuple[bytes, bytes], Address] | None = None

    def result(self) -> tuple[dict[int, Hash32], dict[int, Address]]:
        if not self.done:
            derived = self.orders.collect()
            if self.orders.broken:
                self.owner.close()  # a new pool next time
            ids, signers, leaves = self.ids, self.signers, self._leaves
            cache, keep = self.owner._cache, self.owner.cache_size
            for i, key, (oid, signer, leaf) in zip(self.todo, self.keys, derived, strict=True):
                ids[i], leaves[i] = oid, leaf
                if signer is not None:
                    signers[i] = signer
                if keep:
                    cache[key] = (oid, signer, leaf)
            while len(cache) > keep:
                cache.popitem(last=False)
            self.done = True
        return self.ids, self.signers

    def recovered(self) -> dict[tuple[bytes, bytes], Address]:
        """(digest, signature) -> signer of each cancel and cancel-all whose signature recovers."""
        if self._recovered is None:
            derived = self.messages.collect()
            if self.messages.broken:
                self.owner.close()
            self._recovered = {(digest, m[2]): signer for m, (digest, signer) in zip(self.messages.items, derived, strict=True)
                               if digest is not None and signer is not None}
        return self._recovered

    def leaves(self) -> list[Hash32]:
        """The orders_root leaves of the batch's orders, in order (after `result`)."""
        self.result()
        return [self._leaves[i] for i in range(len(self._leaves))]

    def cancel(self) -> None:
        """Not needed after all (the batch before it was wrong): drop what has not started."""
        self.orders.cancel()
        self.messages.cancel()
        self.done = True
        self._recovered = {}


class Signers:
    """Derives (ids, signers) for `apply_batch`: from a cache keyed by each signed order's
    canonical encoding (the signature included), the rest inline or in a process pool; and the
    signers of the batch's cancels. `submit` returns at once when a pool works, so the node
    executes one batch while the pool recovers the next (bench/sustained.py measures it)."""

    def __init__(self, preset: Preset, workers: int = 0, parallel_orders: int = 2_000, cache_size: int = 200_000,
                 chunk_orders: int = 512):
        """`workers`: 0 picks `default_pool_size`; 1 recovers inline, in the node's process; N > 1
        starts N worker processes."""
        self.preset = preset
        self.pool_size = default_pool_size(usable_cpus()) if workers == 0 else 0 if workers == 1 else workers
        self.parallel_orders = parallel_orders
        self.chunk_orders = chunk_orders
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, _Known] = OrderedDict()
        self._pool: ProcessPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def for_batch(self, orders: Sequence[SignedOrder]) -> tuple[dict[int, Hash32], dict[int, Address]]:
        return self.submit(orders).result()

    def submit(self, orders: Sequence[SignedOrder], encodings: Sequence[bytes] | None = None,
               txs: Sequence[Tx] = ()) -> Pending:
        """Start deriving a batch's ids and signers: orders seen before from the cache, the rest
        in the pool (big batches, a pool configured) or inline; and the signers of its cancels
        (`txs`: the batch's transactions). `encodings`: each order's `codec.encode_signed_order`,
        when the batch data holds them already. Given `txs`, orders no trade names get their
        orders_root leaf only: the STF never checks them, so junk among them costs nothing (and
        an order left out would only be recovered by the STF itself)."""
        ids: dict[int, Hash32] = {}
        signers: dict[int, Address] = {}
        leaves: dict[int, Hash32] = {}
        todo: list[int] = []
        keys: list[bytes] = []
        cache, encode = self._cache, codec.encode_signed_order
        traded = {i for tx in txs if type(tx) is Trade for i in (tx.maker, tx.taker)} if txs else None
        for i, so in enumerate(orders):
            key = encode(so) if encodings is None else encodings[i]
            hit = cache.get(key)
            if hit is None:
                if traded is not None and i not in traded:
                    leaves[i] = keccak(key)
                    continue
                todo.append(i)
                keys.append(key)
                continue
            cache.move_to_end(key)  # a resting order filled again: keep it longest
            ids[i], leaves[i] = hit[0], hit[2]
            if hit[1] is not None:
                signers[i] = hit[1]
        messages: list[Message] = [
            (tx.account, tx.order_id, tx.signature) if type(tx) is Cancel else (tx.account, tx.nonce_floor, tx.signature)  # type: ignore[union-attr]
            for tx in txs if type(tx) is Cancel or type(tx) is CancelAll]
        pool = None
        if len(todo) + len(messages) >= self.parallel_orders and self.pool_size:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.pool_size)
            pool = self._pool
        # small chunks: the node takes the ones no worker has started once it waits for them
        size = max(self.chunk_orders, -(-len(keys) // 64))
        return Pending(self, ids, signers, todo, keys, _Chunks(self.preset, derive_encoded, keys, pool, size), leaves,
                       _Chunks(self.preset, derive_messages, messages, pool, max(self.chunk_orders, -(-len(messages) // 64))))
