"""Matching: walk a book in price-time priority against an incoming order, apply each fill.

Every fill is checked against contracts_spec.stf.process_trade's rules and applied exactly as
it applies them (settle both positions, move lots, cash at the maker's price, fees rounded up,
premium, open interest, margin), so each emitted Fill is a Trade the spec accepts; the
property tests in tests/sequencer/ hold the result equal to the spec's state. What cannot
trade is engine policy and emits nothing: a resting order whose price the oracle band has
left behind, or whose account fails its margin, position or reduce-only rule, is dropped; a
taker that would break its own is stopped; self-trades follow the request's Stp.

Hot path, guarded by bench/engine.py: `match` is one loop with the taker's side held in
locals and written back once (the spec's per-trade updates of the taker's collateral, the fee
account and the premium are sums, so the result is the same), and the maker's side applied
per fill. Precondition: no resting order in the book has expired (Engine sweeps first).
"""

from __future__ import annotations

from heapq import heappop
from typing import Any, Final

from contracts_spec.margin import ceil_div
from contracts_spec.types import PPM
from sequencer.engine.book import Book, Resting, Stp
from sequencer.engine.risk import Fill, MarketRisk, PositionRisk, Risk

_PPM: Final = PPM
_ROUND_UP: Final = PPM - 1  # (x + 999_999) // 1e6 = ceil(x / 1e6) for x >= 0
_new_tuple = tuple.__new__  # builds a Fill without NamedTuple's Python-level __new__
_EXPIRE_MAKER: Final = Stp.EXPIRE_MAKER
_EXPIRE_TAKER: Final = Stp.EXPIRE_TAKER


def position_ok(mkt: MarketRisk, old: int, new: int) -> bool:
    """process_trade's position limit: above the limit a position may only shrink."""
    return abs(new) <= mkt.max_pos or abs(new) <= abs(old)


def oi_after(risk: Risk, mkt: MarketRisk, t_old: int, t_new: int, m_old: int, m_new: int) -> int:
    """Open interest after one fill, exactly; -1 if process_trade refuses it (above the limit and up)."""
    oi = risk.open_interest(mkt)
    after = oi + max(t_new, 0) - max(t_old, 0) + max(m_new, 0) - max(m_old, 0)
    return -1 if after > mkt.max_oi and after > oi else after


def match(risk: Risk, book: Book, taker: Resting, limit: int, stp: int, verified: bool) -> bool:
    """Fill `taker` against the book up to `limit`; False if it was stopped (its rest must not rest).

    `verified`: the taker's admission proved every fill it can make (risk.py), so its margin
    is not checked per fill.
    """
    buy = taker.is_buy
    if buy:
        levels, keys, lim = book.asks, book.ask_keys, limit
    else:
        levels, keys, lim = book.bids, book.bid_keys, -limit
    tp = taker.pos
    ta = tp.acct
    mkt = tp.mkt
    lo, hi, k = mkt.lo, mkt.hi, mkt.k
    taker_fee, maker_fee = mkt.taker_fee, mkt.maker_fee
    t_reduce = taker.reduce_only
    t_room = tp.room >= 0  # the taker's box proves its position limit
    t_lots = tp.lots
    want = taker.remaining
    t_cash = fees = notional = traded = 0
    oi_room = mkt.oi_room
    epoch = mkt.epoch
    t_settle = tp.epoch != epoch  # settle the taker at its first fill (process_trade settles both)
    append = risk.out.append
    new_tuple, fill_type = _new_tuple, Fill
    taker_id = taker.id
    stopped = False
    while keys and keys[0] <= lim:
        key = keys[0]
        level = levels[key]
        while level:  # the level's queue, in time priority
            maker = level[0]
            left = maker.remaining
            if not left:  # cancelled earlier, removed now
                level.popleft()
                book.dead -= 1
                continue
            mp = maker.pos
            ma = mp.acct
            if ma is ta:
                if stp != _EXPIRE_TAKER:
                    risk.drop(maker)
                    level.popleft()
                if stp != _EXPIRE_MAKER:
                    stopped = True
                    break
                continue
            price = maker.price
            # Verify the print is inside the band: a resting order the oracle left behind is dropped
            if price < lo or price > hi:
                risk.drop(maker)
                level.popleft()
                continue
            lots = left if left < want else want
            # Verify reduce-only orders only reduce: cap the fill; stop or drop when nothing is left
            if t_reduce:
                cap = -t_lots if buy else t_lots
                if cap <= 0:
                    stopped = True
                    break
                if lots > cap:
                    lots = cap
            m_old = mp.lots
            if maker.reduce_only:
                cap = m_old if buy else -m_old
                if cap <= 0:
                    risk.drop(maker)
                    level.popleft()
                    continue
                if lots > cap:
                    lots = cap
            d = lots if buy else -lots
            t_new = t_lots + d
            m_new = m_old - d
            # Verify position limits, unless the box's room proves them
            if not t_room and not position_ok(mkt, t_lots, t_new):
                stopped = True
                break
            if mp.room < 0 and not position_ok(mkt, m_old, m_new):
                risk.drop(maker)
                level.popleft()
                continue
            # Verify the open-interest limit: a fill adds at most `lots` to it
            oi_room -= lots
            if oi_room < 0:
                after = oi_after(risk, mkt, t_lots, t_new, m_old, m_new)
                if after < 0:
                    stopped = True
                    break
                oi_room = mkt.max_oi - after
            cash = lots * price * k
            t_fee = (cash * taker_fee + _ROUND_UP) // _PPM
            m_fee = (cash * maker_fee + _ROUND_UP) // _PPM
            if buy:
                fill_cash = -cash - t_fee
                m_cash = cash - m_fee
            else:
                fill_cash = cash - t_fee
                m_cash = -cash - m_fee
            # Verify margin after the trade (initial if it adds risk, solvency otherwise), unless a box proves it
            if not verified and not risk.margin_ok(tp, t_lots, t_new, t_cash + fill_cash):
                stopped = True
                break
            if ma.slack < 0 and not risk.margin_ok(mp, m_old, m_new, m_cash):
                risk.drop(maker)
                level.popleft()
                continue

            # Apply (process_trade: settle both, move, cash, fees, market)
            if t_settle:
                risk.settle(tp)
                t_settle = False
            if mp.epoch != epoch:
                risk.settle(mp)
            ma.collateral += m_cash
            mp.lots = m_new
            tp.lots = t_lots = t_new
            t_cash += fill_cash
            fees += t_fee + m_fee
            notional += cash  # lots x price x K
            traded += lots
            if buy:
                mp.open_sell -= lots
            else:
                mp.open_buy -= lots
            if lots == left:
                level.popleft()
                maker.remaining = 0
                del ma.orders[maker.id]
                if ma.clients:
                    ma.clients.pop(maker.signed.order.client_id, None)
            else:
                maker.remaining = left - lots
            append(new_tuple(fill_type, (maker.id, taker_id, lots, price)))
            if ma.slack < 0:
                risk.touch(ma)
            want -= lots
            if not want:
                break
        if stopped or not want:
            break
        heappop(keys)  # the level is used up
        del levels[key]
    taker.remaining = want
    if traded:
        ta.collateral += t_cash
        risk.fees.collateral += fees
        mkt.premium_sum += notional // k - mkt.oracle * traded  # sum of (price - oracle) x lots
        mkt.premium_lots += traded
        mkt.oi_room = oi_room
        if ta.slack < 0:
            risk.touch(ta)
    return not stopped


def fillable(risk: Risk, book: Book, taker: Resting, limit: int, stp: int, verified: bool) -> bool:
    """Would `match` fill the taker completely? The fill-or-kill test, without side effects.

    Walks the same orders in the same priority with the same decisions as `match`, with the
    plan's running position, cash and open-interest deltas standing in for applied fills.
    """
    if taker.is_buy:
        levels, lim = book.asks, limit
    else:
        levels, lim = book.bids, -limit
    need = taker.remaining
    ctx: dict[Any, Any] = {}
    for key in sorted(k for k in levels if k <= lim):
        for maker in levels[key]:
            left = maker.remaining
            if not left:
                continue
            if maker.pos.acct is taker.pos.acct:
                if stp == _EXPIRE_MAKER:
                    continue
                return False
            while left and need:
                done = _plan(risk, maker, taker, left if left < need else need, ctx, verified)
                if done < 0:
                    return False
                if done == 0:
                    break
                left -= done
                need -= done
            if not need:
                return True
    return False


def _plan(risk: Risk, maker: Resting, taker: Resting, lots: int, ctx: dict[Any, Any], verified: bool) -> int:
    """`match`'s decision for one fill given the plan's earlier fills: lots, 0 (maker dropped), -1 (stop)."""
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
            return -1
        lots = min(lots, cap)
    if maker.reduce_only:
        cap = m_old if buy else -m_old
        if cap <= 0:
            return 0
        lots = min(lots, cap)
    d = lots if buy else -lots
    t_new = t_old + d
    m_new = m_old - d
    if tp.room < 0 and not position_ok(mkt, t_old, t_new):
        return -1
    if mp.room < 0 and not position_ok(mkt, m_old, m_new):
        return 0
    oi_room = ctx.get("oi_room", mkt.oi_room) - lots
    if oi_room < 0:
        oi = ctx.get("oi")
        if oi is None:
            oi = risk.open_interest(mkt)
        after = oi + max(t_new, 0) - max(t_old, 0) + max(m_new, 0) - max(m_old, 0)
        if after > mkt.max_oi and after > oi:
            return -1
        ctx["oi"] = after
        oi_room = mkt.max_oi - after
    elif "oi" in ctx:
        ctx["oi"] += max(t_new, 0) - max(t_old, 0) + max(m_new, 0) - max(m_old, 0)
    cash = lots * price * mkt.k
    t_cash = (-cash if buy else cash) - ceil_div(cash * mkt.taker_fee, _PPM)
    m_cash = (cash if buy else -cash) - ceil_div(cash * mkt.maker_fee, _PPM)
    # margin_ok reads owed from the unmoved records, as the first real fill settles them
    if not verified and not risk.margin_ok(tp, t_old, t_new, t_dc + t_cash):
        return -1
    if mp.acct.slack < 0 and not risk.margin_ok(mp, m_old, m_new, m_dc + m_cash):
        return 0
    ctx[tp] = (t_dl + d, t_dc + t_cash)
    ctx[mp] = (m_dl - d, m_dc + m_cash)
    ctx["oi_room"] = oi_room
    return lots


__all__ = ["fillable", "match", "oi_after", "position_ok", "PositionRisk"]
