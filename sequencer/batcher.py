"""The batcher: cuts the engine's durable output stream into batches, executes each with the
spec on the sequencer's own State, and posts header + compressed data + globals proof.

A batch keeps the engine's emission order (a trade may need the deposit or the oracle price
emitted before it). Its time is chosen inside every output's window: no later than any traded
order's expiry or any price's staleness, no earlier than the oracle times it carries, and
exactly a funding tick's time (the spec sets last_funding_time to the batch time, and the
engine set it to the tick's). `apply_batch` is the last word: a batch it refuses is never
posted; the refused outputs are dropped (busted) and the rest executed transaction by
transaction with `process_tx`.

The state keeps its undo log back to the first batch that is not final: `pre_state(i)` gives the
defender any pending batch's pre-state, and `reapply(i)` rolls back to it when a batch is lost.
`lock` guards the state between the event loop, the build thread and the defender's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from contracts_spec import codec, witness
from contracts_spec.crypto import keccak
from contracts_spec.errors import InvalidTransaction
from contracts_spec.merkle import list_root
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, Env, apply_batch, process_tx
from contracts_spec.types import (
    Address,
    ApplyGovernance,
    BatchData,
    BatchHeader,
    DepositEntry,
    ForcedWithdraw,
    FundingTick,
    GovernanceEntry,
    Hash32,
    Liquidate,
    Lots,
    OraclePrice,
    Seconds,
    SignedOrder,
    Ticks,
    Trade,
    Withdraw,
)
from l1_mock.client import L1Client, L1Error
from sequencer.core import BatchInfo, Core
from sequencer.engine import Fill
from sequencer.journal import BatchRow, Journal

log = logging.getLogger("rampart.batcher")

_NEVER = 1 << 62
# Lag kept from the base layer's limit: the block that takes the batch may be a little later.
_LAG_MARGIN = 30


class CoreBridge:
    """The STF's BridgeView over the queue entries the follower fed to the engine (read from the
    base layer's bridge storage): what the base layer itself will read."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def deposit(self, index: int) -> DepositEntry | None:
        deposits = self.core.deposits
        if 0 <= index < len(deposits):
            _, account, amount, _ = deposits[index]
            return DepositEntry(account, amount)  # type: ignore[arg-type]
        return None

    def forced(self, index: int) -> Any:
        entries = self.core.forced_entries
        return entries[index] if 0 <= index < len(entries) else None

    def governance(self, index: int) -> GovernanceEntry | None:
        entries = self.core.governance_entries
        return entries[index] if 0 <= index < len(entries) else None


@dataclass
class Cut:
    first_out: int
    end_out: int
    time: int
    dropped: set[int]
    outputs: list[Any]
    orders: dict[Hash32, SignedOrder]


@dataclass
class Built:
    info: BatchInfo
    data: bytes
    globals_proof: bytes
    mark: int  # state undo mark before the batch: rollback_to(mark) forgets it
    leaves: list[tuple[int, int]]  # (output number, withdrawal leaf index)


class Batcher:
    def __init__(self, core: Core, journal: Journal | None, client: L1Client | None, max_txs: int,
                 metrics: Any = None, post: bool = True) -> None:
        self.core = core
        self.journal = journal
        self.client = client
        self.preset = core.preset
        self.max_txs = min(max_txs, self.preset.max_batch_txs)
        self.metrics = metrics
        self.post_enabled = post and client is not None
        self.state = State.from_genesis(core.genesis)
        self.bridge = CoreBridge(core)
        self.next_out = 0
        self.parent_time = int(core.genesis.genesis_time)
        self.pending: Built | None = None  # built, not yet known to be on the base layer
        self.halted: str | None = None  # why posting stopped for good (nothing sets it today)
        self.lock = threading.RLock()
        self.marks: dict[int, int] = {}  # batch index -> undo mark before it (absolute: + undo_base)
        self.undo_base = 0  # undo-log entries forgotten so far (below the first batch not final)
        self.queued: list[Built] = []  # rebuilt by `reapply`, accepted, to be posted in order
        self.rollback_to: int | None = None  # a batch index from which the base layer lost our batches
        self.unrecovered: list[BatchRow] = []  # journal rows `recover` left for the rollback
        self.ours: dict[int, int | None] = {}  # base-layer batch id -> our batch index (None: lost)
        from sequencer import faults  # dev-only fault injection (RAMPART_FAULT_FILE); a no-op unless set

        faults.install(self)  # refuses to start outside the dev preset

    # --- recovery ----------------------------------------------------------------------------------

    def recover(self, rows: list[BatchRow]) -> None:
        """Re-execute the journal's batches on a fresh state (the core was replayed first).

        A batch built but never confirmed is checked against the base layer: there, it is
        posted; missing, it is forgotten and its outputs go into the next cut.
        """
        for pos, row in enumerate(rows):
            header = codec.decode_header(row.header)
            if row.status == "invalid":  # lost on the base layer before a rollback finished
                self._hold_back(rows[pos:])
                break
            if row.status == "built":
                if self._on_chain(header):
                    row = BatchRow(row.idx, row.first_out, row.end_out, row.dropped, row.header, "posted",
                                   self._l1_id(header.index), row.posted_time)
                    if self.journal is not None:
                        self.journal.save_batch(row)
                else:
                    if self.journal is not None:
                        self.journal.delete_batches_from(row.idx)
                    break
            cut = Cut(row.first_out, row.end_out, header.time, set(row.dropped),
                      [self.core.output(n) for n in range(row.first_out, row.end_out)], self.core_orders())
            try:
                built = self.build(cut, checked=True)
            except InvalidTransaction:
                if not self._is_lost(row):
                    raise
                self._hold_back(rows[pos:])  # it held a transaction the spec rejects, and was lost for it
                break
            if built.info.header.post_root != header.post_root:
                if self._is_lost(row):  # a wrong root the base layer already refuted: roll back from it
                    self.discard(built)
                    self._hold_back(rows[pos:])
                    break
                raise RuntimeError(f"replayed batch {row.idx} has root {built.info.header.post_root.hex()}, "
                                   f"the journal says {header.post_root.hex()}")
            built.info.header = header
            built.info.status = row.status
            built.info.l1_batch_id = row.l1_batch_id
            built.info.posted_time = row.posted_time
            self.accept(built)

    def _is_lost(self, row: BatchRow) -> bool:
        if self.client is None or row.l1_batch_id is None:
            return False
        return self.client.batch(row.l1_batch_id)["status"] in ("lost", "invalid")

    def _hold_back(self, rows: list[BatchRow]) -> None:
        """Rows from a lost batch on: not replayed; the rollback replaces them (built ones never
        reached the base layer and are simply forgotten)."""
        self.unrecovered = [r for r in rows if r.status != "built"]
        self.rollback_to = rows[0].idx
        for r in self.unrecovered:
            if r.l1_batch_id is not None:
                self.ours[r.l1_batch_id] = None
        log.error("batch %d was lost on the base layer: rolling back from it", rows[0].idx)

    def _on_chain(self, header: BatchHeader) -> bool:
        if self.client is None:
            return False
        try:
            view = self.client.canonical(header.index)
        except L1Error as exc:
            if exc.code == "not_found":
                return False
            raise
        return bool(view.get("header_hash") == "0x" + keccak(codec.encode_header(header)).hex())

    def _l1_id(self, index: int) -> int | None:
        assert self.client is not None
        return int(self.client.canonical(index)["batch_id"])

    def core_orders(self) -> dict[Hash32, SignedOrder]:
        return _OrderLookup(self.core)  # type: ignore[return-value]

    # --- cutting (on the event loop) --------------------------------------------------------------

    def cut(self, l1_now: int, upto: int | None = None) -> Cut | None:
        """The next batch's outputs and time, from the durable outputs not yet batched (or those
        below `upto`: a rollback re-applies outputs whose records may still be committing).
        Busted outputs are left out: a rollback reverted them in the engine for good."""
        core = self.core
        start, end = self.next_out, min(core.out_durable if upto is None else upto, self.next_out + self.max_txs)
        if end <= start:
            return None
        floor = max(self.parent_time, l1_now - self.preset.max_time_lag + _LAG_MARGIN)
        lo, hi = floor, l1_now
        records = self.state.markets()
        oracle_time = {m: rec.oracle_time for m, rec in records.items()}
        staleness = {m: rec.params.oracle_staleness for m, rec in records.items()}  # as of the batch's start
        orders = core.orders
        busted = core.busted
        dropped: set[int] = set()
        kept = 0
        n = start
        while n < end:
            if n in busted:
                dropped.add(n)
                n += 1
                continue
            o = core.output(n)
            kind = type(o)
            low, high = 0, _NEVER
            if kind is Fill:
                maker, taker = orders[o.maker].signed.order, orders[o.taker].signed.order
                high = min(maker.expiry or _NEVER, taker.expiry or _NEVER,
                           oracle_time[maker.market] + staleness[maker.market])
            elif kind is Liquidate:
                high = oracle_time[o.market] + staleness[o.market]
            elif kind is OraclePrice:
                low = o.time
            elif kind is FundingTick:
                low = high = core.out_times[n - core.out_base]
            elif kind is ApplyGovernance:
                entry = core.governance_entries[o.queue_index]
                low = entry.effective_time
            new_lo, new_hi = max(lo, low), min(hi, high)
            if new_lo > new_hi:
                if kept == 0:  # nothing fits before it: it can never be posted
                    log.error("output %d (%s) fits no batch time in [%d, %d]: dropped", n, kind.__name__, lo, hi)
                    dropped.add(n)
                    n += 1
                    continue
                end = n
                break
            lo, hi = new_lo, new_hi
            if kind is OraclePrice:
                oracle_time[o.market] = o.time
            elif kind is ApplyGovernance:
                params = getattr(entry.change, "params", None)
                if params is not None and core.markets.get(params.market_id) == params:  # applied, not rejected
                    staleness[params.market_id] = params.oracle_staleness
                    oracle_time.setdefault(params.market_id, Seconds(0))
            kept += 1
            n += 1
        if end <= start:
            return None
        return Cut(start, end, hi, dropped, [core.output(i) for i in range(start, end)], self.core_orders())

    # --- building (in a worker thread; the event loop keeps serving) -------------------------------

    def build(self, cut: Cut, checked: bool = False) -> Built:
        """Execute the cut on the state with the spec; the header and the data to post."""
        with self.lock:
            return self._build(cut, checked)

    def _build(self, cut: Cut, checked: bool) -> Built:
        started = time.perf_counter()
        index = len(self.core.batches)
        body, numbers, signers, ids = self._body(cut, cut.dropped)
        env = Env(self.preset, Seconds(cut.time), self.bridge)
        prev_root = self.state.root()
        mark = len(self.state.undo)
        w_before = self.state.globals().withdrawal_count
        try:
            apply_batch(self.state, body, env, signers=signers, ids=ids)
        except InvalidTransaction as exc:
            if checked:
                raise
            log.error("batch %d refused by the spec (%r): executing it transaction by transaction", index, exc)
            body, numbers = self._apply_each(body, numbers, env, signers, ids, cut)
        g = self.state.globals()
        leaves = self._leaves(numbers, body, w_before)
        if len(leaves) != g.withdrawal_count - w_before:  # pragma: no cover - the engine mirrors the spec
            log.error("batch %d: %d withdrawal leaves expected, the spec appended %d", index, len(leaves),
                      g.withdrawal_count - w_before)
        data = codec.encode_batch_data(body)
        header = BatchHeader(
            index=index, prev_root=prev_root, post_root=self.state.root(), tx_count=len(body.txs),
            tx_root=list_root([codec.tx_hash(t) for t in body.txs]), data_hash=keccak(data),
            deposits_consumed=g.deposits_consumed, forced_consumed=g.forced_consumed,
            withdrawal_root=witness.globals_withdrawal_root(g),
            orders_root=list_root([codec.signed_order_hash(o) for o in body.orders]), time=Seconds(cut.time),
        )
        info = BatchInfo(index, cut.first_out, cut.end_out, frozenset(cut.dropped), header, "built",
                         withdrawal_count=g.withdrawal_count)
        if self.metrics is not None:
            self.metrics.build_latency.observe(time.perf_counter() - started)
        return Built(info, data, witness.prove_globals(self.state), mark, leaves)

    def _body(self, cut: Cut, dropped: set[int]) -> tuple[BatchData, list[int], dict[int, Address], dict[int, Hash32]]:
        orders: list[SignedOrder] = []
        index_of: dict[Hash32, int] = {}
        signers: dict[int, Address] = {}
        ids: dict[int, Hash32] = {}
        txs: list[Any] = []
        numbers: list[int] = []
        lookup = cut.orders
        for n, o in enumerate(cut.outputs, cut.first_out):
            if n in dropped:
                continue
            if type(o) is Fill:
                pair = []
                for oid in (o.maker, o.taker):
                    i = index_of.get(oid)
                    if i is None:
                        signed = lookup[oid]
                        i = index_of[oid] = len(orders)
                        orders.append(signed)
                        signers[i] = signed.order.account  # checked at intake; never rechecked here
                        ids[i] = oid
                    pair.append(i)
                txs.append(Trade(pair[0], pair[1], Lots(o.lots), Ticks(o.price)))
            else:
                txs.append(o)
            numbers.append(n)
        return BatchData(tuple(orders), tuple(txs)), numbers, signers, ids

    def _apply_each(self, body: BatchData, numbers: list[int], env: Env, signers: dict[int, Address],
                    ids: dict[int, Hash32], cut: Cut) -> tuple[BatchData, list[int]]:
        orders = BatchOrders(body.orders, self.preset, signers, ids)
        for tx, n in zip(body.txs, numbers, strict=True):
            try:
                process_tx(self.state, tx, orders, env)
            except InvalidTransaction as exc:
                log.error("output %d (%s) refused by the spec: %r; dropped", n, type(tx).__name__, exc)
                cut.dropped.add(n)
                if self.metrics is not None:
                    self.metrics.dropped_txs.inc()
        rebuilt, kept, _, _ = self._body(cut, cut.dropped)
        return rebuilt, kept

    def _leaves(self, numbers: list[int], body: BatchData, count: int) -> list[tuple[int, int]]:
        leaves = []
        for n, tx in zip(numbers, body.txs, strict=True):
            if type(tx) is Withdraw or (type(tx) is ForcedWithdraw and self.core.withdrawals[n].paid):
                leaves.append((n, count))
                count += 1
        return leaves

    def discard(self, built: Built) -> None:
        """Forget a built batch that will not be posted: the state goes back to before it."""
        with self.lock:
            self.state.rollback_to(built.mark)

    # --- accepting and posting ---------------------------------------------------------------------

    def accept(self, built: Built) -> None:
        """The batch is ours for good (posted, or replayed): record it everywhere."""
        info = built.info
        core = self.core
        for n, leaf in built.leaves:
            w = core.withdrawals[n]
            w.leaf_index = leaf
            w.batch = info.index
        with self.lock:
            core.batches.append(info)
            self.marks[info.index] = built.mark + self.undo_base
            if info.l1_batch_id is not None:
                self.ours[info.l1_batch_id] = info.index
            self.next_out = info.end_out
            self.parent_time = info.header.time
        if info.status == "final":
            self.trim()

    def trim(self) -> None:
        """Forget the undo log below the first batch that is not final: no rollback and no game
        reaches below it. Only between builds (a built batch's mark is relative to the log)."""
        if self.pending is not None or self.queued:
            return
        with self.lock:
            batches = self.core.batches
            first = len(batches)
            for index in sorted(self.marks):
                if index < len(batches) and batches[index].status != "final":
                    first = index
                    break
            cut = self.marks[first] - self.undo_base if first < len(batches) else len(self.state.undo)
            if cut > 0:
                del self.state.undo[:cut]
                self.undo_base += cut
            for index in [i for i in self.marks if i < first]:
                del self.marks[index]

    def pre_state(self, index: int) -> State:
        """A copy of the state before batch `index` (one not final), from the head and the undo log.
        The lock is held only to copy the records; the tree is rebuilt outside it."""
        with self.lock:
            if not 0 <= index < len(self.core.batches) or index not in self.marks:
                raise KeyError(f"no pre-state kept for batch {index}")
            mark = self.marks[index] - self.undo_base
            records = dict(self.state.records)
            undo = self.state.undo[mark:]
        pre = State()
        pre.records, pre.dirty, pre.undo = records, set(records), undo
        pre.rollback_to(0)
        pre.root()
        pre.undo = []
        return pre

    def reapply(self, index: int, l1_now: int, upto: int) -> tuple[list[Built], list[BatchInfo]]:
        """Roll the state back to before batch `index` and rebuild every batch from there over the
        outputs below `upto`, at base-layer time `l1_now`. Outputs the spec now rejects are dropped
        (`Built.info.dropped`). Returns the rebuilt batches, accepted with status "built" and queued
        to be posted in order, and the batches they replace. Call it with no build in flight and
        `pending` discarded."""
        core = self.core
        with self.lock:
            replaced = core.batches[index:]
            if replaced:
                self.state.rollback_to(self.marks[index] - self.undo_base)
                self.next_out = replaced[0].first_out
            elif self.unrecovered and self.unrecovered[0].idx == index:
                self.next_out = self.unrecovered[0].first_out  # recover stopped here: the state is its pre-state
            del core.batches[index:]
            for i in [i for i in self.marks if i >= index]:
                del self.marks[i]
            for b in replaced:
                if b.l1_batch_id is not None:
                    self.ours[b.l1_batch_id] = None
            self.parent_time = core.batches[-1].header.time if core.batches else int(core.genesis.genesis_time)
            for w in core.withdrawals.values():
                if w.batch is not None and w.batch >= index:
                    w.leaf_index = w.batch = None
            self.queued = []
            rebuilt: list[Built] = []
            while True:
                cut = self.cut(l1_now, upto)
                if cut is None:
                    break
                built = self._build(cut, False)
                self.accept(built)
                rebuilt.append(built)
            self.queued = list(rebuilt)
        return rebuilt, replaced

    def save(self, info: BatchInfo) -> None:
        if self.journal is not None:
            dropped = tuple(sorted(info.dropped))
            self.journal.save_batch(BatchRow(info.index, info.first_out, info.end_out, dropped,
                                             codec.encode_header(info.header), info.status, info.l1_batch_id,
                                             info.posted_time))

    def post(self, built: Built) -> None:
        """Post a built batch (blocking: call from a worker thread). Raises L1Error on refusal."""
        info = built.info
        if not self.post_enabled:
            info.status = "posted"
            return
        assert self.client is not None
        started = time.perf_counter()
        receipt = self.client.post_batch(info.header, built.data, built.globals_proof)
        info.l1_batch_id = int(receipt["result"]["batch_id"])
        info.posted_time = int(receipt["time"])
        info.status = "posted"
        if self.metrics is not None:
            self.metrics.post_latency.observe(time.perf_counter() - started)
            self.metrics.batch_txs.observe(info.header.tx_count)
            self.metrics.batch_bytes.observe(len(built.data))


class _OrderLookup:
    """order id -> SignedOrder over the core's orders (no copy)."""

    def __init__(self, core: Core) -> None:
        self.orders = core.orders

    def __getitem__(self, oid: Hash32) -> SignedOrder:
        return self.orders[oid].signed
