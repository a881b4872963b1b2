"""Dev-only fault injection for the challenge-game harness: a sequencer that cheats on purpose.

With RAMPART_FAULT_FILE set (refused at startup outside the dev preset), `install` wraps the
batcher's `post`. Each fault the file lists is told once, in the first batch that holds what it
needs: the sequencer builds its honest batch, corrupts it (an extra or edited transaction, or a
post-state record changed with no transaction behind it), posts that, waits for the base layer to
decide, and then posts its honest batch in its place. Nothing here weakens contracts_spec: a
transaction the rules reject is "applied" by writing state records directly.

The fault file is JSON {"faults": [{"id", "kind", "params", "defend"}, ...]}; what happened is
appended to "<fault file>.log" as JSON lines (injected, posted, refused, lost, reposted, ...),
with the records the lie wrote, so a defender can rebuild the liar's trace (`LieTrace`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from contracts_spec import codec, eip712, stf, witness
from contracts_spec.crypto import keccak
from contracts_spec.dispute import OrderProof, StepProof
from contracts_spec.errors import (
    HealthyAccount,
    InsufficientMargin,
    InvalidTransaction,
    OrderCancelled,
    Overfill,
)
from contracts_spec.margin import ceil_div, fee, owed_atoms
from contracts_spec.merkle import list_proof, list_root
from contracts_spec.state import ACCOUNT, CONFIG, GLOBALS, MARKET, ORDER, POSITION, State
from contracts_spec.stf import BatchOrders, Env, median_price, process_tx
from contracts_spec.types import (
    FEE_ACCOUNT,
    INDEX_SCALE,
    INSURANCE_FUND,
    PPM,
    Account,
    BatchData,
    BatchHeader,
    Cancel,
    Deposit,
    FundingTick,
    Globals,
    Liquidate,
    Lots,
    OraclePrice,
    Order,
    OrderStatus,
    Position,
    Ppm,
    Preset,
    Root,
    Seconds,
    SignedOrder,
    Ticks,
    TimeInForce,
    Trade,
    Tx,
    Withdraw,
)

log = logging.getLogger("rampart.faults")

FAULT_FILE_ENV = "RAMPART_FAULT_FILE"
WAIT_LIMIT = 900.0  # wall seconds a told lie waits for the base layer's verdict before giving up

Slot = tuple[int, bytes]
Writes = tuple[tuple[Slot, Any], ...]  # records a lie writes (None: the kind's default record)


# --- the lie ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lie:
    """A corrupted batch: `body` is posted; after txs[at] (or instead of it, when the rules reject
    it) the liar's books hold `writes`."""

    body: BatchData
    at: int
    rejected: bool
    writes: Writes
    what: str


_DEFAULTS: dict[int, Any] = {ACCOUNT: Account(), POSITION: Position(), ORDER: OrderStatus(), GLOBALS: Globals()}
_DECODE: dict[int, Callable[[bytes], Any]] = {
    ACCOUNT: codec.decode_account, POSITION: codec.decode_position, ORDER: codec.decode_order_status,
    MARKET: codec.decode_market, GLOBALS: codec.decode_globals, CONFIG: codec.decode_config,
}


def write_records(state: State, writes: Writes) -> None:
    """Write records through the state's setters, so its undo log and root follow them."""
    state.write_records(writes)


def writes_to_json(writes: Writes) -> list[list[Any]]:
    return [[kind, ident.hex(), None if r is None else codec.encode_record(r).hex()] for (kind, ident), r in writes]


def writes_from_json(doc: list[list[Any]]) -> Writes:
    return tuple(((int(k), bytes.fromhex(i)), None if r is None else _DECODE[int(k)](bytes.fromhex(r)))
                 for k, i, r in doc)


def apply_lie_tx(state: State, lie: Lie, index: int, orders: BatchOrders, env: Env) -> None:
    """Transaction `index` of the lying batch, as the liar's books have it."""
    tx = lie.body.txs[index]
    if index == lie.at and lie.rejected:
        write_records(state, lie.writes)
        return
    try:
        process_tx(state, tx, orders, env)
    except InvalidTransaction:
        pass  # after the lie, an honest transaction it made impossible changed nothing in the liar's books
    if index == lie.at:
        write_records(state, lie.writes)


def execute_lie(state: State, lie: Lie, env: Env) -> None:
    """The liar's post-state, from the batch's true pre-state."""
    orders = BatchOrders(lie.body.orders, env.preset)
    for i in range(len(lie.body.txs)):
        apply_lie_tx(state, lie, i, orders, env)


class LieTrace:
    """The liar's trace of its own batch, for its defender (verifier.player.Truth): roots by index
    and the proof of one transaction from the liar's state before it."""

    def __init__(self, pre: State, header: BatchHeader, body: BatchData, env: Env, lie: Lie) -> None:
        self.pre, self.header, self.env = pre, header, env
        self.lie = replace(lie, body=body)
        state = pre.copy()
        orders = BatchOrders(body.orders, env.preset)
        self.roots: list[Root] = [state.root()]
        for i in range(len(body.txs)):
            apply_lie_tx(state, self.lie, i, orders, env)
            self.roots.append(state.root())

    def root_at(self, index: int) -> Root:
        return self.roots[min(index, len(self.roots) - 1)]

    def step_proof(self, index: int) -> StepProof | None:
        body = self.lie.body
        if index >= len(body.txs):
            return None
        state = self.pre.copy()
        orders = BatchOrders(body.orders, self.env.preset)
        for i in range(index):
            apply_lie_tx(state, self.lie, i, orders, self.env)
        tx = body.txs[index]
        result = witness.make_witness(state, tx, orders, self.env)
        named = sorted({tx.maker, tx.taker}) if isinstance(tx, Trade) else []
        order_hashes = [codec.signed_order_hash(o) for o in body.orders]
        return StepProof(
            tx=codec.encode_tx(tx),
            tx_proof=tuple(list_proof([codec.tx_hash(t) for t in body.txs], index)),
            order_count=len(body.orders),
            orders=tuple(OrderProof(i, codec.encode_signed_order(body.orders[i]), tuple(list_proof(order_hashes, i)))
                         for i in named if 0 <= i < len(body.orders)),
            witness=result.witness,
        )


# --- corrupting an honest batch -----------------------------------------------------------------


@dataclass
class Ctx:
    """What a fault kind sees: the honest batch on its true pre-state."""

    pre: State
    body: BatchData
    env: Env
    params: dict[str, Any]
    order_of: Callable[[bytes], SignedOrder | None]  # a known order by id
    history: dict[int, OraclePrice]  # each market's newest OraclePrice posted in an earlier batch


class NotApplicable(Exception):
    """This batch lacks what the fault needs: try the next one."""


def walk(ctx: Ctx, body: BatchData, upto: int) -> State:
    """A copy of the pre-state with the first `upto` (honest) transactions applied."""
    state = ctx.pre.copy()
    orders = BatchOrders(body.orders, ctx.env.preset)
    for tx in body.txs[:upto]:
        process_tx(state, tx, orders, ctx.env)
    return state


def effect(state: State, mark: int) -> Writes:
    """Each slot written since undo mark `mark`, with the record it holds now."""
    slots = dict.fromkeys(state.undo[mark::2])
    return tuple((slot, state.records.get(slot)) for slot in slots)


def lie_after(ctx: Ctx, body: BatchData, at: int, edit: Callable[[State], None], what: str) -> Lie:
    """A valid transaction `at`, then records changed with no transaction behind them."""
    state = walk(ctx, body, at + 1)
    mark = len(state.undo)
    edit(state)
    return Lie(body, at, False, effect(state, mark), what)


def lie_instead(ctx: Ctx, body: BatchData, at: int, unchecked: Callable[[State], None],
                expected: type[InvalidTransaction] | tuple[type[InvalidTransaction], ...], what: str) -> Lie:
    """Transaction `at` is one the rules reject; the liar writes what applying it without the
    failing check would have written."""
    state = walk(ctx, body, at)
    # Verify the rules do reject it, for the reason this fault is about
    try:
        process_tx(state, body.txs[at], BatchOrders(body.orders, ctx.env.preset), ctx.env)
    except expected:
        pass
    except InvalidTransaction as exc:
        raise NotApplicable(f"the rules reject it for another reason: {exc!r}") from exc
    else:
        raise NotApplicable("the rules accept it: no lie to tell")
    mark = len(state.undo)
    try:
        unchecked(state)
    except InvalidTransaction as exc:
        raise NotApplicable(f"cannot apply it even unchecked: {exc!r}") from exc
    return Lie(body, at, True, effect(state, mark), what)


def check_told(lie_body: BatchData, body: BatchData, lie_root: bytes, honest_root: bytes) -> None:
    """Verify the corrupted batch is not the honest one after all: a later transaction can write
    over what a lie wrote (a second oracle update of the same market, say), and a batch the rules
    accept with the honest root is no fault to catch."""
    if lie_body == body and lie_root == honest_root:
        raise NotApplicable("a later transaction writes over the lie: the batch would be honest")


def with_txs(body: BatchData, txs: list[Tx], extra_orders: tuple[SignedOrder, ...] = ()) -> BatchData:
    return BatchData(body.orders + extra_orders, tuple(txs))


def inserted(body: BatchData, at: int, tx: Tx, extra_orders: tuple[SignedOrder, ...] = ()) -> BatchData:
    txs = list(body.txs)
    txs.insert(at, tx)
    return with_txs(body, txs, extra_orders)


def replaced(body: BatchData, at: int, tx: Tx) -> BatchData:
    txs = list(body.txs)
    txs[at] = tx
    return with_txs(body, txs)


def first(body: BatchData, kind: type, pred: Callable[[Any], bool] = lambda tx: True) -> int:
    for i, tx in enumerate(body.txs):
        if type(tx) is kind and pred(tx):
            return i
    raise NotApplicable(f"no {kind.__name__} in this batch")


def middle(body: BatchData) -> int:
    return len(body.txs) // 2


def addr(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def signed_order(text: str) -> SignedOrder:
    return codec.decode_signed_order(bytes.fromhex(text.removeprefix("0x")))


def add_collateral(state: State, who: bytes, amount: int) -> None:
    a = state.account(who)
    state.set_account(who, Account(a.collateral + amount, a.withdraw_nonce, a.order_nonce_floor, a.markets))  # type: ignore[arg-type]


def unchecked_trade(state: State, tx: Trade, orders: BatchOrders, env: Env) -> None:
    """process_trade without its final margin check (every write comes before it)."""
    try:
        stf.process_trade(state, tx, orders, env)
    except InsufficientMargin:
        pass


def order_id(ctx: Ctx, signed: SignedOrder) -> bytes:
    return eip712.order_digest(ctx.env.preset, signed.order)


# -- one function per fault kind: (ctx) -> Lie, NotApplicable when the batch lacks what it needs --


def fault_margin(ctx: Ctx) -> Lie:
    """A trade the taker's margin cannot carry (its order was refused at intake), settled anyway."""
    maker, taker = signed_order(ctx.params["maker"]), signed_order(ctx.params["taker"])
    n = len(ctx.body.orders)
    tx = Trade(n, n + 1, int(ctx.params["lots"]), maker.order.price)  # type: ignore[arg-type]
    at = middle(ctx.body)
    body = inserted(ctx.body, at, tx, (maker, taker))
    return lie_instead(ctx, body, at, lambda s: unchecked_trade(s, tx, BatchOrders(body.orders, ctx.env.preset), ctx.env),
                       InsufficientMargin, f"trade {tx.lots} lots @ {tx.price} leaves 0x{taker.order.account.hex()} "
                       "below initial margin")


def fault_healthy_liquidation(ctx: Ctx) -> Lie:
    """A liquidation of an account above maintenance margin."""
    who, market = addr(ctx.params["account"]), int(ctx.params["market"])
    at = middle(ctx.body)
    state = walk(ctx, ctx.body, at)
    lots = abs(state.position(who, market).lots)
    if lots == 0:
        raise NotApplicable("the account holds no position there")
    tx = Liquidate(who, market, max(1, lots // 2), state.market(market).oracle_price)  # type: ignore[arg-type]
    body = inserted(ctx.body, at, tx)

    def unchecked(s: State) -> None:
        # Make it look underwater for the check, liquidate, then give the collateral back
        hit = 10**18
        add_collateral(s, who, -hit)
        stf.process_liquidation(s, tx, BatchOrders(body.orders, ctx.env.preset), ctx.env)
        add_collateral(s, who, hit)

    return lie_instead(ctx, body, at, unchecked, HealthyAccount,
                       f"liquidation of healthy 0x{who.hex()}: {tx.lots} lots @ {tx.price}")


def fault_liquidation_outside_band(ctx: Ctx) -> Lie:
    """The engine's liquidation, at a price outside the band around the oracle."""
    at = first(ctx.body, Liquidate)
    honest: Liquidate = ctx.body.txs[at]  # type: ignore[assignment]
    state = walk(ctx, ctx.body, at)
    m = state.market(honest.market)
    long = state.position(honest.account, honest.market).lots > 0
    off = m.params.price_band_ppm + 50_000
    price = m.oracle_price * (PPM - off) // PPM if long else m.oracle_price * (PPM + off) // PPM
    tx = replace(honest, price=Ticks(price))
    body = replaced(ctx.body, at, tx)

    def unchecked(s: State) -> None:
        market = s.market(tx.market)
        s.set_market(tx.market, replace(market, params=replace(market.params, price_band_ppm=Ppm(PPM))))
        stf.process_liquidation(s, tx, BatchOrders(body.orders, ctx.env.preset), ctx.env)
        s.set_market(tx.market, replace(s.market(tx.market), params=market.params))

    from contracts_spec.errors import PriceOutsideBand

    return lie_instead(ctx, body, at, unchecked, PriceOutsideBand,
                       f"liquidation of 0x{tx.account.hex()} at {price}, oracle {m.oracle_price}")


def fault_wrong_penalty(ctx: Ctx) -> Lie:
    """The engine's liquidation, with the penalty charged twice."""
    at = first(ctx.body, Liquidate)
    tx: Liquidate = ctx.body.txs[at]  # type: ignore[assignment]
    market = ctx.pre.market(tx.market)
    extra = fee(tx.lots, tx.price, market, market.params.liquidation_penalty_ppm)

    def edit(s: State) -> None:
        add_collateral(s, tx.account, -extra)
        add_collateral(s, INSURANCE_FUND, extra)

    return lie_after(ctx, ctx.body, at, edit, f"liquidation penalty of 0x{tx.account.hex()} charged twice (+{extra})")


def liquidation_deficit(state: State, tx: Liquidate) -> int:
    """The deficit the fund pays for `tx` on `state` (0 if the account is not left flat and negative)."""
    account, position, market = state.account(tx.account), state.position(tx.account, tx.market), state.market(tx.market)
    if account.markets != (tx.market,) or tx.lots != abs(position.lots):
        return 0
    delta = -tx.lots if position.lots > 0 else tx.lots
    cash = delta * tx.price * market.params.atoms_per_lot_tick
    penalty = fee(tx.lots, tx.price, market, market.params.liquidation_penalty_ppm)
    left = account.collateral - owed_atoms(position, market) - cash - penalty
    return max(0, -left)


def deficit_liquidation(ctx: Ctx, socialised: bool | None) -> tuple[int, Liquidate, int, State]:
    """The first liquidation with a deficit (that the fund covered, or socialised, if asked)."""
    for at, tx in enumerate(ctx.body.txs):
        if type(tx) is not Liquidate:
            continue
        before = walk(ctx, ctx.body, at)
        deficit = liquidation_deficit(before, tx)
        if deficit == 0:
            continue
        after = walk(ctx, ctx.body, at + 1)
        rose = after.market(tx.market).loss_index > before.market(tx.market).loss_index
        if socialised is None or rose == socialised:
            return at, tx, deficit, after
    raise NotApplicable("no liquidation with such a deficit in this batch")


def fault_deficit_booked_wrong(ctx: Ctx) -> Lie:
    """A bankrupt account's deficit: the account left negative and the fund never debited."""
    at, tx, deficit, _ = deficit_liquidation(ctx, None)

    def edit(s: State) -> None:
        add_collateral(s, tx.account, -deficit)
        add_collateral(s, INSURANCE_FUND, deficit)

    return lie_after(ctx, ctx.body, at, edit, f"deficit {deficit} of 0x{tx.account.hex()} not paid by the fund")


def other_lots(state: State, market: int) -> int:
    m = state.market(market)
    return 2 * m.open_interest - abs(state.position(INSURANCE_FUND, market).lots)


def fault_socialised_when_fund_could_pay(ctx: Ctx) -> Lie:
    """A deficit the fund could pay, socialised over the other open lots instead."""
    at, tx, deficit, after = deficit_liquidation(ctx, False)
    lots = other_lots(after, tx.market)
    if lots <= 0:
        raise NotApplicable("no other open lots to socialise over")
    rise = ceil_div(deficit * INDEX_SCALE, lots)

    def edit(s: State) -> None:
        m = s.market(tx.market)
        s.set_market(tx.market, replace(m, loss_index=m.loss_index + rise))
        add_collateral(s, INSURANCE_FUND, deficit)

    return lie_after(ctx, ctx.body, at, edit, f"deficit {deficit} socialised (+{rise} loss index) though the fund could pay")


def fault_socialised_wrong(ctx: Ctx) -> Lie:
    """A socialised loss, with the loss index raised three times as far as the spec says."""
    at, tx, _, after = deficit_liquidation(ctx, True)
    before = walk(ctx, ctx.body, at)
    rise = after.market(tx.market).loss_index - before.market(tx.market).loss_index

    def edit(s: State) -> None:
        m = s.market(tx.market)
        s.set_market(tx.market, replace(m, loss_index=m.loss_index + 2 * rise))

    return lie_after(ctx, ctx.body, at, edit, f"loss index raised by {3 * rise}, the spec says {rise}")


def fault_funding_not_zero_sum(ctx: Ctx) -> Lie:
    """A funding tick after which one short is owed a payment nobody makes."""
    at = first(ctx.body, FundingTick)
    tx: FundingTick = ctx.body.txs[at]  # type: ignore[assignment]
    state = walk(ctx, ctx.body, at + 1)
    ident = tx.market.to_bytes(4, "big")
    shorts = sorted(i[:20] for (k, i), r in state.records.items()
                    if k == POSITION and i[20:] == ident and r.lots < 0 and i[:20] != INSURANCE_FUND)
    if not shorts:
        raise NotApplicable("no short position to pay")
    who = shorts[0]

    def edit(s: State) -> None:
        p = s.position(who, tx.market)
        s.set_position(who, tx.market, Position(p.lots, p.funding_index - INDEX_SCALE, p.loss_index))

    return lie_after(ctx, ctx.body, at, edit, f"funding: 0x{who.hex()} owed 1 atom per lot nobody pays")


def fault_funding_wrong_rate(ctx: Ctx) -> Lie:
    """A funding tick at the capped rate on top of the rate the spec computes."""
    at = first(ctx.body, FundingTick)
    tx: FundingTick = ctx.body.txs[at]  # type: ignore[assignment]
    state = walk(ctx, ctx.body, at)
    m = state.market(tx.market)
    extra = m.params.funding_rate_cap_ppm * m.oracle_price * m.params.atoms_per_lot_tick * INDEX_SCALE // PPM

    def edit(s: State) -> None:
        market = s.market(tx.market)
        s.set_market(tx.market, replace(market, funding_index=market.funding_index + extra))

    return lie_after(ctx, ctx.body, at, edit, f"funding index +{extra} beyond the spec's rate")


def fault_oracle_not_median(ctx: Ctx) -> Lie:
    """An oracle update whose price is not the lower median of its reports."""
    at = first(ctx.body, OraclePrice, lambda tx: len(tx.reports) >= 2)
    tx: OraclePrice = ctx.body.txs[at]  # type: ignore[assignment]
    prices = [r.price for r in tx.reports]
    median = median_price(prices)
    wrong = max(prices) if max(prices) != median else median + 1

    def edit(s: State) -> None:
        s.set_market(tx.market, replace(s.market(tx.market), oracle_price=Ticks(wrong)))

    return lie_after(ctx, ctx.body, at, edit, f"oracle price {wrong}, the median of {sorted(prices)} is {median}")


def fault_oracle_below_quorum(ctx: Ctx) -> Lie:
    """An oracle update carrying one report where the quorum is larger."""
    at = first(ctx.body, OraclePrice, lambda tx: len(tx.reports) >= 2)
    honest: OraclePrice = ctx.body.txs[at]  # type: ignore[assignment]
    tx = OraclePrice(honest.market, honest.time, honest.reports[:1])
    body = replaced(ctx.body, at, tx)

    def unchecked(s: State) -> None:
        s.set_market(tx.market, replace(s.market(tx.market), oracle_price=tx.reports[0].price, oracle_time=tx.time))

    from contracts_spec.errors import OracleQuorum

    return lie_instead(ctx, body, at, unchecked, OracleQuorum, f"oracle price {tx.reports[0].price} from one report")


def fault_oracle_stale(ctx: Ctx) -> Lie:
    """An older oracle update replayed after a newer one: the market's price goes back in time."""
    after = walk(ctx, ctx.body, len(ctx.body.txs))
    markets = [m for m in sorted(ctx.history) if ctx.history[m].time < after.market(m).oracle_time]
    if not markets:
        raise NotApplicable("no older oracle update to replay yet")
    tx = ctx.history[markets[0]]
    at = len(ctx.body.txs)
    body = inserted(ctx.body, at, tx)
    price = median_price([r.price for r in tx.reports])

    def unchecked(s: State) -> None:
        s.set_market(tx.market, replace(s.market(tx.market), oracle_price=Ticks(price), oracle_time=tx.time))

    from contracts_spec.errors import OracleNotMonotonic

    return lie_instead(ctx, body, at, unchecked, OracleNotMonotonic,
                       f"stale oracle price {price} of time {tx.time} replayed")


def fault_forged_signature(ctx: Ctx) -> Lie:
    """A trade between two orders the sequencer signed itself, in its users' names."""
    buyer, seller, market, lots = (addr(ctx.params["buyer"]), addr(ctx.params["seller"]), int(ctx.params["market"]),
                                   int(ctx.params["lots"]))
    at = middle(ctx.body)
    price = walk(ctx, ctx.body, at).market(market).oracle_price
    nonce = int.from_bytes(secrets.token_bytes(6), "big")
    forged = tuple(eip712.sign_order(ctx.env.preset, Order(who, market, is_buy, price, Lots(lots), TimeInForce.GTC,
                                                            False, Seconds(0), nonce, 0), secrets.token_bytes(31) + b"\x01")
                   for who, is_buy in ((buyer, True), (seller, False)))
    n = len(ctx.body.orders)
    tx = Trade(n, n + 1, lots, price)  # type: ignore[arg-type]
    body = inserted(ctx.body, at, tx, forged)
    orders = BatchOrders(body.orders, ctx.env.preset, signers={n: buyer, n + 1: seller})

    from contracts_spec.errors import WrongSigner

    return lie_instead(ctx, body, at, lambda s: unchecked_trade(s, tx, orders, ctx.env), WrongSigner,
                       f"trade of forged orders of 0x{buyer.hex()} and 0x{seller.hex()}, {lots} lots @ {price}")


def fault_overfill(ctx: Ctx) -> Lie:
    """A second fill of a trade's two orders, beyond their size."""
    p = first(ctx.body, Trade)
    honest: Trade = ctx.body.txs[p]  # type: ignore[assignment]
    maker, taker = ctx.body.orders[honest.maker], ctx.body.orders[honest.taker]
    lots = min(maker.order.lots, taker.order.lots)
    tx = Trade(honest.maker, honest.taker, lots, honest.price)
    at = p + 1
    body = inserted(ctx.body, at, tx)
    ids = [(o.order.account, order_id(ctx, o)) for o in (maker, taker)]

    def unchecked(s: State) -> None:
        before = [s.order_status(a, i) for a, i in ids]
        for (a, i), st in zip(ids, before, strict=True):
            s.set_order_status(a, i, OrderStatus(0, st.cancelled))  # type: ignore[arg-type]
        unchecked_trade(s, tx, BatchOrders(body.orders, ctx.env.preset), ctx.env)
        for (a, i), st in zip(ids, before, strict=True):
            s.set_order_status(a, i, OrderStatus(st.filled + lots, st.cancelled))  # type: ignore[arg-type]

    return lie_instead(ctx, body, at, unchecked, Overfill, f"orders filled {lots} lots beyond their size")


def fault_fill_after_cancel(ctx: Ctx) -> Lie:
    """A fill of an order its owner cancelled earlier in the batch."""
    p = first(ctx.body, Cancel, lambda tx: ctx.order_of(tx.order_id) is not None)
    cancel: Cancel = ctx.body.txs[p]  # type: ignore[assignment]
    maker = ctx.order_of(cancel.order_id)
    assert maker is not None
    taker = signed_order(ctx.params["taker"])
    n = len(ctx.body.orders)
    lots = min(maker.order.lots, taker.order.lots)
    tx = Trade(n, n + 1, lots, maker.order.price)
    at = p + 1
    body = inserted(ctx.body, at, tx, (maker, taker))

    def unchecked(s: State) -> None:
        st = s.order_status(cancel.account, cancel.order_id)
        s.set_order_status(cancel.account, cancel.order_id, OrderStatus(st.filled, False))
        unchecked_trade(s, tx, BatchOrders(body.orders, ctx.env.preset), ctx.env)
        st = s.order_status(cancel.account, cancel.order_id)
        s.set_order_status(cancel.account, cancel.order_id, OrderStatus(st.filled, True))

    return lie_instead(ctx, body, at, unchecked, OrderCancelled,
                       f"fill of {lots} lots of cancelled order 0x{cancel.order_id.hex()[:16]}")


def fault_withdraw_beyond_free(ctx: Ctx) -> Lie:
    """A withdrawal larger than the account's free collateral."""
    tx = codec.decode_tx(bytes.fromhex(ctx.params["withdraw"].removeprefix("0x")))
    if not isinstance(tx, Withdraw):
        raise NotApplicable("params.withdraw is not a Withdraw")
    at = middle(ctx.body)
    body = inserted(ctx.body, at, tx)

    def unchecked(s: State) -> None:
        a = s.account(tx.account)
        s.set_account(tx.account, Account(a.collateral - tx.amount, a.withdraw_nonce + 1, a.order_nonce_floor,  # type: ignore[arg-type]
                                          a.markets))
        stf.append_withdrawal(s, tx.account, tx.amount)

    return lie_instead(ctx, body, at, unchecked, InsufficientMargin,
                       f"withdrawal of {tx.amount} by 0x{tx.account.hex()} beyond its free collateral")


def fault_inflated_balance(ctx: Ctx) -> Lie:
    """A balance raised in the post-state with no transaction behind it."""
    who, amount = addr(ctx.params["account"]), int(ctx.params.get("amount", 1_000_000_000))
    if not ctx.body.txs:
        raise NotApplicable("an empty batch")
    return lie_after(ctx, ctx.body, max(0, middle(ctx.body) - 1), lambda s: add_collateral(s, who, amount),
                     f"0x{who.hex()} credited {amount} with no transaction")


def fault_wrong_fee(ctx: Ctx) -> Lie:
    """A trade whose taker pays more fee than the spec says (the fee account gets it)."""
    at = first(ctx.body, Trade)
    tx: Trade = ctx.body.txs[at]  # type: ignore[assignment]
    taker = ctx.body.orders[tx.taker].order.account
    extra = int(ctx.params.get("extra", 1_000))

    def edit(s: State) -> None:
        add_collateral(s, taker, -extra)
        add_collateral(s, FEE_ACCOUNT, extra)

    return lie_after(ctx, ctx.body, at, edit, f"taker 0x{taker.hex()} charged {extra} atoms of fee beyond the spec's")


KINDS: dict[str, Callable[[Ctx], Lie]] = {
    "margin": fault_margin,
    "healthy_liquidation": fault_healthy_liquidation,
    "liquidation_outside_band": fault_liquidation_outside_band,
    "wrong_penalty": fault_wrong_penalty,
    "deficit_booked_wrong": fault_deficit_booked_wrong,
    "socialised_when_fund_could_pay": fault_socialised_when_fund_could_pay,
    "socialised_wrong": fault_socialised_wrong,
    "funding_not_zero_sum": fault_funding_not_zero_sum,
    "funding_wrong_rate": fault_funding_wrong_rate,
    "oracle_not_median": fault_oracle_not_median,
    "oracle_below_quorum": fault_oracle_below_quorum,
    "oracle_stale": fault_oracle_stale,
    "forged_signature": fault_forged_signature,
    "overfill": fault_overfill,
    "fill_after_cancel": fault_fill_after_cancel,
    "withdraw_beyond_free": fault_withdraw_beyond_free,
    "inflated_balance": fault_inflated_balance,
    "wrong_fee": fault_wrong_fee,
}
SKIP_DEPOSIT = "skip_deposit"  # not a lie in a root: a batch leaving out an overdue deposit


def skip_deposits(ctx: Ctx) -> BatchData:
    """The honest batch without its deposits (and whatever needed them): a batch the rules accept,
    but one the base layer refuses once a skipped deposit is past the forced-inclusion delay."""
    if not any(type(tx) is Deposit for tx in ctx.body.txs):
        raise NotApplicable("no deposit in this batch")
    state = ctx.pre.copy()
    orders = BatchOrders(ctx.body.orders, ctx.env.preset)
    kept = []
    for tx in ctx.body.txs:
        if type(tx) is Deposit:
            continue
        try:
            process_tx(state, tx, orders, ctx.env)
        except InvalidTransaction:
            continue
        kept.append(tx)
    return with_txs(ctx.body, kept)


# --- the injector in the sequencer ---------------------------------------------------------------


def header_for(index: int, pre_root: Root, state: State, body: BatchData, data: bytes, time_: int) -> BatchHeader:
    g = state.globals()
    return BatchHeader(
        index=index, prev_root=pre_root, post_root=state.root(), tx_count=len(body.txs),
        tx_root=list_root([codec.tx_hash(t) for t in body.txs]), data_hash=keccak(data),
        deposits_consumed=g.deposits_consumed, forced_consumed=g.forced_consumed,
        withdrawal_root=witness.globals_withdrawal_root(g),
        orders_root=list_root([codec.signed_order_hash(o) for o in body.orders]), time=Seconds(time_),
    )


class Injector:
    """Reads the fault file before each post; tells each listed fault once; logs what happened."""

    def __init__(self, batcher: Any, path: Path) -> None:
        self.batcher, self.path = batcher, path
        self.log_path = path.with_name(path.name + ".log")
        self.lock = threading.Lock()
        self.done = {r["id"] for r in read_log(self.log_path) if r["event"] in ("injected", "refused", "error")}
        self.waiting: set[str] = set()
        self.history: dict[int, OraclePrice] = {}

    def log(self, fault: dict[str, Any], event: str, **fields: Any) -> None:
        record = {"id": fault["id"], "kind": fault["kind"], "event": event, "wall": time.time(), **fields}
        with self.lock, self.log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        log.warning("fault %s (%s): %s %s", fault["id"], fault["kind"], event,
                    {k: v for k, v in fields.items() if k not in ("writes", "lie")})

    def due(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return None
        for fault in doc.get("faults", []):
            if fault.get("id") not in self.done:
                return dict(fault)
        return None

    def remember(self, body: BatchData) -> None:
        for tx in body.txs:
            if type(tx) is OraclePrice:
                self.history[tx.market] = tx

    def pre_state(self, built: Any) -> State:
        """The batch's pre-state, rebuilt from the batcher's state and its undo log (untouched)."""
        with getattr(self.batcher, "lock", contextlib.nullcontext()):  # the defender reads the state too
            state: State = self.batcher.state
            pre = state.copy()
            pre.undo = list(state.undo[built.mark:])
        pre.rollback_to(0)
        return pre

    def before_post(self, built: Any) -> dict[str, Any] | None:
        """Tell the fault that is due, if this batch allows it; the fault if its lie was posted."""
        body = codec.decode_batch_data(built.data, max_txs=self.batcher.preset.max_batch_txs)
        fault = None
        try:
            fault = self.due()
            if fault is not None and self.batcher.post_enabled and self.inject(built, body, fault):
                return fault
        except Exception as exc:  # a broken fault must never stop honest posting
            log.exception("fault injection failed")
            if fault is not None:
                self.done.add(fault["id"])
                self.log(fault, "error", error=repr(exc))
        finally:
            self.remember(body)
        return None

    def inject(self, built: Any, body: BatchData, fault: dict[str, Any]) -> bool:
        """Post the corrupted batch and wait for the verdict; True if it was posted."""
        header: BatchHeader = built.info.header
        env = Env(self.batcher.preset, header.time, self.batcher.bridge)
        pre = self.pre_state(built)
        # Verify the rebuilt pre-state is the batch's
        if pre.root() != header.prev_root:
            raise RuntimeError("the rebuilt pre-state is not the batch's")
        core = self.batcher.core
        ctx = Ctx(pre, body, env, dict(fault.get("params") or {}),
                  lambda oid: core.orders[oid].signed if oid in core.orders else None, dict(self.history))
        kind = fault["kind"]
        try:
            if kind == SKIP_DEPOSIT:
                lie_body, lie = skip_deposits(ctx), None
            else:
                lie = KINDS[kind](ctx)
                lie_body = lie.body
            post = pre.copy()
            if lie is None:
                stf.apply_batch(post, lie_body, env)
            else:
                execute_lie(post, lie, env)
            data = codec.encode_batch_data(lie_body)
            lie_header = header_for(header.index, header.prev_root, post, lie_body, data, header.time)
            check_told(lie_body, body, lie_header.post_root, header.post_root)
        except NotApplicable as exc:
            if fault["id"] not in self.waiting:
                self.waiting.add(fault["id"])
                self.log(fault, "waiting", index=header.index, reason=str(exc))
            return False
        header_hash = "0x" + keccak(codec.encode_header(lie_header)).hex()
        self.done.add(fault["id"])
        fields: dict[str, Any] = {"index": header.index, "header_hash": header_hash, "tx_count": len(lie_body.txs),
                                  "honest_root": "0x" + header.post_root.hex(),
                                  "claimed_root": "0x" + lie_header.post_root.hex(), "defend": fault.get("defend") or {}}
        if lie is not None:
            fields.update(at=lie.at, rejected=lie.rejected, what=lie.what, writes=writes_to_json(lie.writes),
                          tx=tx_summary(lie_body.txs[lie.at]))
        else:
            fields.update(what="batch without its deposits")
        self.log(fault, "injected", **fields)
        client = self.batcher.client
        if kind == SKIP_DEPOSIT:
            self.hold_for_forced_inclusion(fault, post.globals().deposits_consumed)
        try:
            receipt = client.post_batch(lie_header, data, witness.prove_globals(post))
        except Exception as exc:
            code = getattr(exc, "code", type(exc).__name__)
            self.log(fault, "refused", index=header.index, code=code, message=str(exc))
            return True
        batch_id = int(receipt["result"]["batch_id"])
        self.log(fault, "posted", index=header.index, batch_id=batch_id, time=int(receipt["time"]))
        self.await_verdict(fault, batch_id)
        return True

    def hold_for_forced_inclusion(self, fault: dict[str, Any], skipped: int) -> None:
        """Keep the deposit out until it is overdue, so the base layer's forced inclusion bites."""
        client, delay = self.batcher.client, self.batcher.preset.forced_inclusion_delay
        queued = int(client.http.get(f"/bridge/deposits/{skipped}").json()["time"])
        self.log(fault, "holding", deposit=skipped, queued=queued, overdue_at=queued + delay + 1)
        deadline = time.monotonic() + WAIT_LIMIT
        while client.now() <= queued + delay and time.monotonic() < deadline:
            time.sleep(0.2)

    def await_verdict(self, fault: dict[str, Any], batch_id: int) -> None:
        """Wait until the lie is lost (then top the stake up for the honest batch) or final."""
        client, preset = self.batcher.client, self.batcher.preset
        deadline = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < deadline:
            status = client.batch(batch_id)["status"]
            if status in ("lost", "invalid"):
                need = preset.sequencer_stake_min - int(client.rollup()["stake"])
                if need > 0:
                    client.faucet(native=need)
                    client.register_sequencer(need)
                self.log(fault, "lost", batch_id=batch_id, restaked=max(need, 0))
                return
            if status == "final":
                self.log(fault, "final", batch_id=batch_id)
                return
            time.sleep(0.2)
        self.log(fault, "timeout", batch_id=batch_id)


def tx_summary(tx: Tx) -> str:
    """One line naming a transaction, for logs and reports."""
    if isinstance(tx, Trade):
        return f"Trade(maker {tx.maker}, taker {tx.taker}, {tx.lots} lots @ {tx.price})"
    if isinstance(tx, Liquidate):
        return f"Liquidate(0x{tx.account.hex()[:10]}…, market {tx.market}, {tx.lots} lots @ {tx.price})"
    if isinstance(tx, OraclePrice):
        return f"OraclePrice(market {tx.market}, time {tx.time}, {len(tx.reports)} reports)"
    if isinstance(tx, Withdraw):
        return f"Withdraw(0x{tx.account.hex()[:10]}…, {tx.amount}, nonce {tx.nonce})"
    if isinstance(tx, Cancel):
        return f"Cancel(0x{tx.account.hex()[:10]}…, order 0x{tx.order_id.hex()[:10]}…)"
    if isinstance(tx, FundingTick):
        return f"FundingTick(market {tx.market})"
    if isinstance(tx, Deposit):
        return f"Deposit(queue {tx.queue_index})"
    return type(tx).__name__


def read_log(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill -9
    return out


def lie_of(record: dict[str, Any], body: BatchData) -> Lie:
    """The lie an `injected` log record describes, on the batch data the base layer holds."""
    return Lie(body, int(record["at"]), bool(record["rejected"]), writes_from_json(record["writes"]), record["what"])


def check(preset: Preset) -> None:
    """Refuse RAMPART_FAULT_FILE outside the dev preset (at startup, before anything is opened)."""
    if not os.environ.get(FAULT_FILE_ENV):
        return
    from sequencer.settings import UnsafeSettings

    # Verify fault injection runs only on the dev preset: it posts wrong roots on purpose
    if preset.name != "dev" or not preset.admin_time_travel:
        raise UnsafeSettings(f"{FAULT_FILE_ENV} (fault injection) is dev-only; refused on the {preset.name} preset")


def install(batcher: Any) -> None:
    """Wrap `batcher.post` when RAMPART_FAULT_FILE is set; refused at startup outside the dev preset."""
    path = os.environ.get(FAULT_FILE_ENV)
    if not path:
        return
    check(batcher.preset)
    injector = Injector(batcher, Path(path))
    honest_post = batcher.post

    def post(built: Any) -> None:
        told = injector.before_post(built)
        honest_post(built)
        if told is not None:
            injector.log(told, "reposted", index=built.info.index, batch_id=built.info.l1_batch_id)

    batcher.post = post
    batcher.faults = injector
    log.warning("fault injection armed from %s (dev preset)", path)
