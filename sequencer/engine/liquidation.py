"""The liquidation index: which accounts an oracle move may have put below maintenance margin.

An oracle update must not scan every account. Every account with exposure has a *box* of
oracle prices, one interval per market it is exposed in, inside which it is provably safe
(risk.py draws them): a margin box (worst-case excess E >= 0 anywhere inside, which implies
value >= initial >= maintenance), or for a marginal account (E < 0) a maintenance box, drawn
on positions alone. The box edges sit in two heaps per market: low edges by highest, high
edges by lowest. An oracle update pops exactly the edges it crossed; each such account is
checked exactly with the spec's margin functions, and is liquidated if below maintenance or
gets a new box at the current prices otherwise. Moving one market's price leaves the other
markets' intervals valid: that is why it is a box and not one liquidation price per account.

The maintenance box. With C' = collateral - unsettled owed, sigma_k = K_k (1e6 P_k - mm_k |P_k|)
and N positions, 1e6 x (value - maintenance) >= 1e6 C' + sum_k sigma_k o_k - 1e6 N (each
ceil costs < 1 atom): linear in the prices, so its minimum over the box is at the corner of
the triggers. The cushion at the current prices is split evenly between the markets; a long
gets a low edge, a short a high edge.

What the box cannot see falls back to an exact check: an account queued by `Risk.touch` (a
marginal account's fill, a funding tick or socialised loss moving its indices, a liquidation)
is re-boxed before every scan, and an account with no box at all (within rounding of
maintenance, or below it but not yet liquidated, e.g. for a stale oracle) is `critical`:
checked on every oracle update of a market it holds. `brute_force` is what the tests compare
the index with.
"""

from __future__ import annotations

from heapq import heappop

from sequencer.engine.risk import AccountRisk, MarketRisk, Risk


def drain(risk: Risk) -> list[AccountRisk]:
    """Re-box every queued account; return those found below maintenance, in queue order."""
    found = []
    while risk.dirty:
        queue, risk.dirty = risk.dirty, []
        for acct in queue:
            if acct.dirty and risk.rebox(acct):
                found.append(acct)
    return found


def scan(risk: Risk, mkt: MarketRisk) -> list[AccountRisk]:
    """After `mkt`'s oracle price moved: every account now below maintenance margin, in a
    deterministic order (queued accounts, then crossed edges in heap order, then critical)."""
    found = drain(risk)
    seen = dict.fromkeys(found)
    price = mkt.oracle
    crossed: list[AccountRisk] = []
    heap = mkt.lo_heap
    while heap and -heap[0][0] > price:
        _, _, pos, version = heappop(heap)
        if version == pos.box_ver:
            crossed.append(pos.acct)
    heap = mkt.hi_heap
    while heap and heap[0][0] < price:
        _, _, pos, version = heappop(heap)
        if version == pos.box_ver:
            crossed.append(pos.acct)
    for acct in risk.critical:
        held = acct.positions.get(mkt.id)
        if held is not None and held.lots:
            crossed.append(acct)
    for acct in crossed:
        if acct in seen:
            continue
        seen[acct] = None
        if risk.rebox(acct):
            found.append(acct)
    return found


def critical(risk: Risk) -> list[AccountRisk]:
    """Critical accounts below maintenance now (whatever market moved)."""
    return [acct for acct in risk.critical if risk.is_liquidatable(acct)]


def brute_force(risk: Risk) -> list[AccountRisk]:
    """Every account below maintenance margin, by scanning them all (what tests compare with)."""
    return [acct for acct in risk.accounts.values() if risk.is_liquidatable(acct)]
