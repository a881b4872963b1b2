"""The liquidation index: which accounts an oracle move may have put below maintenance margin.

An oracle update must not scan every account. Each indexed account gets a *safe box*: one
trigger price per market it holds, such that while every oracle price stays on the safe side
of its trigger (at or above it for a long, at or below it for a short) the account is provably
at or above maintenance margin. Triggers sit in two heaps per market (longs by highest
trigger, shorts by lowest), so an oracle update pops exactly the entries it crossed, and each
popped account is checked exactly against the spec's margin functions: liquidated if below
maintenance, otherwise given a new box at the current prices. Several markets are why it is a
box and not one liquidation price: moving one market's price leaves the other triggers valid.

The proof. Write C' = collateral - sum of unsettled owed, sigma_k = K_k (1e6 P_k - mm_k |P_k|)
(the slope of 1e6 x (value - maintenance) in market k's price, before rounding up), and N the
number of positions. Then 1e6 x (value - maintenance) >= 1e6 C' + sum_k sigma_k o_k - 1e6 N,
linear in the prices, so over the box its minimum is at the corner o_k = trigger_k:
    Q = 1e6 C' + sum_k sigma_k trigger_k - 1e6 N   (AccountRisk.liq_q)
Q >= 0 means no price vector inside the box makes the account liquidatable. A new box splits
the cushion at the current prices evenly between the markets; a long's trigger is floored at
0 (a long with enough collateral is never liquidated).

Keeping Q exact without re-reading the account: a fill that keeps a position on its side
changes C' by the fill's cash and fee (settling is neutral) and sigma_m by the lots moved; both
are O(1), applied in risk.Risk.fill. A fill that opens, closes or flips a position, or leaves
Q < 0, queues the account (`Risk.touch`); funding ticks and socialised losses change C' for
every holder of the market and queue them all (once per funding interval, not per update).
Queued accounts are re-boxed before any scan. An account whose cushion is within rounding of
zero (Q < 0 at the current prices though not liquidatable) cannot get a box: it is "critical"
and re-checked on every oracle update of a market it holds.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Final

from contracts_spec.types import PPM
from sequencer.engine.risk import AccountRisk, MarketRisk, PositionRisk, Risk, compute_owed

# Rebuild a market's trigger heaps when stale entries outnumber live ones by this factor.
_STALE_FACTOR: Final = 4


class LiquidationIndex:
    """Trigger heaps over the risk state's accounts; see the module docstring for the rule."""

    def __init__(self, risk: Risk) -> None:
        self.risk = risk
        self.seq = 0
        self.critical: dict[AccountRisk, None] = {}

    def reindex(self, acct: AccountRisk) -> bool:
        """Give `acct` a new safe box at the current prices; True if it is liquidatable now."""
        acct.dirty = False
        acct.liq_q = None
        self.critical.pop(acct, None)
        held = [pos for pos in acct.positions.values() if pos.lots]
        for pos in acct.positions.values():
            pos.trig_ver += 1
            pos.trig = 0
        if acct.system or not held:
            return False
        risk = self.risk
        if risk.value(acct) < risk.requirement(acct, True):
            return True
        q = PPM * (acct.collateral - sum(compute_owed(pos) for pos in held)) - PPM * len(held)
        slopes = []
        for pos in held:
            mkt = pos.mkt
            slope = mkt.k * (PPM * pos.lots - mkt.mm * abs(pos.lots))
            slopes.append(slope)
            q += slope * mkt.oracle
        if q < 0 or any(not pos.mkt.oracle for pos in held):
            acct.critical = True
            self.critical[acct] = None
            return False
        acct.critical = False
        share = q // len(held)
        for pos, slope in zip(held, slopes, strict=True):
            mkt = pos.mkt
            if slope > 0:  # long: safe while the price stays at or above the trigger
                drop = min(mkt.oracle, share // slope)
                pos.trig = mkt.oracle - drop
                q -= slope * drop
                if pos.trig > 0:
                    self._push(mkt.long_heap, -pos.trig, pos)
            else:  # short: safe while the price stays at or below the trigger
                rise = share // -slope
                pos.trig = mkt.oracle + rise
                q += slope * rise
                self._push(mkt.short_heap, pos.trig, pos)
        acct.liq_q = q
        return False

    def _push(self, heap: list[tuple[int, int, PositionRisk, int]], key: int, pos: PositionRisk) -> None:
        self.seq += 1
        heappush(heap, (key, self.seq, pos, pos.trig_ver))
        if len(heap) > _STALE_FACTOR * (len(pos.mkt.holders) + 256):
            heap[:] = [e for e in heap if e[3] == e[2].trig_ver and e[2].lots]
            heapify(heap)

    def drain(self) -> list[AccountRisk]:
        """Re-box every queued account; return those found below maintenance, in queue order."""
        risk = self.risk
        found = []
        while risk.dirty:
            queue, risk.dirty = risk.dirty, []
            for acct in queue:
                if acct.dirty and self.reindex(acct):
                    found.append(acct)
        return found

    def scan(self, mkt: MarketRisk) -> list[AccountRisk]:
        """After `mkt`'s oracle price moved: every account now below maintenance margin.

        Queued accounts first, then the triggers the move crossed, then critical accounts
        holding the market; each candidate is checked exactly, the healthy ones re-boxed.
        """
        found = self.drain()
        seen = dict.fromkeys(found)
        price = mkt.oracle
        risk = self.risk
        crossed: list[AccountRisk] = []
        heap = mkt.long_heap
        while heap and -heap[0][0] > price:
            _, _, pos, ver = heappop(heap)
            if ver == pos.trig_ver:
                crossed.append(pos.acct)
        heap = mkt.short_heap
        while heap and heap[0][0] < price:
            _, _, pos, ver = heappop(heap)
            if ver == pos.trig_ver:
                crossed.append(pos.acct)
        for acct in self.critical:
            pos = acct.positions.get(mkt.id)
            if pos is not None and pos.lots:
                crossed.append(acct)
        for acct in crossed:
            if acct in seen:
                continue
            if risk.is_liquidatable(acct):
                seen[acct] = None
                found.append(acct)
            else:
                self.reindex(acct)
        return found


def brute_force(risk: Risk) -> list[AccountRisk]:
    """Every account below maintenance margin, by scanning them all (what tests compare with)."""
    return [acct for acct in risk.accounts.values() if risk.is_liquidatable(acct)]
