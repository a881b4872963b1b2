"""The engine's incremental risk state and pre-trade risk: the spec's margin rules, kept live.

Per market: oracle, band, indices, premium, an open-interest bound. Per account: collateral,
positions (lots and settlement indices), open-order exposure and a *safe box*. Fills are
applied by matching.py, liquidations and funding here, each exactly as contracts_spec.stf does;
tests/sequencer/test_engine_spec.py holds this state and these margin functions equal to the
spec's after every step of long random workloads. Hot path, guarded by bench/engine.py: the
admission (Engine.place inlines its common case) and what matching.py calls.

The pre-trade check, stated exactly. An account's worst-case excess at oracle prices o is
    E = collateral + sum_m [ P_m o_m K_m - owed_m - ceil(W_m o_m K_m im_m / 1e6) - (B_m + S_m) fee_m ]
                   - sum over open orders of r K min(max(0, s (p - o)), band(o))
with, per market, B and S the open buy and sell lots, W = max(|P + B|, |P - S|) the position
if every open buy or every open sell filled, fee_m = ceil(c x K x max(taker, maker fee) / 1e6)
the fee per lot at the highest price a fill could print at while the box below holds
(c = h + band(h), h = o + o/4), and the last term each order's worst print against the oracle
(no more than band(o) per lot: prints must lie in the band). An incoming order counts as open
from admission on. It is accepted if E >= 0 with it. Otherwise an order that does not raise
W is accepted if value - the fee terms - its own worst print >= 0 (an account under initial
margin may still reduce); anything else is INSUFFICIENT_MARGIN. Limits: the order is refused
if it raises W above max_position_lots, or could raise open interest above its limit.

Why E >= 0 is enough: any one fill of any open order then satisfies stf.verify_margin (its
print and fee are covered by its terms, its new position by W), and fills and cancels never
lower E at a fixed price. So E is computed exactly only now and then: the account keeps a box
of oracle prices around the current ones (at most a quarter of the price each way) and
`slack`, a lower bound of E anywhere inside it. A new order subtracts its worst cost over the
box, lots x `box_cost` (O(1)); fills and cancels subtract nothing; a fill of a boxed account
needs no margin check. When an oracle price leaves an account's box (liquidation.py pops
exactly those), when funding or a socialised loss moves its indices, or when the slack runs
out, E is computed again and a new box drawn. An account with E < 0 ("marginal") has no box:
its fills are checked exactly, one by one. `room` does the same for the position limit:
max_position_lots - (|P| + B + S) at the last box, less what was admitted since; |P| can
never exceed |P| + B + S, which fills do not raise.
"""

from __future__ import annotations

from enum import StrEnum
from heapq import heapify, heappush
from typing import Any, Final, NamedTuple

from contracts_spec.margin import ceil_div
from contracts_spec.types import FEE_ACCOUNT, INDEX_SCALE, INSURANCE_FUND, PPM, SYSTEM_ACCOUNTS, MarketParams
from sequencer.engine.book import Resting

_PPM: Final = PPM
# A box reaches at most 1/_BOX_DIVISOR of the price each way: new orders' costs are priced at
# its top, so a narrower cap keeps them close to their cost at the oracle price.
_BOX_DIVISOR: Final = 4
# Smallest trigger-heap size at which stale entries are swept out.
_HEAP_SWEEP: Final = 4096


class Reject(StrEnum):
    """Why the engine refused a request: a named reason, never a transaction."""

    UNKNOWN_MARKET = "UNKNOWN_MARKET"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    DUPLICATE_CLIENT_ID = "DUPLICATE_CLIENT_ID"
    INVALID_ORDER = "INVALID_ORDER"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"  # nonce below the account's cancel-all floor
    STALE_ORACLE = "STALE_ORACLE"
    PRICE_BAND = "PRICE_BAND"
    POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
    REDUCE_ONLY = "REDUCE_ONLY"
    POSITION_LIMIT = "POSITION_LIMIT"
    OPEN_INTEREST_LIMIT = "OPEN_INTEREST_LIMIT"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    FOK_UNFILLABLE = "FOK_UNFILLABLE"
    WRONG_ACCOUNT = "WRONG_ACCOUNT"
    BAD_NONCE = "BAD_NONCE"
    BAD_QUEUE_INDEX = "BAD_QUEUE_INDEX"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    ORACLE_NOT_MONOTONIC = "ORACLE_NOT_MONOTONIC"
    ORACLE_MOVE_TOO_LARGE = "ORACLE_MOVE_TOO_LARGE"
    FUNDING_TOO_EARLY = "FUNDING_TOO_EARLY"
    GOVERNANCE_NOT_EFFECTIVE = "GOVERNANCE_NOT_EFFECTIVE"


class Fill(NamedTuple):
    """An emitted trade: the spec's Trade with order ids where the batch will put indices."""

    maker: bytes  # order id (EIP-712 digest) of the resting order; its price is the print
    taker: bytes
    lots: int
    price: int


class MarketRisk:
    """One market's live parameters and state, mirroring contracts_spec.types.Market."""

    __slots__ = (
        "params", "id", "k", "im", "mm", "taker_fee", "maker_fee", "fee_k", "penalty", "band",
        "max_pos", "max_oi", "staleness", "interval", "max_move", "book",
        "oracle", "oracle_time", "fresh_until", "ok", "lo", "hi", "fee_cap",
        "funding_index", "loss_index", "epoch", "oi_room", "premium_sum", "premium_lots",
        "last_funding_time", "holders", "lo_heap", "hi_heap", "heap_limit",
    )

    def __init__(self, params: MarketParams, genesis_time: int = 0) -> None:
        self.set_params(params)
        self.book: Any = None  # the market's order book (the engine sets it)
        self.oracle = 0
        self.oracle_time = 0
        self.fresh_until = -1  # the oracle price may back trades while now <= this
        self.ok = 0  # oracle x K: atoms per lot at the oracle price
        self.lo = 1  # the band: a print must lie in [lo, hi]; empty until an oracle price
        self.hi = 0
        self.fee_cap = 0  # fee_m of the module docstring
        self.funding_index = 0
        self.loss_index = 0
        self.epoch = 0  # bumped whenever the funding or loss index moves: positions settle then
        self.oi_room: int = self.max_oi  # <= max_oi - open interest; `open_interest` makes it exact
        self.premium_sum = 0
        self.premium_lots = 0
        self.last_funding_time = genesis_time
        # Every position of the market ever opened, in a deterministic (creation) order.
        self.holders: dict[PositionRisk, None] = {}
        # Box edges (liquidation.py): (-low edge, seq, pos, version) and (high edge, seq, pos, version)
        self.lo_heap: list[tuple[int, int, PositionRisk, int]] = []
        self.hi_heap: list[tuple[int, int, PositionRisk, int]] = []
        self.heap_limit = _HEAP_SWEEP

    def set_params(self, params: MarketParams) -> None:
        """The market's parameters (at creation, or a governance change: then the oracle-derived
        fields are redrawn here and the caller resyncs the engine)."""
        self.params = params
        self.id = params.market_id
        self.k = params.atoms_per_lot_tick
        self.im = params.initial_margin_ppm
        self.mm = params.maintenance_margin_ppm
        self.taker_fee = params.taker_fee_ppm
        self.maker_fee = params.maker_fee_ppm
        self.fee_k = max(params.taker_fee_ppm, params.maker_fee_ppm) * self.k
        self.penalty = params.liquidation_penalty_ppm
        self.band = params.price_band_ppm
        self.max_pos: int = params.max_position_lots
        self.max_oi: int = params.max_open_interest_lots
        self.staleness = params.oracle_staleness
        self.interval = params.funding_interval
        self.max_move = params.max_oracle_move_ppm
        if getattr(self, "oracle", 0):
            self.set_oracle(self.oracle, self.oracle_time)

    def set_oracle(self, price: int, time: int) -> None:
        self.oracle = price
        self.oracle_time = time
        self.fresh_until = time + self.staleness
        self.ok = price * self.k
        # |p - oracle| x 1e6 <= band x oracle  <=>  oracle - d <= p <= oracle + d, d = floor(band x oracle / 1e6)
        d = self.band * price // _PPM
        self.lo = price - d
        self.hi = price + d
        top = price + price // _BOX_DIVISOR
        self.fee_cap = ceil_div((top + self.band * top // _PPM) * self.fee_k, _PPM)

    def is_fresh(self, now: int) -> bool:
        """contracts_spec.stf.verify_fresh_oracle as a predicate."""
        return self.oracle > 0 and now <= self.fresh_until


class AccountRisk:
    """One account: collateral, positions by market, resting orders, its safe box's slack."""

    __slots__ = ("address", "collateral", "positions", "orders", "clients", "nonce_floor", "system",
                 "slack", "dirty")

    def __init__(self, address: bytes) -> None:
        self.address = address
        self.collateral = 0
        self.positions: dict[int, PositionRisk] = {}
        self.orders: dict[bytes, Resting] = {}  # order id -> resting order, in arrival order
        self.clients: dict[int, Resting] = {}  # client id (non-zero) -> resting order
        self.nonce_floor = 0
        self.system = address in SYSTEM_ACCOUNTS
        self.slack = -1  # a lower bound (>= 0) of E over the box; -1: no box (marginal, or not drawn)
        self.dirty = False  # queued for a new box (Risk.dirty)

    def __repr__(self) -> str:
        return f"AccountRisk({self.address.hex()}, collateral={self.collateral})"


class PositionRisk:
    """(account, market): lots, settlement indices, open-order exposure, this market's box."""

    __slots__ = ("acct", "mkt", "lots", "funding_index", "loss_index", "epoch", "open_buy", "open_sell",
                 "room", "box_lo", "box_hi", "box_ver", "box_cost")

    def __init__(self, acct: AccountRisk, mkt: MarketRisk) -> None:
        self.acct = acct
        self.mkt = mkt
        self.lots = 0
        self.funding_index = mkt.funding_index  # a new position owes nothing
        self.loss_index = mkt.loss_index
        self.epoch = mkt.epoch  # the market's epoch when last settled: equal means nothing owed
        self.open_buy = 0  # lots of resting buy orders
        self.open_sell = 0
        self.room = -1  # position-limit headroom proven by the box; < 0: check every fill
        self.box_lo = 0  # the box in this market: [box_lo, box_hi]; 0 = no edge
        self.box_hi = 0
        self.box_ver = 0  # bumped when the box is redrawn: older heap entries are stale
        self.box_cost = 0  # margin box: a bound of a new order's cost per lot; 0 = no margin box

    def __hash__(self) -> int:
        return id(self)


def compute_owed(pos: PositionRisk) -> int:
    """contracts_spec.margin.owed_atoms on the live records: debts round up, credits down."""
    mkt = pos.mkt
    lots = pos.lots
    raw = lots * (mkt.funding_index - pos.funding_index) + abs(lots) * (mkt.loss_index - pos.loss_index)
    # a debt (raw > 0) rounds up; a credit, -floor(-raw / scale), is the same expression
    return -((-raw) // INDEX_SCALE)


def worst_print(order: Resting) -> int:
    """The order's worst print against the oracle, in atoms: r x K x min(max(0, s (p - o)), band(o))."""
    mkt = order.pos.mkt
    edge = order.price - mkt.oracle if order.is_buy else mkt.oracle - order.price
    if edge <= 0:
        return 0
    band = mkt.band * mkt.oracle // _PPM
    return (edge if edge < band else band) * order.remaining * mkt.k


class Risk:
    """Markets, accounts, the pre-trade check and the safe boxes; matching.py appends fills to `out`."""

    def __init__(self, markets: tuple[MarketParams, ...] | list[MarketParams], genesis_time: int = 0) -> None:
        self.markets: dict[int, MarketRisk] = {p.market_id: MarketRisk(p, genesis_time) for p in markets}
        self.accounts: dict[bytes, AccountRisk] = {}
        self.fund = self.account(INSURANCE_FUND)
        self.fees = self.account(FEE_ACCOUNT)
        self.out: list[Any] = []
        self.dirty: list[AccountRisk] = []  # accounts whose box must be redrawn before a scan
        self.critical: dict[AccountRisk, None] = {}  # no box at all: re-checked on every oracle move
        self.seq = 0

    # --- records ---------------------------------------------------------------------------

    def account(self, address: bytes) -> AccountRisk:
        acct = self.accounts.get(address)
        if acct is None:
            acct = self.accounts[address] = AccountRisk(address)
        return acct

    def position(self, acct: AccountRisk, mkt: MarketRisk) -> PositionRisk:
        pos = acct.positions.get(mkt.id)
        if pos is None:
            pos = acct.positions[mkt.id] = PositionRisk(acct, mkt)
            mkt.holders[pos] = None
        return pos

    def open_interest(self, mkt: MarketRisk) -> int:
        """The market's open interest (total long lots), exactly; resets the hot path's bound."""
        oi = sum(pos.lots for pos in mkt.holders if pos.lots > 0)
        mkt.oi_room = mkt.max_oi - oi
        return oi

    # --- the spec's margin functions on live records ------------------------------------------

    def value(self, acct: AccountRisk) -> int:
        """contracts_spec.margin.account_value."""
        value = acct.collateral
        for pos in acct.positions.values():
            if pos.lots:
                value += pos.lots * pos.mkt.ok - compute_owed(pos)
        return value

    def requirement(self, acct: AccountRisk, maintenance: bool) -> int:
        """contracts_spec.margin.initial_requirement / maintenance_requirement."""
        total = 0
        for pos in acct.positions.values():
            if pos.lots:
                mkt = pos.mkt
                total += ceil_div(abs(pos.lots) * mkt.ok * (mkt.mm if maintenance else mkt.im), _PPM)
        return total

    def is_liquidatable(self, acct: AccountRisk) -> bool:
        """Holds a position and is below maintenance margin at the oracle prices."""
        if acct.system or not any(q.lots for q in acct.positions.values()):
            return False
        return self.value(acct) < self.requirement(acct, True)

    def excess(self, acct: AccountRisk) -> int:
        """E of the module docstring, exactly, at the current oracle prices."""
        excess = acct.collateral
        for q in acct.positions.values():
            lots = q.lots
            mkt = q.mkt
            if lots:
                excess += lots * mkt.ok
                if q.epoch != mkt.epoch:
                    excess -= compute_owed(q)
            long_w = lots + q.open_buy
            short_w = q.open_sell - lots
            w = long_w if long_w > short_w else short_w
            excess += ((-w * mkt.ok * mkt.im) // _PPM) - (q.open_buy + q.open_sell) * mkt.fee_cap
        for order in acct.orders.values():
            excess -= worst_print(order)
        return excess

    def margin_ok(self, pos: PositionRisk, old: int, new: int, cash: int) -> bool:
        """stf.verify_margin after moving `pos` from `old` to `new` lots with `cash` collateral change.

        Settling the traded position first is value-neutral (collateral - owed is kept), so
        the post-trade value is read off the current records without applying anything.
        """
        acct = pos.acct
        if acct.system:
            return True
        increasing = abs(new) > abs(old) or old > 0 > new or old < 0 < new
        value = acct.collateral + cash
        required = 0
        for q in acct.positions.values():
            mkt = q.mkt
            lots = q.lots
            if lots and q.epoch != mkt.epoch:
                value -= compute_owed(q)
            if q is pos:
                lots = new
            if lots:
                n = lots * mkt.ok
                value += n
                if increasing:
                    required -= ((n if n < 0 else -n) * mkt.im) // _PPM
        return value >= required

    # --- orders ---------------------------------------------------------------------------------

    def admit(self, order: Resting) -> tuple[Reject | None, bool]:
        """The pre-trade check of the module docstring: (reason or None, verified).

        `verified` says the admission proves every fill the order can make as a taker now.
        Counts nothing: an accepted order's cost is taken from the account's slack (or proven
        by a new box) before it matches, and only its resting remainder is counted (`rest`).
        Engine.place inlines the common case (room and slack enough) for speed.
        """
        pos = order.pos
        mkt = pos.mkt
        acct = pos.acct
        lots = order.remaining
        p = pos.lots
        # max(|P + B|, |P - S|) = max(P + B, S - P): the two sum to B + S >= 0
        long_w = p + pos.open_buy
        short_w = pos.open_sell - p
        before = long_w if long_w > short_w else short_w
        if order.is_buy:
            long_w += lots
        else:
            short_w += lots
        after = long_w if long_w > short_w else short_w
        growing = after > before
        # Verify the worst case stays within the position and open-interest limits
        if growing and after > mkt.max_pos:
            return Reject.POSITION_LIMIT, False
        if growing and mkt.oi_room < lots and self.open_interest(mkt) + lots > mkt.max_oi:
            return Reject.OPEN_INTEREST_LIMIT, False
        if acct.system:
            return None, True
        slack = acct.slack
        if slack >= 0 and pos.room < 0 and not (pos.lots or pos.open_buy or pos.open_sell) and mkt.oracle:
            self._extend_box(pos)
        if pos.room >= lots and slack >= lots * pos.box_cost:  # room >= 0 only under a margin box
            acct.slack = slack - lots * pos.box_cost
            pos.room -= lots
            return None, True
        # No box, or its slack or room spent: compute E with the order counted, draw a new box
        self._count(order, 1)
        self.rebox(acct, worst_print(order))
        self._count(order, -1)
        if acct.slack >= 0:
            return None, True
        # Verify a marginal account stays solvent with an order that does not add to its worst case
        if not growing:
            fees = sum((q.open_buy + q.open_sell) * q.mkt.fee_cap for q in acct.positions.values())
            if self.value(acct) - fees - lots * mkt.fee_cap - worst_print(order) >= 0:
                return None, order.reduce_only
        return Reject.INSUFFICIENT_MARGIN, False

    def _count(self, order: Resting, sign: int) -> None:
        if order.is_buy:
            order.pos.open_buy += sign * order.remaining
        else:
            order.pos.open_sell += sign * order.remaining

    def rest(self, order: Resting) -> None:
        """Count a resting order's exposure and index it under its account (Engine.place inlines it)."""
        self._count(order, 1)
        acct = order.pos.acct
        acct.orders[order.id] = order
        client_id = order.client_id
        if client_id:
            acct.clients[client_id] = order

    def drop(self, order: Resting) -> None:
        """A resting order leaves without a fill; uncount it. Emits nothing (the caller unbooks it)."""
        self._count(order, -1)
        order.remaining = 0
        acct = order.pos.acct
        del acct.orders[order.id]
        client_id = order.client_id
        if client_id:
            acct.clients.pop(client_id, None)

    # --- safe boxes (see the module docstring and liquidation.py) ------------------------------

    def touch(self, acct: AccountRisk) -> None:
        """The account's box no longer holds: queue it for a new one."""
        acct.slack = -1
        if not acct.dirty and not acct.system:
            acct.dirty = True
            self.dirty.append(acct)

    def rebox(self, acct: AccountRisk, extra: int = 0) -> bool:
        """Draw the account's box at the current prices; True if it is liquidatable right now.

        With E >= 0 (less `extra`, an incoming order's worst print; its exposure counted): a
        box over every market it is exposed in, half of E spent on its width, the rest kept as
        slack. With E < 0 the account is marginal: it gets a maintenance box instead
        (positions only, no slack), or none (`critical`) when within rounding of maintenance
        or below it.
        """
        acct.dirty = False
        acct.slack = -1
        self.critical.pop(acct, None)
        exposed = []
        for q in acct.positions.values():
            q.box_ver += 1
            q.box_lo = q.box_hi = q.box_cost = 0
            q.room = -1
            if q.lots or q.open_buy or q.open_sell:
                exposed.append(q)
        if acct.system or not exposed:
            return False
        excess = self.excess(acct) - extra
        if excess >= 0:
            self._draw_margin_box(acct, exposed, excess)
            return False
        value = self.value(acct)
        if value < self.requirement(acct, True) and any(q.lots for q in exposed):
            self.critical[acct] = None
            return True
        if not self._draw_maintenance_box(acct):
            self.critical[acct] = None
        return False

    def _draw_margin_box(self, acct: AccountRisk, exposed: list[PositionRisk], excess: int) -> None:
        # Over a box of half-width delta, each market's terms of E move by at most
        # delta x slope: K per lot of position and of open orders, plus IM's ceil per tick
        # (the fee term is priced at the highest box top already).
        share = excess // (2 * len(exposed))
        slack = excess
        for q in exposed:
            mkt = q.mkt
            o = mkt.oracle
            lots = q.lots
            w = max(lots + q.open_buy, q.open_sell - lots)
            gross = abs(lots) + q.open_buy + q.open_sell
            slope = mkt.k * gross + ceil_div(w * mkt.k * mkt.im, _PPM)
            delta = min(share // slope, o // _BOX_DIVISOR)
            slack -= delta * slope
            q.box_lo = o - delta
            q.box_hi = hi = o + delta
            # A new order of x lots costs E at most, anywhere in the box: x fee_m, initial
            # margin on at most x more worst-case lots (ceil is subadditive), and a print at
            # most band(o) per lot worse than the oracle.
            q.box_cost = mkt.fee_cap + ceil_div(hi * mkt.k * mkt.im, _PPM) + (mkt.band * hi // _PPM) * mkt.k
            q.room = mkt.max_pos - gross
            self._push(mkt, q)
        acct.slack = slack

    def _extend_box(self, q: PositionRisk) -> None:
        """Add a market the boxed account has no exposure in to its box, at the widest width.

        E does not depend on that market's price yet (no position, no orders), so the slack
        holds over the wider box; what the account adds there later pays lots x box_cost.
        """
        mkt = q.mkt
        o = mkt.oracle
        q.box_ver += 1
        q.box_lo = o - o // _BOX_DIVISOR
        q.box_hi = hi = o + o // _BOX_DIVISOR
        q.box_cost = mkt.fee_cap + ceil_div(hi * mkt.k * mkt.im, _PPM) + (mkt.band * hi // _PPM) * mkt.k
        q.room = mkt.max_pos
        self._push(mkt, q)

    def _draw_maintenance_box(self, acct: AccountRisk) -> bool:
        """Triggers on positions alone, splitting the maintenance cushion (liquidation.py)."""
        held = [q for q in acct.positions.values() if q.lots]
        if not held:
            return True  # nothing to liquidate, nothing to watch
        # 1e6 x (value - maintenance) >= 1e6 C' + sum sigma_k o_k - 1e6 N, linear in prices
        cushion = _PPM * (acct.collateral - sum(compute_owed(q) for q in held)) - _PPM * len(held)
        slopes = [q.mkt.k * (_PPM * q.lots - q.mkt.mm * abs(q.lots)) for q in held]
        cushion += sum(s * q.mkt.oracle for q, s in zip(held, slopes, strict=True))
        if cushion < 0:
            return False
        share = cushion // len(held)
        for q, slope in zip(held, slopes, strict=True):
            o = q.mkt.oracle
            if slope > 0:  # long: safe at or above the trigger
                q.box_lo = o - min(o - 1, share // slope)
            else:  # short: safe at or below the trigger
                q.box_hi = o + share // -slope
            self._push(q.mkt, q)
        return True

    def _push(self, mkt: MarketRisk, q: PositionRisk) -> None:
        self.seq += 1
        if q.box_lo > 0:
            heappush(mkt.lo_heap, (-q.box_lo, self.seq, q, q.box_ver))
        if q.box_hi > 0:
            heappush(mkt.hi_heap, (q.box_hi, self.seq, q, q.box_ver))
        if len(mkt.lo_heap) + len(mkt.hi_heap) > mkt.heap_limit:
            for heap in (mkt.lo_heap, mkt.hi_heap):
                heap[:] = [e for e in heap if e[3] == e[2].box_ver]
                heapify(heap)
            mkt.heap_limit = max(_HEAP_SWEEP, 2 * (len(mkt.lo_heap) + len(mkt.hi_heap)))

    # --- settlement, liquidation, funding: process_* effects -------------------------------------

    def settle(self, pos: PositionRisk) -> None:
        """stf.settle: the insurance fund is the counterparty; indices brought current."""
        mkt = pos.mkt
        amount = compute_owed(pos)
        if amount and pos.acct is not self.fund:
            pos.acct.collateral -= amount
            self.fund.collateral += amount
        pos.funding_index = mkt.funding_index
        pos.loss_index = mkt.loss_index
        pos.epoch = mkt.epoch

    def apply_liquidation(self, pos: PositionRisk, lots: int, price: int) -> None:
        """process_liquidation's effects (its checks are the caller's): the fund takes the lots."""
        mkt = pos.mkt
        acct = pos.acct
        fund = self.fund
        fpos = self.position(fund, mkt)
        self.settle(pos)
        self.settle(fpos)
        delta = -lots if pos.lots > 0 else lots
        pos.lots += delta
        fpos.lots -= delta
        cash = delta * price * mkt.k
        penalty = ceil_div(lots * price * mkt.k * mkt.penalty, _PPM)
        acct.collateral -= cash + penalty
        fund.collateral += cash + penalty
        oi = self.open_interest(mkt)
        if not any(q.lots for q in acct.positions.values()) and acct.collateral < 0:
            # stf.cover_deficit: the fund pays; beyond what it had, the market's other lots do
            deficit = -acct.collateral
            acct.collateral = 0
            shortfall = deficit - max(fund.collateral, 0)
            fund.collateral -= deficit
            other_lots = 2 * oi - abs(fpos.lots)
            if shortfall > 0 and other_lots > 0:
                mkt.loss_index += ceil_div(shortfall * INDEX_SCALE, other_lots)
                mkt.epoch += 1
                for holder in mkt.holders:
                    if holder.lots:
                        self.touch(holder.acct)
        self.touch(acct)

    def apply_funding(self, mkt: MarketRisk, delta: int, now: int) -> None:
        """process_funding_tick's effects: every holder of the market now owes differently."""
        mkt.funding_index += delta
        mkt.epoch += 1
        mkt.premium_sum = 0
        mkt.premium_lots = 0
        mkt.last_funding_time = now
        for holder in mkt.holders:
            if holder.lots:
                self.touch(holder.acct)
