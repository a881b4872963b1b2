"""Price-time-priority order books, one per market: where resting orders sit, in what order.

Bids and asks are dicts of FIFO queues keyed by price, with a heap of keys per side for the
best level (the structure of ../shared/bench/floor.py). Deletion is lazy: a cancel zeroes
`remaining` and the queue slot is skipped when it reaches the front. Walking the book and
applying fills is matching.py's; this module is the data structure and its views.
Hot path, guarded by bench/engine.py: `Book.cancel` and the queue layout matching.py reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from enum import IntEnum
from heapq import heapify, heappop, heappush
from typing import Any, Final

# Rebuild a book's queues once this many cancelled orders wait for lazy removal (and at
# least as many as were live at the last rebuild, so rebuilds stay amortised O(1)).
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

    `pos` is the risk state's position of (account, market) (risk.PositionRisk); `price` is
    the limit the engine matches at (a market order's is tightened to the band's edge);
    `signed` is the SignedOrder it came from (None for the engine's own fund orders), where
    everything else about the order is read.
    """

    __slots__ = ("id", "is_buy", "price", "remaining", "reduce_only", "pos", "signed")

    def __init__(
        self, order_id: bytes, is_buy: bool, price: int, lots: int, reduce_only: bool, pos: Any, signed: Any
    ) -> None:
        self.id = order_id
        self.is_buy = is_buy
        self.price = price
        self.remaining = lots
        self.reduce_only = reduce_only
        self.pos = pos
        self.signed = signed

    @property
    def client_id(self) -> int:
        return self.signed.order.client_id if self.signed is not None else 0

    @property
    def expiry(self) -> int:
        return self.signed.order.expiry if self.signed is not None else 0

    def __repr__(self) -> str:
        side = "buy" if self.is_buy else "sell"
        return f"Resting({self.id.hex()[:10]}, {side} {self.remaining} @ {self.price})"


class Book:
    """Bids and asks of one market.

    Keys are the price for asks and minus the price for bids, so the best level of either
    side is its heap's smallest key and "crosses a limit" is `key <= limit key` on both.
    """

    __slots__ = ("market", "bids", "asks", "bid_keys", "ask_keys", "dead", "compact_at")

    def __init__(self, market: int) -> None:
        self.market = market
        self.bids: dict[int, deque[Resting]] = {}  # -price -> queue
        self.asks: dict[int, deque[Resting]] = {}  # price -> queue
        self.bid_keys: list[int] = []
        self.ask_keys: list[int] = []
        self.dead = 0  # cancelled orders still sitting in a queue
        self.compact_at = COMPACT_AFTER

    def add(self, order: Resting) -> None:
        """Queue an order at the back of its price level (Engine.place inlines this)."""
        if order.is_buy:
            key, levels, keys = -order.price, self.bids, self.bid_keys
        else:
            key, levels, keys = order.price, self.asks, self.ask_keys
        level = levels.get(key)
        if level is None:
            level = levels[key] = deque()
            heappush(keys, key)
        level.append(order)

    def cancel(self, order: Resting) -> None:
        """Take a resting order out of the book: lazily, its queue slot is skipped later."""
        order.remaining = 0
        self.dead += 1
        if self.dead > self.compact_at:
            self.compact()

    def compact(self) -> None:
        """Drop cancelled orders and empty levels from the queues and heaps."""
        live = 0
        for levels, keys in ((self.bids, self.bid_keys), (self.asks, self.ask_keys)):
            for key in list(levels):
                level = deque(o for o in levels[key] if o.remaining)
                if level:
                    levels[key] = level
                    live += len(level)
                else:
                    del levels[key]
            keys[:] = list(levels)
            heapify(keys)
        self.dead = 0
        self.compact_at = max(COMPACT_AFTER, live)

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
