"""Re-executing a batch with the spec and judging its header: the verifier's one verdict.

`judge_batch` applies the batch's data to the node's state with `contracts_spec.stf.apply_batch`
and compares the post root and every header field the data and the post-state decide. A wrong
batch leaves the state as it was. `touched_leaves` is for people (`rampart-verifier replay`):
what one transaction read and wrote, before and after.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts_spec import codec
from contracts_spec.errors import InvalidBatch, InvalidTransaction
from contracts_spec.merkle import list_root
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, Env, apply_batch, process_tx
from contracts_spec.types import Address, BatchData, BatchHeader, Hash32, Trade
from contracts_spec.witness import globals_withdrawal_root


class StateMismatch(Exception):
    """Our state is not the one the batch builds on: a fault of ours, never a verdict on the batch."""


@dataclass(frozen=True, slots=True)
class Verdict:
    valid: bool
    computed_root: bytes | None  # None when a transaction was rejected
    mismatch: dict[str, tuple[str, str]] = field(default_factory=dict)  # field -> (expected, claimed)
    rejected_index: int | None = None
    rejected_error: str | None = None
    trades: int = 0
    seconds: float = 0.0
    written: frozenset[tuple[int, bytes]] = frozenset()  # a valid batch's: every slot it wrote


def decode_body(data: bytes, max_txs: int) -> BatchData:
    """The batch's transactions and orders (the base layer refuses data that does not decode)."""
    return decode_body_and_orders(data, max_txs)[0]


def decode_body_and_orders(data: bytes, max_txs: int) -> tuple[BatchData, list[bytes]]:
    """`decode_body`, and each signed order's canonical encoding as it stands in the data."""
    body = codec.decompress_batch_data(data)
    return codec.decode_batch_body(body, max_txs), codec.signed_order_encodings(body)


def count_trades(body: BatchData) -> int:
    return sum(1 for tx in body.txs if type(tx) is Trade)


def judge_batch(
    state: State,
    header: BatchHeader,
    body: BatchData,
    env: Env,
    ids: Mapping[int, Hash32] | None = None,
    signers: Mapping[int, Address] | None = None,
    order_leaves: Sequence[Hash32] | None = None,
    recovered: Mapping[tuple[bytes, bytes], Address] | None = None,
) -> Verdict:
    """Apply the batch to `state` and judge its header. A valid batch leaves `state` at its post-
    state; an invalid one leaves `state` exactly as it was. `order_leaves`: each order's
    `codec.signed_order_hash`, and `recovered` the signers of its cancels, when derived already
    (verifier/signers.py)."""
    started = time.perf_counter()
    trades = count_trades(body)
    pre_root = state.root()
    # Verify the batch builds on our root: the base layer already holds it to its parent's post
    # root, which we verified, so a difference means our state is off, never the batch
    if pre_root != header.prev_root:
        raise StateMismatch(f"our state's root 0x{pre_root.hex()} is not the batch's prev root "
                            f"0x{header.prev_root.hex()}")
    mismatch: dict[str, tuple[str, str]] = {}
    # Verify the header commits to this data
    _compare(mismatch, "tx_count", len(body.txs), header.tx_count)
    _compare(mismatch, "tx_root", list_root([codec.tx_hash(tx) for tx in body.txs]), header.tx_root)
    if order_leaves is None:
        order_leaves = [codec.signed_order_hash(o) for o in body.orders]
    elif len(order_leaves) != len(body.orders):  # a caller's mistake, never the batch's
        raise ValueError(f"{len(order_leaves)} orders_root leaves for {len(body.orders)} orders")
    _compare(mismatch, "orders_root", list_root(order_leaves), header.orders_root)
    if mismatch:
        return Verdict(False, None, mismatch, trades=trades, seconds=time.perf_counter() - started)
    mark = len(state.undo)
    try:
        apply_batch(state, body, env, signers, ids, recovered)
    except (InvalidTransaction, InvalidBatch) as exc:
        index, error = find_rejection(state, body, env, exc)
        claimed = "0x" + header.post_root.hex()
        return Verdict(False, None, {"post_root": ("rejected", claimed)}, index, error, trades,
                       time.perf_counter() - started)
    written = frozenset(state.dirty)  # what the batch wrote: the pre-root above flushed the rest
    root = state.root()
    g = state.globals()
    _compare(mismatch, "post_root", root, header.post_root)
    _compare(mismatch, "deposits_consumed", g.deposits_consumed, header.deposits_consumed)
    _compare(mismatch, "forced_consumed", g.forced_consumed, header.forced_consumed)
    _compare(mismatch, "withdrawal_root", globals_withdrawal_root(g), header.withdrawal_root)
    if mismatch:
        undo_to(state, mark, pre_root)
        return Verdict(False, root, mismatch, trades=trades, seconds=time.perf_counter() - started)
    state.checkpoint()
    return Verdict(True, root, trades=trades, seconds=time.perf_counter() - started, written=written)


def _compare(out: dict[str, tuple[str, str]], name: str, expected: Any, claimed: Any) -> None:
    if expected != claimed:
        out[name] = (_show(expected), _show(claimed))


def _show(value: Any) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else str(value)


def undo_to(state: State, mark: int, root: bytes) -> None:
    """Undo every write after `mark`, including writes a `root()` already flushed to the tree."""
    state.rollback_to(mark)
    # Verify the state is back where it was
    if state.root() != root:
        raise RuntimeError("undo did not restore the pre-batch root")
    state.checkpoint()


def find_rejection(state: State, body: BatchData, env: Env, exc: Exception) -> tuple[int | None, str]:
    """Which transaction the rules reject, and why (the slow path: only for a wrong batch)."""
    if isinstance(exc, InvalidBatch):
        return None, f"{type(exc).__name__}: {exc}"
    orders = BatchOrders(body.orders, env.preset)
    mark = len(state.undo)
    try:
        for i, tx in enumerate(body.txs):
            try:
                process_tx(state, tx, orders, env)
            except InvalidTransaction as err:
                return i, f"{type(err).__name__}: {err}"
    finally:
        state.rollback_to(mark)
    return None, f"{type(exc).__name__}: {exc}"


# --- one transaction, for people ------------------------------------------------------------------


KIND_NAMES = {1: "account", 2: "position", 3: "order", 4: "market", 5: "globals", 6: "config"}


@dataclass(frozen=True, slots=True)
class Touched:
    kind: str
    identity: str
    before: Any  # the record before the transaction (None: absent, i.e. the default)
    after: Any  # the record after it, as the rules compute it


def touched_leaves(pre: State, tx_index: int, body: BatchData, env: Env) -> tuple[list[Touched], str | None]:
    """What transaction `tx_index` reads or writes on `pre` (the state just before it), before
    and after, and its rejection if the rules refuse it. `pre` is left as it was."""
    orders = BatchOrders(body.orders, env.preset)
    pre.root()
    mark = len(pre.undo)
    pre.reads = set()
    error: str | None = None
    try:
        process_tx(pre, body.txs[tx_index], orders, env)
    except InvalidTransaction as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        reads, pre.reads = pre.reads, None
    after = {slot: pre.records.get(slot) for slot in reads}
    pre.rollback_to(mark)
    pre.root()
    out = [Touched(KIND_NAMES.get(kind, str(kind)), "0x" + ident.hex(), pre.records.get((kind, ident)),
                   after[(kind, ident)]) for kind, ident in sorted(reads)]
    return out, error
