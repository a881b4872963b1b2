"""Price-time-priority order books, one per market: resting orders, priority, matching, STP.

The book owns where orders rest and in which order they meet an incoming one; whether a
given fill is allowed (band, margin, reduce-only, limits) and what it does to accounts is
asked of a `Gate` (risk.py implements it). Hot path, guarded by bench/engine.py: `match`
runs for every incoming order of the benchmark, so it binds locals, allocates nothing per
fill beyond what the gate emits, and deletes lazily (a cancel only zeroes `remaining`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from enum import IntEnum
from heapq import heapify, heappop, heappush
from typing import Any, Final, Protocol

# A gate's answer to `fill` when the incoming order must stop matching (its rest is dropped).
STOP: Final = -1

# Rebuild a book's queues when this many cancelled orders wait for lazy removal.
COMPACT_AFTER: Final = 4096


class Stp(IntEnum):
    """Self-trade prevention: what happens when an incoming order meets its own account's order.

    An engine-side field of the request, not of the signed order: the spec only forbids the
    trade itself, and whichever order is expired, nothing is emitted for it.
    """

    EXPIRE_MAKER = 0  # cancel the resting order, keep matching
    EXPIRE_TAKER = 1  # stop the incoming order; its remainder is dropped
    EXPIRE_BOTH = 2


class Resting:
    """One order in the engine: the incoming one while it matches, then its resting remainder.

    `pos` is the risk state's position of (account, market) (risk.PositionRisk); the book
    reads only `account`, `is_buy`, `price`, `remaining`, `expiry` and hands orders to the gate.
    `price` is the limit the engine matches at (a market order's is tightened to the band).
    """

    __slots__ = ("id", "account", "is_buy", "price", "remaining", "expiry", "reduce_only", "client_id",
                 "verified", "pos", "signed")

    def __init__(
        self,
        order_id: bytes,
        account: bytes,
        is_buy: bool,
        price: int,
        lots: int,
        expiry: int = 0,
        reduce_only: bool = False,
        client_id: int = 0,
        pos: Any = None,
        signed: Any = None,
    ) -> None:
        self.id = order_id
        self.account = account
        self.is_buy = is_buy
        self.price = price
        self.remaining = lots
        self.expiry = expiry
        self.reduce_only = reduce_only
        self.client_id = client_id
        self.verified = False  # set by risk.admit: every taker fill of this order is proven
        self.pos = pos
        self.signed = signed  # the SignedOrder it came from; None for the engine's own orders

    def __repr__(self) -> str:
        side = "buy" if self.is_buy else "sell"
        return f"Resting({self.id.hex()[:10]}, {side} {self.remaining} @ {self.price})"


class Gate(Protocol):
    """What the book asks of risk, once per candidate fill, in priority order."""

    def fill(self, maker: Resting, taker: Resting, lots: int) -> int:
        """Execute up to `lots` at the maker's price: >0 lots done (both `remaining` reduced),
        0 the maker cannot trade (the book drops it), STOP the taker must stop."""
        ...

    def drop(self, order: Resting) -> None:
        """A resting order leaves the book without a fill (expired, STP, unusable)."""
        ...

    def plan(self, maker: Resting, taker: Resting, lots: int, ctx: dict[Any, Any]) -> int:
        """`fill` without side effects, for fill-or-kill: `ctx` carries the plan's running deltas."""
        ...


class Book:
    """Bids and asks as dicts of FIFO queues keyed by price, with heaps for the best key.

    Keys are the price for asks and minus the price for bids, so the best level of either
    side is its heap's smallest key and "crosses a limit" is `key <= limit key` on both.
    """

    __slots__ = ("market", "bids", "asks", "bid_keys", "ask_keys", "live", "dead")

    def __init__(self, market: int) -> None:
        self.market = market
        self.bids: dict[int, deque[Resting]] = {}  # -price -> queue
        self.asks: dict[int, deque[Resting]] = {}  # price -> queue
        self.bid_keys: list[int] = []
        self.ask_keys: list[int] = []
        self.live = 0  # resting orders with remaining > 0
        self.dead = 0  # cancelled orders still sitting in a queue

    # --- resting ---------------------------------------------------------------------------

    def add(self, order: Resting) -> None:
        """Queue an order at the back of its price level."""
        if order.is_buy:
            key, levels, keys = -order.price, self.bids, self.bid_keys
        else:
            key, levels, keys = order.price, self.asks, self.ask_keys
        level = levels.get(key)
        if level is None:
            level = levels[key] = deque()
            heappush(keys, key)
        level.append(order)
        self.live += 1

    def cancel(self, order: Resting) -> None:
        """Take a resting order out of the book (lazily: its queue slot is skipped later)."""
        order.remaining = 0
        self.live -= 1
        self.dead += 1
        if self.dead > COMPACT_AFTER and self.dead > self.live:
            self.compact()

    def compact(self) -> None:
        """Drop cancelled orders and empty levels from the queues and heaps."""
        for levels, keys in ((self.bids, self.bid_keys), (self.asks, self.ask_keys)):
            for key in list(levels):
                level = deque(o for o in levels[key] if o.remaining)
                if level:
                    levels[key] = level
                else:
                    del levels[key]
            keys[:] = list(levels)
            heapify(keys)
        self.dead = 0

    def _top(self, levels: dict[int, deque[Resting]], keys: list[int]) -> int | None:
        """The best key of one side with a live order at its front, cleaning what lies above it."""
        while keys:
            key = keys[0]
            level = levels[key]
            while level and not level[0].remaining:
                level.popleft()
                self.dead -= 1
            if level:
                return key
            heappop(keys)
            del levels[key]
        return None

    def best_bid(self) -> int | None:
        key = self._top(self.bids, self.bid_keys)
        return None if key is None else -key

    def best_ask(self) -> int | None:
        return self._top(self.asks, self.ask_keys)

    def would_cross(self, is_buy: bool, price: int) -> bool:
        """Would an order at `price` take liquidity (the post-only test)?"""
        if is_buy:
            best = self.best_ask()
            return best is not None and best <= price
        best = self.best_bid()
        return best is not None and best >= price

    # --- matching (hot path: bench/engine.py) ------------------------------------------------

    def match(self, taker: Resting, limit: int, stp: int, now: int, gate: Gate) -> bool:
        """Match `taker` against the other side up to `limit`; True unless it was stopped.

        A stopped taker (self-trade prevention expiring it, or the gate saying STOP) must not
        rest: the book may still cross its price.
        """
        if taker.is_buy:
            levels, keys, lim = self.asks, self.ask_keys, limit
        else:
            levels, keys, lim = self.bids, self.bid_keys, -limit
        fill, drop = gate.fill, gate.drop
        account = taker.account
        while keys and keys[0] <= lim:
            key = keys[0]
            level = levels[key]
            if not level:
                heappop(keys)
                del levels[key]
                continue
            maker = level[0]
            left = maker.remaining
            if not left:  # cancelled earlier, removed now
                level.popleft()
                self.dead -= 1
                continue
            if maker.expiry and now > maker.expiry:
                drop(maker)
                level.popleft()
                self.live -= 1
                continue
            if maker.account == account:
                if stp != Stp.EXPIRE_TAKER:
                    drop(maker)
                    level.popleft()
                    self.live -= 1
                if stp != Stp.EXPIRE_MAKER:
                    return False
                continue
            want = taker.remaining
            done = fill(maker, taker, left if left < want else want)
            if done > 0:
                if not maker.remaining:
                    level.popleft()
                    self.live -= 1
                if not taker.remaining:
                    return True
            elif done == 0:
                drop(maker)
                level.popleft()
                self.live -= 1
            else:
                return False
        return True

    def fillable(self, taker: Resting, limit: int, stp: int, now: int, gate: Gate) -> bool:
        """Would `match` fill the taker completely? The fill-or-kill test, without side effects.

        Walks the same orders in the same priority with the same decisions as `match`, asking
        `gate.plan` (which tracks the plan's running position and cash deltas) for each fill.
        """
        if taker.is_buy:
            levels, lim = self.asks, limit
        else:
            levels, lim = self.bids, -limit
        need = taker.remaining
        ctx: dict[Any, Any] = {}
        for key in sorted(k for k in levels if k <= lim):
            for maker in levels[key]:
                left = maker.remaining
                if not left or (maker.expiry and now > maker.expiry):
                    continue
                if maker.account == taker.account:
                    if stp == Stp.EXPIRE_MAKER:
                        continue
                    return False
                while left and need:
                    done = gate.plan(maker, taker, left if left < need else need, ctx)
                    if done < 0:
                        return False
                    if done == 0:
                        break
                    left -= done
                    need -= done
                if not need:
                    return True
        return False

    # --- views -------------------------------------------------------------------------------

    def depth(self, levels_wanted: int = 10) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Aggregated (price, lots) per level, best first: bids, asks."""
        out: list[list[tuple[int, int]]] = []
        for levels, sign in ((self.bids, -1), (self.asks, 1)):
            side: list[tuple[int, int]] = []
            for key in sorted(levels):
                lots = sum(o.remaining for o in levels[key])
                if lots:
                    side.append((sign * key, lots))
                    if len(side) == levels_wanted:
                        break
            out.append(side)
        return out[0], out[1]

    def orders(self, is_buy: bool) -> Iterator[Resting]:
        """Live orders of one side in priority order (best price, then time)."""
        levels = self.bids if is_buy else self.asks
        for key in sorted(levels):
            for order in levels[key]:
                if order.remaining:
                    yield order
