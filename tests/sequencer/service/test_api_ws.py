"""The WebSocket feeds over a real connection: book snapshot + diffs with sequence numbers,
trades, the signed account channel, batch status, and a slow client dropped."""

from __future__ import annotations

import json
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from contracts_spec import eip712

from .conftest import BTC, USDC, Net, wait_for

PRICE = 500_000


def recv(ws: Any) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=60)))


def until(ws: Any, pred: Any) -> dict[str, Any]:
    for _ in range(200):
        msg = recv(ws)
        if pred(msg):
            return msg
    raise AssertionError("message never came")


def gather(ws: Any, **preds: Any) -> dict[str, dict[str, Any]]:
    """The first message matching each predicate, in whatever order they come."""
    found: dict[str, dict[str, Any]] = {}
    for _ in range(500):
        msg = recv(ws)
        for name, pred in preds.items():
            if name not in found and pred(msg):
                found[name] = msg
        if len(found) == len(preds):
            return found
    raise AssertionError(f"never came: {set(preds) - set(found)}")


def test_book_trades_account_and_batches(net: Net, trader: Any) -> None:
    net.deposit("alice", 10_000 * USDC)
    net.deposit("bob", 10_000 * USDC)
    net.oracle(BTC, PRICE)
    alice, bob = trader("alice"), trader("bob")
    net.http.post("/v1/orders", json=alice.order(True, PRICE - 10, 5))
    url = net.seq.url.replace("http", "ws") + "/ws"
    with connect(url) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "book", "market": "BTC-USD"}))
        assert recv(ws)["type"] == "subscribed"
        snap = recv(ws)
        assert snap["type"] == "snapshot" and snap["bids"] == [[PRICE - 10, 5]]  # the book changed unwatched
        seq = snap["seq"]
        rest = net.http.get("/v1/markets/BTC-USD/book").json()
        assert rest["seq"] == seq >= 1 and rest["bids"] == snap["bids"]  # REST and feed agree on where they are
        ws.send(json.dumps({"op": "subscribe", "channel": "trades", "market": 0}))
        until(ws, lambda m: m.get("channel") == "trades" and m["type"] == "snapshot")
        # the account channel refuses a subscription not signed by the account
        ts = net.now()
        forged = eip712.sign_subscribe(net.genesis.preset, net.keys["bob"], ts)
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": "0x" + alice.address.hex(),
                            "timestamp": ts, "signature": "0x" + forged.hex()}))
        assert until(ws, lambda m: m["type"] == "error")["code"] == "wrong_signer"
        good = eip712.sign_subscribe(net.genesis.preset, net.keys["alice"], ts)
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": "0x" + alice.address.hex(),
                            "timestamp": ts, "signature": "0x" + good.hex()}))
        snapshot = until(ws, lambda m: m.get("channel") == "account" and m["type"] == "snapshot")
        assert len(snapshot["data"]["orders"]) == 1
        ws.send(json.dumps({"op": "subscribe", "channel": "batches"}))
        until(ws, lambda m: m.get("channel") == "batches" and m["type"] == "snapshot")

        net.http.post("/v1/orders", json=bob.order(False, PRICE - 10, 2))
        got = gather(ws, diff=lambda m: m.get("channel") == "book" and m["type"] == "update",
                     trade=lambda m: m.get("channel") == "trades" and m["type"] == "update",
                     fill=lambda m: m.get("channel") == "account" and m.get("kind") == "fill")
        assert got["diff"]["seq"] == seq + 1 and got["diff"]["bids"] == [[PRICE - 10, 3]]
        assert got["trade"]["data"][0]["lots"] == 2
        assert got["fill"]["data"]["liquidity"] == "maker" and got["fill"]["data"]["lots"] == 2
        net.http.post("/v1/orders", json=alice.order(False, PRICE + 10, 1))
        diff = until(ws, lambda m: m.get("channel") == "book" and m["type"] == "update")
        assert diff["seq"] == seq + 2 and diff["asks"] == [[PRICE + 10, 1]]
        batch = until(ws, lambda m: m.get("channel") == "batches" and m["type"] == "update")
        assert batch["data"]["status"] == "posted"
        ws.send(json.dumps({"op": "subscribe", "channel": "nope"}))
        assert until(ws, lambda m: m["type"] == "error")["code"] == "unknown_channel"


def test_client_falling_behind_its_queue_is_dropped_and_engine_goes_on(net_factory: Any, trader: Any) -> None:
    net = net_factory(ws_queue=16)
    net.deposit("alice", 10_000 * USDC)
    net.oracle(BTC, PRICE)
    alice = trader("alice")
    url = net.seq.url.replace("http", "ws") + "/ws"
    with connect(url) as slow, connect(url) as fine:
        ts = net.now()
        sig = "0x" + eip712.sign_subscribe(net.genesis.preset, net.keys["alice"], ts).hex()
        slow.send(json.dumps({"op": "subscribe", "channel": "account", "account": "0x" + alice.address.hex(),
                              "timestamp": ts, "signature": sig}))
        until(slow, lambda m: m["type"] == "snapshot")
        fine.send(json.dumps({"op": "subscribe", "channel": "book", "market": "BTC-USD"}))
        until(fine, lambda m: m["type"] == "snapshot")
        # 100 order updates arrive at once: more than the 16 the slow client may have queued
        batch = [alice.order(True, PRICE - 1 - i, 1) for i in range(100)]
        results = net.http.post("/v1/orders/batch", json={"orders": batch}).json()["results"]
        assert all(r["status"] == "ok" for r in results)
        wait_for(lambda: net.node.hub.dropped >= 1, "the slow client to be dropped")
        closed = None
        try:
            for _ in range(1000):
                slow.recv(timeout=30)
        except ConnectionClosed as exc:
            closed = exc
        assert closed is not None and closed.rcvd is not None and closed.rcvd.code == 4008
        # the other client and the engine carry on
        diff = until(fine, lambda m: m.get("channel") == "book" and m["type"] == "update")
        assert len(diff["bids"]) == 100
    assert len(net.http.get("/v1/markets/BTC-USD/book?depth=1000").json()["bids"]) == 100
    assert "rampart_ws_dropped_total 1.0" in net.http.get("/metrics").text
