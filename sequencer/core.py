"""The sequencer's state machine: the engine, the journal records that drive it, and the read models.

Every engine input (orders, cancels, withdrawals, deposits, forced requests, oracle prices,
clock ticks) goes through `Core.execute`, live and on replay alike, so replaying the journal
rebuilds the engine, the read models and the numbered output stream exactly. Live calls
journal the input first-in-order and hand back its sequence number: the caller acknowledges
only after `durable(seq)`. What the engine lacks (withdrawals, forced withdrawals) is wrapped
here with the spec's own rules. Runs on one thread (the event loop); no locks.
"""

from __future__ import annotations

import asyncio
import bisect
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from contracts_spec import codec, governance
from contracts_spec.errors import BadGovernanceChange
from contracts_spec.margin import ceil_div
from contracts_spec.stf import funding_rate_ppm
from contracts_spec.types import (
    INDEX_SCALE,
    PPM,
    SYSTEM_ACCOUNTS,
    Address,
    ApplyGovernance,
    Atoms,
    Cancel,
    CancelAll,
    Deposit,
    ForcedEntry,
    ForcedWithdraw,
    FundingTick,
    Genesis,
    GovernanceEntry,
    Hash32,
    Liquidate,
    OraclePrice,
    Seconds,
    SetOracleSigners,
    SignedOrder,
    Withdraw,
)
from sequencer.engine import Engine, Fill, Reject, Stp
from sequencer.journal import Journal, JournalFailed
from sequencer.rollback import Corrections, apply_corrections, decode_corrections, encode_corrections


class Kind(IntEnum):
    """Journal record kinds: one per engine input."""

    PLACE = 1
    CANCEL = 2
    CANCEL_ALL = 3
    REPLACE = 4
    WITHDRAW = 5
    DEPOSIT = 6
    FORCED = 7
    ORACLE = 8
    TICK = 9
    ROLLBACK = 10  # the batcher re-applied outputs after a lost batch: busted outputs, engine corrections
    GOVERNANCE = 11  # an effective time-locked change from the base layer's queue: ApplyGovernance


class Life(IntEnum):
    """Where a fill (or any output) stands: matched -> posted -> final, or busted."""

    MATCHED = 0
    POSTED = 1
    CHALLENGED = 2
    FINAL = 3
    BUSTED = 4


LIFE_NAMES = {Life.MATCHED: "matched", Life.POSTED: "posted", Life.CHALLENGED: "challenged",
              Life.FINAL: "final", Life.BUSTED: "busted"}

_PLACE_TAIL = struct.Struct(">BB")
_QUEUE = struct.Struct(">Q20sQ")
_GOVERNANCE = struct.Struct(">QQ")
_SIGNED_ORDER_BYTES = 132
_STPS = tuple(Stp)  # by value: Stp(n) without the enum call
_TIF_NAMES = ("GTC", "IOC", "FOK", "POST_ONLY")


@dataclass(slots=True)
class OrderInfo:
    """An accepted order as the API shows it; its live part is read from the engine."""

    id: Hash32
    signed: SignedOrder
    seq: int
    time: int
    filled: int = 0  # lots of fills not busted
    cancelled_by: str = ""  # "user", "cancel_all", "replace" when the user ended it
    busted: int = 0  # lots of its fills busted by a rollback (never re-booked)


@dataclass(slots=True)
class FillInfo:
    out: int  # number of the output in the engine's stream
    market: int
    maker: Hash32
    taker: Hash32
    maker_account: Address
    taker_account: Address
    taker_buys: bool
    lots: int
    price: int
    time: int
    maker_fee: int
    taker_fee: int


@dataclass(slots=True)
class WithdrawalInfo:
    out: int
    account: Address
    amount: int
    nonce: int | None  # None: a forced request from the base layer
    queue_index: int | None
    paid: bool  # False: a forced request the account could not afford (consumed as rejected)
    time: int
    leaf_index: int | None = None  # set when its batch is executed
    batch: int | None = None


@dataclass(slots=True)
class BatchInfo:
    """A batch cut from outputs [first_out, end_out), as the API shows it."""

    index: int
    first_out: int
    end_out: int
    dropped: frozenset[int]
    header: Any  # BatchHeader
    status: str  # built, posted, challenged, final, invalid
    l1_batch_id: int | None = None
    posted_time: int | None = None
    withdrawal_count: int = 0


def final_count(batches: list[BatchInfo], known: int = 0) -> int:
    """How many of `batches`, from the first, are final; `known`: a count found earlier, for the
    list as it was (batches become final in order and stay final, so the walk resumes there; a
    list rebuilt since, whose batch before `known` is not final, is walked from the start)."""
    n = min(known, len(batches))
    if n and batches[n - 1].status != "final":
        n = 0
    while n < len(batches) and batches[n].status == "final":
        n += 1
    return n


@dataclass(slots=True)
class Outcome:
    """What one input did: the engine's verdict and what it emitted."""

    seq: int
    reject: Reject | None
    first_out: int
    outputs: list[Any]
    extra: Any = None


@dataclass(frozen=True, slots=True)
class RollbackInfo:
    """One ROLLBACK record, as the API shows it."""

    seq: int
    time: int
    corrections: Corrections


@dataclass
class Published:
    """What becomes visible once its record is durable: feed messages, released in order."""

    seq: int
    messages: list[tuple[str, Any]] = field(default_factory=list)


class Core:
    def __init__(self, genesis: Genesis, journal: Journal | None = None) -> None:
        self.genesis = genesis
        self.preset = genesis.preset
        self.markets = {m.market_id: m for m in genesis.markets}
        self.symbols = {m.symbol: m.market_id for m in genesis.markets}
        self.engine = Engine.from_genesis(genesis)
        self.journal = journal
        self.now = int(genesis.genesis_time)
        self.seq = 0  # last record executed
        self.durable_seq = 0
        # the output stream: outputs[i - out_base] is output number i
        self.outputs: list[Any] = []
        self.out_times: list[int] = []  # the engine time each output was emitted at
        self.out_base = 0
        self.out_durable = 0
        self._out_marks: deque[tuple[int, int]] = deque()  # (seq, outputs end after it)
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._published: deque[Published] = deque()
        self.failed: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.listeners: list[Callable[[str, Any], None]] = []  # feeds, metrics: (topic, message)
        # read models
        self.orders: dict[Hash32, OrderInfo] = {}
        self.account_orders: dict[Address, list[Hash32]] = {}
        self.fills: list[FillInfo] = []
        self.account_fills: dict[Address, list[int]] = {}
        self.trades: dict[int, deque[FillInfo]] = {m: deque(maxlen=1000) for m in self.markets}
        self.withdraw_nonce: dict[Address, int] = {}
        self.withdrawals: dict[int, WithdrawalInfo] = {}  # by output number
        self.account_withdrawals: dict[Address, list[int]] = {}
        self.deposits: list[tuple[int, Address, int, int]] = []  # (queue index, account, amount, time)
        self.forced_entries: list[ForcedEntry] = []  # the bridge's forced queue as fed to the engine
        self.forced_next = 0
        self.governance_entries: list[GovernanceEntry] = []  # the base layer's governance queue as applied
        self.oracle_signers = frozenset(genesis.oracle_signers)  # the config as ApplyGovernance left it
        self.oracle_quorum = genesis.oracle_quorum
        self.governance_outs: list[tuple[int, int, bool]] = []  # (output number, time, applied) per ApplyGovernance
        self.governance_queue: dict[int, Any] = {}  # the base layer's queue as last read (governance_view.Announced)
        self.funding: dict[int, list[tuple[int, int, int]]] = {m: [] for m in self.markets}  # (time, rate, index)
        self.account_funding: dict[Address, list[tuple[int, int, int, int]]] = {}  # (time, market, lots, amount)
        self.oracle_reports: dict[int, OraclePrice] = {}
        self.batches: list[BatchInfo] = []
        self.lost_batches: list[BatchInfo] = []  # lost on the base layer, replaced by a rollback
        self.busted: set[int] = set()  # outputs the spec rejected when re-applied: never posted
        self.rollbacks: list[RollbackInfo] = []
        self.touched_levels: set[tuple[int, bool, int]] = set()  # (market, is_buy, price) since last release
        self.counters = {"orders": 0, "rejects": 0, "fills": 0}
        self._last_forced: tuple[Address, int, bool] = (b"", 0, False)

    # --- durability ---------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Live mode: journal every input and release what it published once durable."""
        self.loop = loop
        assert self.journal is not None
        self.durable_seq = self.seq
        self.out_durable = self.out_end

        def on_durable(seq: int) -> None:  # on the journal's writer thread
            loop.call_soon_threadsafe(self._on_durable, seq)

        self.journal.on_durable = on_durable
        self.journal.loop = loop

    def _on_durable(self, seq: int) -> None:
        if seq < 0:
            self.failed = self.journal.failed if self.journal else JournalFailed("journal")
            while self._waiters:
                _, fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_exception(JournalFailed(str(self.failed)))
            return
        self.durable_seq = seq
        marks = self._out_marks
        while marks and marks[0][0] <= seq:
            self.out_durable = marks.popleft()[1]
        waiters = self._waiters
        while waiters and waiters[0][0] <= seq:
            _, fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
        published = self._published
        while published and published[0].seq <= seq:
            for topic, message in published.popleft().messages:
                for listener in self.listeners:
                    listener(topic, message)

    def durable(self, seq: int) -> asyncio.Future[None]:
        """A future done once record `seq` is committed (at once if it already is)."""
        assert self.loop is not None
        fut: asyncio.Future[None] = self.loop.create_future()
        if seq <= self.durable_seq:
            fut.set_result(None)
        elif self.failed is not None:
            fut.set_exception(JournalFailed(str(self.failed)))
        else:
            self._waiters.append((seq, fut))
        return fut

    @property
    def out_end(self) -> int:
        return self.out_base + len(self.outputs)

    def output(self, number: int) -> Any:
        return self.outputs[number - self.out_base]

    def trim_outputs(self, below: int) -> None:
        """Forget outputs numbered below `below` (they are in final batches)."""
        drop = min(below, self.out_end) - self.out_base
        if drop > 0:
            del self.outputs[:drop]
            del self.out_times[:drop]
            self.out_base += drop

    # --- the one entry point -------------------------------------------------------------------

    def set_time(self, now: int) -> None:
        """The base layer's clock, as the follower last saw it; it never goes back."""
        if now > self.now:
            self.now = now

    def execute(self, kind: Kind, body: bytes, args: tuple[Any, ...], now: int | None = None) -> Outcome:
        """Run one input. Live (now=None): at the current time, journaled first. Replay: at `now`."""
        if now is None:
            if self.failed is not None:
                raise JournalFailed(str(self.failed))
            now = self.now
            if self.journal is not None and self.loop is not None:
                seq = self.journal.append(kind, now, body)
            else:
                seq = self.seq + 1
        else:
            seq = self.seq + 1
            self.now = max(self.now, now)
        self.seq = seq
        first = self.out_end
        pub = Published(seq)
        reject, extra = _HANDLERS[kind](self, now, pub, *args)
        outputs = self.engine.take()
        if outputs:
            self._absorb(outputs, now, pub)
        self._out_marks.append((seq, self.out_end))
        if pub.messages or self.touched_levels:
            pub.messages.append(("levels", None))
            self._published.append(pub)
        if self.loop is None:  # replay or a bare core: everything is as durable as it gets
            self._on_durable_replay(seq)
        return Outcome(seq, reject, first, outputs, extra)

    def _on_durable_replay(self, seq: int) -> None:
        self.durable_seq = seq
        self._out_marks.clear()
        self.out_durable = self.out_end
        self._published.clear()
        self.touched_levels.clear()

    def replay_record(self, kind: int, now: int, body: bytes) -> Outcome:
        return self.execute(Kind(kind), body, decode_args(Kind(kind), body), now=now)

    # --- handlers: (core, now, published, *args) -> (reject, extra) ----------------------------

    def _place(self, now: int, pub: Published, signed: SignedOrder, order_id: Hash32, stp: int,
               market_order: bool) -> tuple[Reject | None, Any]:
        engine = self.engine
        order = signed.order
        reject = engine.place(signed, order_id, _STPS[stp], now, market_order)
        if reject is not None:
            self.counters["rejects"] += 1
            return reject, None
        self.counters["orders"] += 1
        info = OrderInfo(order_id, signed, self.seq, now)
        self.orders[order_id] = info
        ids = self.account_orders.get(order.account)
        if ids is None:
            ids = self.account_orders[order.account] = []
        ids.append(order_id)
        if engine.order(order.account, order_id) is not None:
            self.touched_levels.add((order.market, order.is_buy, order.price))
        pub.messages.append(("order", info))
        return None, info

    def _cancel(self, now: int, pub: Published, tx: Cancel) -> tuple[Reject | None, Any]:
        resting = self.engine.order(tx.account, tx.order_id)
        reject = self.engine.cancel(tx.account, tx.order_id, tx)
        if reject is None and resting is not None:
            info = self.orders.get(tx.order_id)
            if info is not None:
                info.cancelled_by = "user"
                pub.messages.append(("order", info))
                self.touched_levels.add((info.signed.order.market, resting.is_buy, resting.price))
        return reject, None

    def _cancel_all(self, now: int, pub: Published, tx: CancelAll) -> tuple[Reject | None, Any]:
        acct = self.engine.risk.accounts.get(tx.account)
        before = list(acct.orders.values()) if acct is not None else []
        result = self.engine.cancel_all(tx.account, None, tx)
        if isinstance(result, Reject):
            return result, None
        for resting in before:
            if not resting.remaining:
                info = self.orders.get(resting.id)
                if info is not None:
                    info.cancelled_by = "cancel_all"
                    pub.messages.append(("order", info))
                    self.touched_levels.add((info.signed.order.market, resting.is_buy, resting.price))
        return None, result

    def _replace(self, now: int, pub: Published, tx: Cancel, signed: SignedOrder, order_id: Hash32,
                 stp: int) -> tuple[Reject | None, Any]:
        old = self.engine.order(tx.account, tx.order_id)
        old_info = self.orders.get(tx.order_id)
        if old is None or old_info is None:
            return Reject.UNKNOWN_ORDER, None
        old_market, old_buy, old_price = old_info.signed.order.market, old.is_buy, old.price
        reject = self.engine.replace(tx.account, tx.order_id, signed, order_id, Stp(stp), now, tx)
        if reject == Reject.UNKNOWN_ORDER or reject == Reject.WRONG_ACCOUNT:
            return reject, None
        # the old order is gone either way
        self.touched_levels.add((old_market, old_buy, old_price))
        old_info.cancelled_by = "replace"
        pub.messages.append(("order", old_info))
        if reject is not None:
            self.counters["rejects"] += 1
            return reject, None
        self.counters["orders"] += 1
        info = OrderInfo(order_id, signed, self.seq, now)
        self.orders[order_id] = info
        self.account_orders.setdefault(signed.order.account, []).append(order_id)
        if self.engine.order(signed.order.account, order_id) is not None:
            self.touched_levels.add((signed.order.market, signed.order.is_buy, signed.order.price))
        pub.messages.append(("order", info))
        return None, info

    def _withdraw(self, now: int, pub: Published, tx: Withdraw) -> tuple[Reject | None, Any]:
        """process_withdraw's checks on the engine's live state (the engine has no withdrawals)."""
        risk = self.engine.risk
        # Verify the amount, the nonce and the account, as process_withdraw does
        if tx.amount <= 0 or tx.account in SYSTEM_ACCOUNTS:
            return Reject.INVALID_AMOUNT, None
        if tx.nonce != self.withdraw_nonce.get(tx.account, 0):
            return Reject.BAD_NONCE, None
        acct = risk.accounts.get(tx.account)
        if acct is None:
            return Reject.INSUFFICIENT_MARGIN, None
        # Verify free collateral after it covers initial margin, and the worst case of every open
        # order too (E >= amount), so no resting order becomes unsafe to fill
        if risk.value(acct) - tx.amount < risk.requirement(acct, False) or risk.excess(acct) < tx.amount:
            return Reject.INSUFFICIENT_MARGIN, None
        acct.collateral -= tx.amount
        risk.touch(acct)
        self.withdraw_nonce[tx.account] = tx.nonce + 1
        risk.out.append(tx)
        return None, None

    def _deposit(self, now: int, pub: Published, index: int, account: Address, amount: int) -> tuple[Reject | None, Any]:
        reject = self.engine.deposit(account, amount, index)
        if reject is None:
            self.deposits.append((index, account, amount, now))
            pub.messages.append(("deposit", (index, account, amount, now)))
        return reject, None

    def _forced(self, now: int, pub: Published, index: int, account: Address, amount: int) -> tuple[Reject | None, Any]:
        """process_forced_withdraw on the live state: always consumed, paid only if affordable."""
        if index != self.forced_next:
            return Reject.BAD_QUEUE_INDEX, None
        self.forced_next += 1
        self.forced_entries.append(ForcedEntry(account, Atoms(amount)))
        risk = self.engine.risk
        acct = risk.accounts.get(account)
        paid = (
            amount > 0 and account not in SYSTEM_ACCOUNTS and acct is not None
            and risk.value(acct) - amount >= risk.requirement(acct, False)
        )
        if paid:
            assert acct is not None
            acct.collateral -= amount
            risk.touch(acct)
        risk.out.append(ForcedWithdraw(index))
        self._last_forced = (account, amount, paid)
        return None, self._last_forced

    def _oracle(self, now: int, pub: Published, tx: OraclePrice, price: int) -> tuple[Reject | None, Any]:
        reject = self.engine.set_oracle(tx.market, price, tx.time, tx.reports)
        if reject is None:
            pub.messages.append(("market", tx.market))
        return reject, None

    def _tick(self, now: int, pub: Published) -> tuple[Reject | None, Any]:
        self.engine.tick(now)
        self.engine.liquidations(now)
        return None, None

    def _governance(self, now: int, pub: Published, index: int, entry: GovernanceEntry) -> tuple[Reject | None, Any]:
        """process_apply_governance on the live state: the next effective change is applied at this
        output (ApplyGovernance), and the engine, the oracle intake and the read models switch to it
        there; a change the spec consumes as rejected changes nothing here either."""
        if index != len(self.governance_entries):
            return Reject.BAD_QUEUE_INDEX, None
        if now < entry.effective_time:
            return Reject.GOVERNANCE_NOT_EFFECTIVE, None
        self.governance_entries.append(entry)
        engine = self.engine
        out = self.out_end + len(engine.risk.out)  # the output number ApplyGovernance gets
        engine.risk.out.append(ApplyGovernance(index))
        applied = self._apply_change(entry, now)
        if applied:
            engine.resync(now)
        self.governance_outs.append((out, now, applied))
        pub.messages.append(("governance", (index, applied, now)))
        return None, applied

    def _apply_change(self, entry: GovernanceEntry, now: int) -> bool:
        """contracts_spec.governance.apply_change's verdict, mirrored on the engine."""
        change = entry.change
        try:
            governance.validate_change(change)
        except BadGovernanceChange:
            return False
        if isinstance(change, SetOracleSigners):
            self.oracle_signers = frozenset(change.signers)
            self.oracle_quorum = change.quorum
            return True
        params = change.params
        mid = params.market_id
        old = self.markets.get(mid)
        if old is None:
            if mid != len(self.markets):  # a new market takes the next id
                return False
            self.engine.add_market(params, now)
            self.trades[mid] = deque(maxlen=1000)
            self.funding[mid] = []
        elif old.atoms_per_lot_tick != params.atoms_per_lot_tick:
            return False
        else:
            self.engine.set_market_params(params)
            if old.symbol != params.symbol:
                self.symbols.pop(old.symbol, None)
        self.markets[mid] = params
        self.symbols[params.symbol] = mid
        return True

    def _rollback(self, now: int, pub: Published, c: Corrections) -> tuple[Reject | None, Any]:
        """The batcher's re-application after a lost batch: the base layer's bridge entries, the
        engine back on the spec's records, and every newly busted output reported."""
        for index, account, amount in c.deposits:
            t = self.deposits[index][3]
            self.deposits[index] = (index, account, amount, t)
        for index, account, amount in c.forced:
            self.forced_entries[index] = ForcedEntry(account, Atoms(amount))
        apply_corrections(self.engine, c, self.withdraw_nonce, now)
        for n in c.busted:
            if n in self.busted:
                continue
            self.busted.add(n)
            fill = self.fill_at(n)
            if fill is not None:
                for oid in (fill.maker, fill.taker):
                    info = self.orders[oid]
                    info.filled -= fill.lots
                    info.busted += fill.lots
                    pub.messages.append(("order", info))
                pub.messages.append(("busted", fill))
            w = self.withdrawals.get(n)
            if w is not None:
                w.leaf_index = w.batch = None
                pub.messages.append(("withdrawal", w))
        record = RollbackInfo(self.seq, now, c)
        self.rollbacks.append(record)
        pub.messages.append(("rollback", record))
        return None, record

    def fill_at(self, out: int) -> FillInfo | None:
        """The fill that is output number `out`, if it is a fill."""
        fills = self.fills
        i = bisect.bisect_left(fills, out, key=lambda f: f.out)
        return fills[i] if i < len(fills) and fills[i].out == out else None

    # --- outputs into read models ---------------------------------------------------------------

    def _absorb(self, outputs: list[Any], now: int, pub: Published) -> None:
        number = self.out_end
        self.outputs.extend(outputs)
        self.out_times.extend([now] * len(outputs))
        orders, markets = self.orders, self.markets
        for o in outputs:
            kind = type(o)
            if kind is Fill:
                maker, taker = orders[o.maker], orders[o.taker]
                mo = maker.signed.order
                params = markets[mo.market]
                cash = o.lots * o.price * params.atoms_per_lot_tick
                fill = FillInfo(number, mo.market, o.maker, o.taker, mo.account, taker.signed.order.account,
                                not mo.is_buy, o.lots, o.price, now, ceil_div(cash * params.maker_fee_ppm, PPM),
                                ceil_div(cash * params.taker_fee_ppm, PPM))
                maker.filled += o.lots
                taker.filled += o.lots
                position = len(self.fills)
                self.fills.append(fill)
                self.account_fills.setdefault(fill.maker_account, []).append(position)
                self.account_fills.setdefault(fill.taker_account, []).append(position)
                self.trades[mo.market].append(fill)
                self.touched_levels.add((mo.market, mo.is_buy, o.price))
                self.counters["fills"] += 1
                pub.messages.append(("fill", fill))
                pub.messages.append(("order", maker))
            elif kind is Withdraw:
                self._record_withdrawal(WithdrawalInfo(number, o.account, o.amount, o.nonce, None, True, now), pub)
            elif kind is ForcedWithdraw:
                account, amount, paid = self._last_forced
                self._record_withdrawal(WithdrawalInfo(number, account, amount, None, o.queue_index, paid, now), pub)
            elif kind is FundingTick:
                self._record_funding(o.market, now, pub)
            elif kind is Liquidate:
                pub.messages.append(("liquidation", (o.account, o.market, o.lots, o.price, now)))
                pub.messages.append(("market", o.market))
            elif kind is OraclePrice:
                self.oracle_reports[o.market] = o
            number += 1

    def _record_withdrawal(self, w: WithdrawalInfo, pub: Published) -> None:
        self.withdrawals[w.out] = w
        self.account_withdrawals.setdefault(w.account, []).append(w.out)
        pub.messages.append(("withdrawal", w))

    def _record_funding(self, market: int, now: int, pub: Published) -> None:
        record = self.engine.market_record(market)
        history = self.funding[market]
        previous = history[-1][2] if history else 0
        delta = record.funding_index - previous
        k = record.params.atoms_per_lot_tick
        rate = delta // (record.oracle_price * k) if record.oracle_price else 0
        history.append((now, rate, record.funding_index))
        # engine internals (risk.MarketRisk.holders): who held the market when it ticked
        for pos in getattr(self.engine.risk.markets[market], "holders", ()):
            if pos.lots:
                amount = -((pos.lots * delta) // INDEX_SCALE) if pos.lots * delta >= 0 else (-pos.lots * delta) // INDEX_SCALE
                self.account_funding.setdefault(pos.acct.address, []).append((now, market, pos.lots, amount))
        pub.messages.append(("market", market))

    # --- views -----------------------------------------------------------------------------------

    def order_status(self, info: OrderInfo) -> str:
        order = info.signed.order
        resting = self.engine.order(order.account, info.id)
        if resting is not None and resting.remaining:
            return "open"
        if info.filled >= order.lots:
            return "filled"
        if info.busted:
            return "busted"  # it ended on fills a rollback busted
        if info.cancelled_by:
            return "cancelled"
        if order.expiry and self.now > order.expiry:
            return "expired"
        if order.tif in (1, 2):
            return "cancelled"  # the IOC / FOK remainder
        return "cancelled"

    def remaining(self, info: OrderInfo) -> int:
        resting = self.engine.order(info.signed.order.account, info.id)
        return resting.remaining if resting is not None else 0

    def batch_of(self, out: int) -> BatchInfo | None:
        lo, hi = 0, len(self.batches)
        while lo < hi:
            mid = (lo + hi) // 2
            b = self.batches[mid]
            if out < b.first_out:
                hi = mid
            elif out >= b.end_out:
                lo = mid + 1
            else:
                return b
        return None

    def life(self, out: int) -> Life:
        if out in self.busted:
            return Life.BUSTED
        b = self.batch_of(out)
        if b is None or b.status == "built":
            return Life.MATCHED
        if b.status == "invalid" or out in b.dropped:
            return Life.BUSTED
        if b.status == "final":
            return Life.FINAL
        if b.status == "challenged":
            return Life.CHALLENGED
        return Life.POSTED

    def levels(self, market: int, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return self.engine.books[market].depth(depth)

    def level_size(self, market: int, is_buy: bool, price: int) -> int:
        book = self.engine.books[market]
        queue = (book.bids.get(-price) if is_buy else book.asks.get(price))
        if not queue:
            return 0
        now = self.now
        return sum(o.remaining for o in queue if not (o.expiry and now > o.expiry))

    def funding_rate(self, market: int) -> int:
        return funding_rate_ppm(self.engine.market_record(market))

    def margin(self, account: Address) -> dict[str, Any]:
        return self.engine.account_summary(account)

    # --- snapshots (sequencer/snapshot.py) --------------------------------------------------------

    def snapshot_fields(self) -> dict[str, Any]:
        """Every field but the runtime ones (journal, loop, listeners, waiters, what awaits its
        commit): what a snapshot stores. Shallow: serialise it before the next input runs."""
        return {k: v for k, v in vars(self).items() if k not in _RUNTIME_FIELDS}

    @classmethod
    def from_snapshot(cls, fields: dict[str, Any], journal: Journal | None) -> Core:
        """A core from `snapshot_fields()`, as a replay up to its record leaves one: every
        record durable, nothing left to publish."""
        core = cls.__new__(cls)
        vars(core).update(fields)
        core.journal = journal
        core.loop = None
        core.listeners = []
        core._waiters = deque()
        core._published = deque()
        core.failed = None
        core._on_durable_replay(core.seq)
        return core


_RUNTIME_FIELDS = frozenset({"journal", "loop", "listeners", "_waiters", "_published", "failed"})


def _place_handler(core: Core, now: int, pub: Published, *args: Any) -> tuple[Reject | None, Any]:
    return core._place(now, pub, *args)


_HANDLERS: dict[Kind, Callable[..., tuple[Reject | None, Any]]] = {
    Kind.PLACE: _place_handler,
    Kind.CANCEL: lambda c, now, pub, *a: c._cancel(now, pub, *a),
    Kind.CANCEL_ALL: lambda c, now, pub, *a: c._cancel_all(now, pub, *a),
    Kind.REPLACE: lambda c, now, pub, *a: c._replace(now, pub, *a),
    Kind.WITHDRAW: lambda c, now, pub, *a: c._withdraw(now, pub, *a),
    Kind.DEPOSIT: lambda c, now, pub, *a: c._deposit(now, pub, *a),
    Kind.FORCED: lambda c, now, pub, *a: c._forced(now, pub, *a),
    Kind.ORACLE: lambda c, now, pub, *a: c._oracle(now, pub, *a),
    Kind.TICK: lambda c, now, pub, *a: c._tick(now, pub),
    Kind.ROLLBACK: lambda c, now, pub, *a: c._rollback(now, pub, *a),
    Kind.GOVERNANCE: lambda c, now, pub, *a: c._governance(now, pub, *a),
}


# --- record bodies -------------------------------------------------------------------------------
# The body is what replay needs and nothing the engine can recompute cheaply is left out: a
# place stores the order id (its digest) so replay skips hashing; signatures are never rechecked.


def encode_place(signed: SignedOrder, order_id: Hash32, stp: int, market_order: bool) -> bytes:
    return order_id + codec.encode_signed_order(signed) + _PLACE_TAIL.pack(stp, market_order)


def encode_queue(index: int, account: Address, amount: int) -> bytes:
    return _QUEUE.pack(index, account, amount)


def encode_governance(index: int, entry: GovernanceEntry) -> bytes:
    return _GOVERNANCE.pack(index, entry.effective_time) + codec.encode_governance_change(entry.change)


def encode_oracle(tx: OraclePrice, price: int) -> bytes:
    return price.to_bytes(8, "big") + codec.encode_tx(tx)


def decode_args(kind: Kind, body: bytes) -> tuple[Any, ...]:
    if kind == Kind.PLACE:
        stp, market_order = _PLACE_TAIL.unpack_from(body, 32 + _SIGNED_ORDER_BYTES)
        return codec.decode_signed_order(body[32:32 + _SIGNED_ORDER_BYTES]), body[:32], stp, bool(market_order)
    if kind == Kind.REPLACE:
        cancel_len = len(body) - 32 - _SIGNED_ORDER_BYTES - 1
        tx = codec.decode_tx(body[:cancel_len])
        rest = body[cancel_len:]
        return tx, codec.decode_signed_order(rest[32:32 + _SIGNED_ORDER_BYTES]), rest[:32], rest[-1]
    if kind in (Kind.CANCEL, Kind.CANCEL_ALL, Kind.WITHDRAW):
        return (codec.decode_tx(body),)
    if kind in (Kind.DEPOSIT, Kind.FORCED):
        index, account, amount = _QUEUE.unpack(body)
        return index, account, Atoms(amount)
    if kind == Kind.ORACLE:
        return codec.decode_tx(body[8:]), int.from_bytes(body[:8], "big")
    if kind == Kind.ROLLBACK:
        return (decode_corrections(body),)
    if kind == Kind.GOVERNANCE:
        index, effective = _GOVERNANCE.unpack_from(body)
        change = codec.decode_governance_change(body[_GOVERNANCE.size:])
        return index, GovernanceEntry(change, Seconds(effective))
    return ()


def encode_replace(tx: Cancel, signed: SignedOrder, order_id: Hash32, stp: int) -> bytes:
    return codec.encode_tx(tx) + order_id + codec.encode_signed_order(signed) + bytes((stp,))


def tif_name(tif: int) -> str:
    return _TIF_NAMES[tif]


__all__ = ["Core", "Kind", "Life", "OrderInfo", "FillInfo", "BatchInfo", "WithdrawalInfo", "Outcome", "RollbackInfo",
           "Deposit", "encode_place", "encode_queue", "encode_governance", "encode_oracle", "encode_replace", "encode_corrections",
           "decode_args"]
