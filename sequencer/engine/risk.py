"""The engine's incremental risk state and pre-trade risk: the spec's margin rules, kept live.

Per market: oracle, band, indices, open interest, premium. Per account: collateral, positions
(lots and settlement indices) and open-order exposure. `Risk` is the book's `Gate`: every fill
is checked against contracts_spec.stf.process_trade's rules and applied exactly as it applies
it, so whatever the engine emits applies cleanly (tests/sequencer/test_spec_equivalence.py
holds the two equal). Hot path, guarded by bench/engine.py: `fill`, `margin_ok`, `admit`.

The pre-trade check (`admit`), stated exactly. For the incoming order o (limit price p, x
lots, side s) on market m, with every account position P_k, open buy lots B_k, open sell lots
S_k (o added to B_m or S_m):
    worst_k   = max(|P_k + B_k|, |P_k - S_k|)                       worst-case lots
    required  = sum_k ceil(worst_k x oracle_k x K_k x initial_ppm_k / 1e6)
    reserve   = sum over open orders and o of lots x ceil(limit x K x max(taker, maker fee) / 1e6)
    loss      = x x K x max(0, s x (p - oracle_m))                   o's own worst print
    free      = account value - reserve - loss
o passes if free >= required. An order that does not raise worst_m passes with free >= 0 (an
account under initial margin may still reduce). Passing the first form proves every fill o
can make as a taker within this call satisfies the spec (fills print at or inside p, pay at
most the reserved fee per lot, and leave |P_m| <= worst_m), so its taker fills skip the check;
makers are checked exactly at every fill, since the oracle may have moved since they rested.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, NamedTuple

from contracts_spec.margin import ceil_div
from contracts_spec.types import FEE_ACCOUNT, INDEX_SCALE, INSURANCE_FUND, PPM, SYSTEM_ACCOUNTS, MarketParams
from sequencer.engine.book import STOP, Resting

_PPM: Final = PPM


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
    INVALID_AMOUNT = "INVALID_AMOUNT"
    ORACLE_NOT_MONOTONIC = "ORACLE_NOT_MONOTONIC"
    ORACLE_MOVE_TOO_LARGE = "ORACLE_MOVE_TOO_LARGE"
    FUNDING_TOO_EARLY = "FUNDING_TOO_EARLY"


class Fill(NamedTuple):
    """An emitted trade: the spec's Trade with order ids where the batch will put indices."""

    maker: bytes  # order id (EIP-712 digest) of the resting order; its price is the print
    taker: bytes
    lots: int
    price: int


class MarketRisk:
    """One market's live parameters and state, mirroring contracts_spec.types.Market."""

    __slots__ = (
        "params", "id", "k", "im", "mm", "taker_fee", "maker_fee", "fee_max", "penalty", "band",
        "max_pos", "max_oi", "staleness", "interval", "max_move",
        "oracle", "oracle_time", "ok", "lo", "hi", "funding_index", "loss_index", "oi",
        "premium_sum", "premium_lots", "last_funding_time", "holders", "long_heap", "short_heap",
    )

    def __init__(self, params: MarketParams, genesis_time: int = 0) -> None:
        self.params = params
        self.id = params.market_id
        self.k = params.atoms_per_lot_tick
        self.im = params.initial_margin_ppm
        self.mm = params.maintenance_margin_ppm
        self.taker_fee = params.taker_fee_ppm
        self.maker_fee = params.maker_fee_ppm
        self.fee_max = max(params.taker_fee_ppm, params.maker_fee_ppm)
        self.penalty = params.liquidation_penalty_ppm
        self.band = params.price_band_ppm
        self.max_pos = params.max_position_lots
        self.max_oi = params.max_open_interest_lots
        self.staleness = params.oracle_staleness
        self.interval = params.funding_interval
        self.max_move = params.max_oracle_move_ppm
        self.oracle = 0
        self.oracle_time = 0
        self.ok = 0  # oracle x K: atoms per lot at the oracle price
        self.lo = 1  # the band: a print must lie in [lo, hi]; empty until an oracle price
        self.hi = 0
        self.funding_index = 0
        self.loss_index = 0
        self.oi = 0
        self.premium_sum = 0
        self.premium_lots = 0
        self.last_funding_time = genesis_time
        # Positions with lots != 0, in a deterministic (insertion) order: funding and loss
        # socialisation change what they owe, so the liquidation index re-reads them.
        self.holders: dict[PositionRisk, None] = {}
        self.long_heap: list[tuple[int, int, PositionRisk, int]] = []  # (-trigger, seq, pos, version)
        self.short_heap: list[tuple[int, int, PositionRisk, int]] = []  # (trigger, seq, pos, version)

    def set_oracle(self, price: int, time: int) -> None:
        self.oracle = price
        self.oracle_time = time
        self.ok = price * self.k
        # |p - oracle| x 1e6 <= band x oracle  <=>  oracle - d <= p <= oracle + d, d = floor(band x oracle / 1e6)
        d = self.band * price // _PPM
        self.lo = price - d
        self.hi = price + d

    def is_fresh(self, now: int) -> bool:
        """contracts_spec.stf.verify_fresh_oracle as a predicate."""
        return self.oracle > 0 and self.oracle_time + self.staleness >= now


class AccountRisk:
    """One account: collateral, positions by market, resting orders, liquidation-index state."""

    __slots__ = (
        "address", "collateral", "positions", "orders", "clients", "nonce_floor", "system",
        "liq_q", "dirty", "critical",
    )

    def __init__(self, address: bytes) -> None:
        self.address = address
        self.collateral = 0
        self.positions: dict[int, PositionRisk] = {}
        self.orders: dict[bytes, Resting] = {}  # order id -> resting order, in arrival order
        self.clients: dict[int, Resting] = {}  # client id (non-zero) -> resting order
        self.nonce_floor = 0
        self.system = address in SYSTEM_ACCOUNTS
        self.liq_q: int | None = None  # liquidation.py: the box's corner cushion, None = not indexed
        self.dirty = False  # queued for re-indexing
        self.critical = False  # within rounding of maintenance: checked on every oracle move

    def __repr__(self) -> str:
        return f"AccountRisk({self.address.hex()}, collateral={self.collateral})"


class PositionRisk:
    """(account, market): lots, settlement indices, open-order exposure, liquidation trigger."""

    __slots__ = (
        "acct", "mkt", "lots", "funding_index", "loss_index", "open_buy", "open_sell", "fee_res",
        "trig", "trig_ver",
    )

    def __init__(self, acct: AccountRisk, mkt: MarketRisk) -> None:
        self.acct = acct
        self.mkt = mkt
        self.lots = 0
        self.funding_index = 0
        self.loss_index = 0
        self.open_buy = 0  # resting buy lots
        self.open_sell = 0  # resting sell lots
        self.fee_res = 0  # sum over resting orders of remaining x fee_per_lot
        self.trig = 0  # liquidation.py: oracle price at which the account must be re-checked
        self.trig_ver = 0

    def __hash__(self) -> int:
        return id(self)


def compute_owed(pos: PositionRisk) -> int:
    """contracts_spec.margin.owed_atoms on the live records: debts round up, credits down."""
    mkt = pos.mkt
    lots = pos.lots
    raw = lots * (mkt.funding_index - pos.funding_index) + abs(lots) * (mkt.loss_index - pos.loss_index)
    return ceil_div(raw, INDEX_SCALE) if raw >= 0 else -((-raw) // INDEX_SCALE)


class Risk:
    """Markets, accounts, the pre-trade check and the fill gate; emits into `out`."""

    def __init__(self, markets: tuple[MarketParams, ...] | list[MarketParams], genesis_time: int = 0) -> None:
        self.markets: dict[int, MarketRisk] = {p.market_id: MarketRisk(p, genesis_time) for p in markets}
        self.accounts: dict[bytes, AccountRisk] = {}
        self.fund = self.account(INSURANCE_FUND)
        self.fees = self.account(FEE_ACCOUNT)
        self.out: list[Any] = []
        self.dirty: list[AccountRisk] = []  # liquidation.py re-indexes these before a scan
        self.critical: dict[AccountRisk, None] = {}

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
        return pos

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
        """Below maintenance margin at the oracle prices (what process_liquidation verifies)."""
        return not acct.system and self.value(acct) < self.requirement(acct, True)

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
            if lots and (q.funding_index != mkt.funding_index or q.loss_index != mkt.loss_index):
                value -= compute_owed(q)
            if q is pos:
                lots = new
            if lots:
                n = lots * mkt.ok
                value += n
                if increasing:
                    required -= ((n if n < 0 else -n) * mkt.im) // _PPM
        return value >= required

    # --- pre-trade (hot path: bench/engine.py) --------------------------------------------------

    def admit(self, order: Resting, limit: int) -> Reject | None:
        """The pre-trade check stated in the module docstring; sets fee_per_lot and verified."""
        pos = order.pos
        mkt = pos.mkt
        acct = pos.acct
        lots = order.remaining
        p = pos.lots
        b = pos.open_buy
        s = pos.open_sell
        # max(|P + B|, |P - S|) = max(P + B, S - P): the two sum to B + S >= 0
        long_w = p + b
        short_w = s - p
        before = long_w if long_w > short_w else short_w
        if order.is_buy:
            long_w += lots
        else:
            short_w += lots
        after = long_w if long_w > short_w else short_w
        growing = after > before
        # Verify the worst case stays within the position and open-interest limits
        if growing and after > mkt.max_pos:
            return Reject.POSITION_LIMIT
        if growing and mkt.oi + lots > mkt.max_oi:
            return Reject.OPEN_INTEREST_LIMIT
        fee_per_lot = -((-limit * mkt.k * mkt.fee_max) // _PPM)
        order.fee_per_lot = fee_per_lot
        if acct.system:
            order.verified = True
            return None
        value = acct.collateral
        required = 0
        reserve = lots * fee_per_lot
        for q in acct.positions.values():
            m = q.mkt
            ql = q.lots
            if ql:
                value += ql * m.ok
                if q.funding_index != m.funding_index or q.loss_index != m.loss_index:
                    value -= compute_owed(q)
            if q is pos:
                w = after
            else:
                lw = ql + q.open_buy
                sw = q.open_sell - ql
                w = lw if lw > sw else sw
            if w:
                required -= (-w * m.ok * m.im) // _PPM
            reserve += q.fee_res
        edge = (limit - mkt.oracle) if order.is_buy else (mkt.oracle - limit)
        free = value - reserve - (edge * lots * mkt.k if edge > 0 else 0)
        # Verify the account covers initial margin on its worst case, or at least stays solvent
        # with an order that does not add to it
        if free >= required:
            order.verified = True
            return None
        if not growing and free >= 0:
            order.verified = order.reduce_only
            return None
        return Reject.INSUFFICIENT_MARGIN

    def rest(self, order: Resting) -> None:
        """Count a resting order's exposure and index it under its account."""
        pos = order.pos
        if order.is_buy:
            pos.open_buy += order.remaining
        else:
            pos.open_sell += order.remaining
        pos.fee_res += order.remaining * order.fee_per_lot
        acct = pos.acct
        acct.orders[order.id] = order
        if order.client_id:
            acct.clients[order.client_id] = order

    def drop(self, order: Resting) -> None:
        """Gate: a resting order leaves without a fill; release its exposure. Emits nothing."""
        pos = order.pos
        left = order.remaining
        if order.is_buy:
            pos.open_buy -= left
        else:
            pos.open_sell -= left
        pos.fee_res -= left * order.fee_per_lot
        order.remaining = 0
        acct = pos.acct
        del acct.orders[order.id]
        if order.client_id:
            acct.clients.pop(order.client_id, None)

    # --- fills (hot path: bench/engine.py) ------------------------------------------------------

    def fill(self, maker: Resting, taker: Resting, lots: int) -> int:
        """Gate: check one fill against process_trade's rules, then apply it exactly as it does."""
        price = maker.price
        mp = maker.pos
        mkt = mp.mkt
        # Verify the print is inside the band: a resting order the oracle left behind is dropped
        if price < mkt.lo or price > mkt.hi:
            return 0
        tp = taker.pos
        t_old = tp.lots
        m_old = mp.lots
        buy = taker.is_buy
        # Verify reduce-only orders only reduce: cap the fill, stop or drop when nothing is left
        if taker.reduce_only:
            cap = -t_old if buy else t_old
            if cap <= 0:
                return STOP
            if lots > cap:
                lots = cap
        if maker.reduce_only:
            cap = m_old if buy else -m_old
            if cap <= 0:
                return 0
            if lots > cap:
                lots = cap
        d = lots if buy else -lots
        t_new = t_old + d
        m_new = m_old - d
        # Verify position limits (a position above the limit may only shrink)
        limit = mkt.max_pos
        if (t_new > limit or -t_new > limit) and abs(t_new) > abs(t_old):
            return STOP
        if (m_new > limit or -m_new > limit) and abs(m_new) > abs(m_old):
            return 0
        # Verify the open-interest limit (total long lots)
        d_oi = ((t_new if t_new > 0 else 0) - (t_old if t_old > 0 else 0)
                + (m_new if m_new > 0 else 0) - (m_old if m_old > 0 else 0))
        oi = mkt.oi + d_oi
        if d_oi > 0 and oi > mkt.max_oi:
            return STOP
        cash = lots * price * mkt.k
        t_fee = -((-cash * mkt.taker_fee) // _PPM)
        m_fee = -((-cash * mkt.maker_fee) // _PPM)
        t_cash = -cash if buy else cash
        # Verify margin after the trade: initial if it adds risk, solvency otherwise
        if not taker.verified and not self.margin_ok(tp, t_old, t_new, t_cash - t_fee):
            return STOP
        if not self.margin_ok(mp, m_old, m_new, -t_cash - m_fee):
            return 0

        # Apply, in process_trade's order: settle both, move, cash, fees, market.
        if tp.funding_index != mkt.funding_index or tp.loss_index != mkt.loss_index:
            self.settle(tp)
        if mp.funding_index != mkt.funding_index or mp.loss_index != mkt.loss_index:
            self.settle(mp)
        ta = tp.acct
        ma = mp.acct
        ta.collateral += t_cash - t_fee
        ma.collateral -= t_cash + m_fee
        self.fees.collateral += t_fee + m_fee
        tp.lots = t_new
        mp.lots = m_new
        mkt.oi = oi
        mkt.premium_sum += (price - mkt.oracle) * lots
        mkt.premium_lots += lots
        if maker.is_buy:
            mp.open_buy -= lots
        else:
            mp.open_sell -= lots
        mp.fee_res -= lots * maker.fee_per_lot
        taker.remaining -= lots
        left = maker.remaining = maker.remaining - lots
        if not left:
            del ma.orders[maker.id]
            if maker.client_id:
                ma.clients.pop(maker.client_id, None)
        self.out.append(Fill(maker.id, taker.id, lots, price))

        # Keep the liquidation index's corner cushion (liquidation.py) exact, or queue a re-index.
        q = ta.liq_q
        if q is not None and (t_old > 0 < t_new or t_old < 0 > t_new):
            q += _PPM * (t_cash - t_fee)
            b = tp.trig
            if b:
                q += b * mkt.k * (_PPM * d - mkt.mm * (abs(t_new) - abs(t_old)))
            if q >= 0:
                ta.liq_q = q
            else:
                self.touch(ta)
        elif not ta.system:
            self.touch(ta)
        q = ma.liq_q
        if q is not None and (m_old > 0 < m_new or m_old < 0 > m_new):
            q -= _PPM * (t_cash + m_fee)
            b = mp.trig
            if b:
                q += b * mkt.k * (-_PPM * d - mkt.mm * (abs(m_new) - abs(m_old)))
            if q >= 0:
                ma.liq_q = q
            else:
                self.touch(ma)
        elif not ma.system:
            self.touch(ma)
        if not t_old or not t_new:
            self.hold(tp)
        if not m_old or not m_new:
            self.hold(mp)
        return lots

    def plan(self, maker: Resting, taker: Resting, lots: int, ctx: dict[Any, Any]) -> int:
        """Gate: `fill`'s decision for a fill-or-kill plan, with the plan's earlier fills applied.

        `ctx` maps a position to (lots delta, cash delta) planned so far, and "oi" to the open
        interest delta; decisions match `fill` step for step given those deltas.
        """
        price = maker.price
        mp = maker.pos
        mkt = mp.mkt
        if price < mkt.lo or price > mkt.hi:
            return 0
        tp = taker.pos
        t_dl, t_dc = ctx.get(tp, (0, 0))
        m_dl, m_dc = ctx.get(mp, (0, 0))
        t_old = tp.lots + t_dl
        m_old = mp.lots + m_dl
        buy = taker.is_buy
        if taker.reduce_only:
            cap = -t_old if buy else t_old
            if cap <= 0:
                return STOP
            lots = min(lots, cap)
        if maker.reduce_only:
            cap = m_old if buy else -m_old
            if cap <= 0:
                return 0
            lots = min(lots, cap)
        d = lots if buy else -lots
        t_new = t_old + d
        m_new = m_old - d
        limit = mkt.max_pos
        if abs(t_new) > limit and abs(t_new) > abs(t_old):
            return STOP
        if abs(m_new) > limit and abs(m_new) > abs(m_old):
            return 0
        d_oi = max(t_new, 0) - max(t_old, 0) + max(m_new, 0) - max(m_old, 0)
        oi = mkt.oi + ctx.get("oi", 0) + d_oi
        if d_oi > 0 and oi > mkt.max_oi:
            return STOP
        cash = lots * price * mkt.k
        t_cash = (-cash if buy else cash) - ceil_div(cash * mkt.taker_fee, _PPM)
        m_cash = (cash if buy else -cash) - ceil_div(cash * mkt.maker_fee, _PPM)
        # margin_ok reads owed from the unmoved records, as the first real fill settles them
        if not taker.verified and not self.margin_ok(tp, t_old, t_new, t_dc + t_cash):
            return STOP
        if not self.margin_ok(mp, m_old, m_new, m_dc + m_cash):
            return 0
        ctx[tp] = (t_dl + d, t_dc + t_cash)
        ctx[mp] = (m_dl - d, m_dc + m_cash)
        ctx["oi"] = ctx.get("oi", 0) + d_oi
        return lots

    # --- settlement and liquidation, mirroring process_liquidation ------------------------------

    def settle(self, pos: PositionRisk) -> None:
        """stf.settle: the insurance fund is the counterparty; indices brought current."""
        mkt = pos.mkt
        amount = compute_owed(pos)
        if amount and pos.acct is not self.fund:
            pos.acct.collateral -= amount
            self.fund.collateral += amount
        pos.funding_index = mkt.funding_index
        pos.loss_index = mkt.loss_index

    def hold(self, pos: PositionRisk) -> None:
        """Keep the market's set of holders exact after a position opened or closed."""
        if pos.lots:
            pos.mkt.holders[pos] = None
        else:
            pos.mkt.holders.pop(pos, None)

    def touch(self, acct: AccountRisk) -> None:
        """Queue an account for re-indexing by the liquidation index (liquidation.py)."""
        acct.liq_q = None
        if not acct.dirty and not acct.system:
            acct.dirty = True
            self.dirty.append(acct)

    def apply_liquidation(self, pos: PositionRisk, lots: int, price: int) -> None:
        """process_liquidation's effects (its checks are the caller's): the fund takes the lots."""
        mkt = pos.mkt
        acct = pos.acct
        fund = self.fund
        fpos = self.position(fund, mkt)
        self.settle(pos)
        self.settle(fpos)
        delta = -lots if pos.lots > 0 else lots
        a_old, f_old = pos.lots, fpos.lots
        pos.lots += delta
        fpos.lots -= delta
        cash = delta * price * mkt.k
        penalty = ceil_div(lots * price * mkt.k * mkt.penalty, _PPM)
        acct.collateral -= cash + penalty
        fund.collateral += cash + penalty
        oi = mkt.oi + max(pos.lots, 0) - max(a_old, 0) + max(fpos.lots, 0) - max(f_old, 0)
        if not any(q.lots for q in acct.positions.values()) and acct.collateral < 0:
            # stf.cover_deficit: the fund pays; beyond what it had, the market's other lots do
            deficit = -acct.collateral
            acct.collateral = 0
            shortfall = deficit - max(fund.collateral, 0)
            fund.collateral -= deficit
            other_lots = 2 * oi - abs(fpos.lots)
            if shortfall > 0 and other_lots > 0:
                mkt.loss_index += ceil_div(shortfall * INDEX_SCALE, other_lots)
                for holder in mkt.holders:
                    self.touch(holder.acct)
        mkt.oi = oi
        self.hold(pos)
        self.hold(fpos)
        self.touch(acct)

    def apply_funding(self, mkt: MarketRisk, delta: int, now: int) -> None:
        """process_funding_tick's effects: every holder of the market now owes differently."""
        mkt.funding_index += delta
        mkt.premium_sum = 0
        mkt.premium_lots = 0
        mkt.last_funding_time = now
        for holder in mkt.holders:
            self.touch(holder.acct)
