"""WebSocket feeds: book diffs with sequence numbers (snapshot on subscribe), trades, markets,
per-account order updates, fills and withdrawals (after a signed subscription), batch status,
rollbacks (the lost batches, then each busted fill on its accounts' and market's channels), and
governance: each change when the base layer queues it, when it is applied, and as its batch moves.

The core publishes only what is durable; each message is serialised once and put, without
waiting, on every subscriber's bounded queue. A subscriber whose queue is full is dropped
(closed with code 4008): a slow client never slows the engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from contracts_spec.types import Address
from sequencer.core import Core, FillInfo, OrderInfo, WithdrawalInfo
from sequencer.errors import ApiError
from sequencer.governance_view import change_view
from sequencer.intake import parse_address

log = logging.getLogger("rampart.feeds")

SLOW_CONSUMER = 4008


class Connection:
    def __init__(self, ws: WebSocket, size: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(size)
        self.keys: set[tuple[Any, ...]] = set()
        self.dropped = False

    def push(self, text: str) -> bool:
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            return False


class Hub:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.core: Core = service.core
        self.subs: dict[tuple[Any, ...], set[Connection]] = {}
        # by market; a market governance adds gets its (empty) entries on first use
        self.book: defaultdict[int, tuple[dict[int, int], dict[int, int]]] = defaultdict(lambda: ({}, {}))
        self.book_seq: defaultdict[int, int] = defaultdict(int, {m: 0 for m in self.core.markets})
        self.dropped = 0
        self.stale: set[int] = set()  # markets nobody watches: their mirror is rebuilt on a first subscription
        self.reset_books()
        self.core.listeners.append(self.on_core)

    def reset_books(self) -> None:
        """The durable book mirror the diffs are taken against, from the engine's books."""
        for mid in self.core.markets:
            self._rebuild(mid)
        self.core.touched_levels.clear()

    def _rebuild(self, market: int) -> None:
        bids, asks = self.core.levels(market, 1 << 30)
        self.book[market] = (dict(bids), dict(asks))
        self.stale.discard(market)

    # --- publishing ---

    def publish(self, key: tuple[Any, ...], message: dict[str, Any]) -> None:
        conns = self.subs.get(key)
        if not conns:
            return
        text = json.dumps(message, separators=(",", ":"))
        for conn in list(conns):
            if not conn.push(text):
                self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        self.dropped += 1
        for key in conn.keys:
            self.subs.get(key, set()).discard(conn)
        conn.keys.clear()
        while not conn.queue.empty():  # what it did not take is dropped with it
            conn.queue.get_nowait()
        conn.queue.put_nowait(None)
        if self.service.metrics is not None:
            self.service.metrics.ws_dropped.inc()

    def on_core(self, topic: str, payload: Any) -> None:
        """A durable core event: build each message only for a key somebody subscribed to."""
        svc, subs = self.service, self.subs
        if topic == "levels":
            self.publish_levels()
        elif topic == "fill":
            f: FillInfo = payload
            if ("trades", f.market) in subs:
                self.publish(("trades", f.market), {"type": "update", "channel": "trades",
                                                   "market": self.core.markets[f.market].symbol,
                                                   "data": [svc.fill_view(f)]})
            for account in (f.maker_account, f.taker_account):
                if ("account", account) in subs:
                    self.publish(("account", account), {"type": "update", "channel": "account", "kind": "fill",
                                                        "data": svc.fill_view(f, account)})
        elif topic == "order":
            info: OrderInfo = payload
            key = ("account", info.signed.order.account)
            if key in subs:
                self.publish(key, {"type": "update", "channel": "account", "kind": "order",
                                   "data": svc.order_view(info)})
        elif topic == "withdrawal":
            w: WithdrawalInfo = payload
            if ("account", w.account) in subs:
                self.publish(("account", w.account), {"type": "update", "channel": "account", "kind": "withdrawal",
                                                      "data": svc.withdrawal_view(w)})
        elif topic == "deposit":
            index, account, amount, t = payload
            self.publish(("account", account), {"type": "update", "channel": "account", "kind": "deposit",
                                                "data": {"queueIndex": index, "amount": amount, "time": t}})
        elif topic == "market":
            if ("markets",) in subs:
                self.publish(("markets",), {"type": "update", "channel": "markets", "data": svc.market_view(payload)})
        elif topic == "liquidation":
            account, market, lots, price, t = payload
            self.publish(("markets",), {"type": "update", "channel": "markets", "kind": "liquidation",
                                        "data": {"account": "0x" + account.hex(), "market": market, "lots": lots,
                                                 "price": price, "time": t}})
        elif topic == "batch":
            self.publish(("batches",), {"type": "update", "channel": "batches", "data": svc.batch_view(payload)})
            for index, (out, _, _) in enumerate(self.core.governance_outs):
                if payload.first_out <= out < payload.end_out:
                    self.publish_governance(index, "batch")
            for w in self.core.withdrawals.values():
                if w.batch == payload.index and ("account", w.account) in subs:
                    self.publish(("account", w.account), {"type": "update", "channel": "account",
                                                          "kind": "withdrawal", "data": svc.withdrawal_view(w)})
        elif topic == "busted":
            f = payload
            for account in (f.maker_account, f.taker_account):
                self.publish(("account", account), {"type": "update", "channel": "account", "kind": "fill",
                                                    "data": svc.fill_view(f, account)})
            self.publish(("trades", f.market), {"type": "update", "channel": "trades", "kind": "busted",
                                               "market": self.core.markets[f.market].symbol,
                                               "data": [svc.fill_view(f)]})
        elif topic == "rollback":
            self.publish(("batches",), {"type": "update", "channel": "batches", "kind": "rollback",
                                        "data": svc.rollback_view(payload)})
        elif topic == "governance":
            index, applied, _ = payload
            self.publish_governance(index, "applied")
            params = getattr(self.core.governance_entries[index].change, "params", None)
            if applied and params is not None:  # the market's new (or first) parameters
                self.publish(("markets",), {"type": "update", "channel": "markets",
                                            "data": svc.market_view(params.market_id)})
        elif topic == "governance_announced":
            self.publish_governance(payload, "announced")

    def publish_governance(self, index: int, kind: str) -> None:
        """A change on the governance channel: announced, applied, or its batch's status moved."""
        if self.subs.get(("governance",)):
            self.publish(("governance",), {"type": "update", "channel": "governance", "kind": kind,
                                           "data": change_view(self.core, index)})

    def publish_levels(self) -> None:
        core = self.core
        touched = core.touched_levels
        if not touched:
            return
        diffs: dict[int, tuple[list[list[int]], list[list[int]]]] = {}
        subs, stale, unseen = self.subs, self.stale, set()
        for market, is_buy, price in sorted(touched):
            if not subs.get(("book", market)):  # summing a level costs; nobody would see the diff
                unseen.add(market)
                continue
            size = core.level_size(market, is_buy, price)
            side = self.book[market][0 if is_buy else 1]
            if side.get(price, 0) == size:
                continue
            if size:
                side[price] = size
            else:
                side.pop(price, None)
            diffs.setdefault(market, ([], []))[0 if is_buy else 1].append([price, size])
        touched.clear()
        for market in unseen:  # the book changed: its sequence moves on, its mirror waits for a watcher
            stale.add(market)
            self.book_seq[market] += 1
        for market, (bids, asks) in diffs.items():
            self.book_seq[market] += 1
            self.publish(("book", market), {"type": "update", "channel": "book", "market": core.markets[market].symbol,
                                            "seq": self.book_seq[market], "bids": bids, "asks": asks})

    def snapshot(self, market: int) -> dict[str, Any]:
        bids, asks = self.book[market]
        return {"type": "snapshot", "channel": "book", "market": self.core.markets[market].symbol,
                "seq": self.book_seq[market], "bids": [[p, bids[p]] for p in sorted(bids, reverse=True)],
                "asks": [[p, asks[p]] for p in sorted(asks)]}

    # --- connections ---

    async def serve(self, ws: WebSocket) -> None:
        settings = self.service.settings
        await ws.accept()
        conn = Connection(ws, settings.ws_queue)
        sender = asyncio.create_task(self._send(conn))
        try:
            while not conn.dropped:
                try:
                    raw = await ws.receive_text()
                except WebSocketDisconnect:
                    break
                try:
                    msg = json.loads(raw)
                    reply = self.handle(conn, msg)
                except ApiError as exc:
                    reply = {"type": "error", "code": exc.code, "message": exc.message}
                except (ValueError, TypeError) as exc:
                    reply = {"type": "error", "code": "malformed", "message": str(exc)}
                for r in reply if isinstance(reply, list) else [reply]:
                    if not conn.push(json.dumps(r, separators=(",", ":"))):
                        self._drop(conn)
                        break
        finally:
            for key in conn.keys:
                self.subs.get(key, set()).discard(conn)
            conn.keys.clear()
            if not conn.dropped:
                conn.dropped = True
                try:
                    conn.queue.put_nowait(None)
                except asyncio.QueueFull:
                    pass
            await sender

    async def _send(self, conn: Connection) -> None:
        ws = conn.ws
        try:
            while True:
                text = await conn.queue.get()
                if text is None:
                    break
                await ws.send_text(text)
        except Exception:  # the client went away
            pass
        try:
            await ws.close(SLOW_CONSUMER if conn.dropped else 1000)
        except Exception:
            pass

    def handle(self, conn: Connection, msg: Any) -> Any:
        if not isinstance(msg, dict):
            raise ApiError("malformed", "a message is a JSON object")
        op = msg.get("op") or msg.get("method")  # "method" as Hyperliquid's
        if op == "ping":
            return {"type": "pong"}
        sub = msg.get("subscription", msg) if op in ("subscribe", "unsubscribe") else None
        if sub is None or not isinstance(sub, dict):
            raise ApiError("malformed", "op must be subscribe, unsubscribe or ping")
        channel = sub.get("channel") or sub.get("type")
        svc = self.service
        if channel in ("book", "l2Book", "trades"):
            market = svc.market_id(sub.get("market", sub.get("coin")))
            key: tuple[Any, ...] = ("book" if channel != "trades" else "trades", market)
        elif channel in ("markets", "batches", "governance"):
            key = (channel,)
        elif channel in ("account", "userEvents", "orderUpdates", "userFills"):
            account: Address = parse_address(sub.get("account", sub.get("user")))
            svc.authenticate(account, sub.get("timestamp"), sub.get("signature"))
            key = ("account", account)
        else:
            raise ApiError("unknown_channel",
                           f"no channel {channel!r}; book, trades, markets, batches, governance, account")
        if op == "unsubscribe":
            conn.keys.discard(key)
            self.subs.get(key, set()).discard(conn)
            return {"type": "unsubscribed", "channel": key[0]}
        if key not in conn.keys and len(conn.keys) >= svc.settings.ws_max_subscriptions:
            raise ApiError("too_many_subscriptions", f"at most {svc.settings.ws_max_subscriptions} per connection")
        conn.keys.add(key)
        self.subs.setdefault(key, set()).add(conn)
        replies: list[dict[str, Any]] = [{"type": "subscribed", "channel": key[0]}]
        if key[0] == "book":
            if key[1] in self.stale:
                self._rebuild(key[1])
            replies.append(self.snapshot(key[1]))
        elif key[0] == "trades":
            replies.append({"type": "snapshot", "channel": "trades", "market": self.core.markets[key[1]].symbol,
                            "data": svc.trades(key[1], 50)})
        elif key[0] == "markets":
            replies.append({"type": "snapshot", "channel": "markets", "data": svc.markets()})
        elif key[0] == "batches":
            replies.append({"type": "snapshot", "channel": "batches", "data": svc.batches(len(self.core.batches) - 20, 20)})
        elif key[0] == "governance":
            replies.append({"type": "snapshot", "channel": "governance", "data": svc.governance()})
        elif key[0] == "account":
            replies.append({"type": "snapshot", "channel": "account", "data": {
                "margin": svc.margin(key[1]), "orders": svc.orders(key[1], "open", 1000),
                "positions": svc.positions(key[1])}})
        return replies
