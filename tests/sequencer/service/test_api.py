"""The trading API over real HTTP: orders, fills and their life, refusals that change nothing,
account privacy, withdrawals claimed on the base layer, forced withdrawals, the compat routes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from contracts_spec.state import State
from contracts_spec.types import WithdrawalLeaf
from l1_mock.client import L1Client

from .conftest import BTC, USDC, Net, wait_for

PRICE = 500_000  # ticks: 50,000.0 USD


@pytest.fixture
def market(net: Net) -> Net:
    net.deposit("alice", 10_000 * USDC)
    net.deposit("bob", 10_000 * USDC)
    net.oracle(BTC, PRICE)
    return net


def state_of(net: Net) -> tuple[Any, ...]:
    """What a refused request must leave unchanged: book, accounts, outputs."""
    core = net.node.core
    return (core.levels(BTC, 100), core.margin(net.keys.addr("alice")), core.margin(net.keys.addr("bob")),
            core.out_end, len(core.orders))


def test_order_fill_and_its_life_to_final(market: Net, trader: Any) -> None:
    net, alice, bob = market, trader("alice"), trader("bob")
    r = net.http.post("/v1/orders", json=alice.order(True, PRICE, 10))
    assert r.status_code == 200 and r.json()["state"] == "open"
    maker_id = r.json()["orderId"]
    r = net.http.post("/v1/orders", json=bob.order(False, PRICE, 4))
    body = r.json()
    assert body["state"] == "filled" and body["fills"] == [{"price": PRICE, "lots": 4, "maker": maker_id}]
    book = net.http.get("/v1/markets/BTC-USD/book").json()
    assert book["bids"] == [[PRICE, 6]] and book["asks"] == []
    trades = net.http.get("/v1/markets/0/trades").json()
    assert trades[0]["lots"] == 4 and trades[0]["takerSide"] == "sell"
    wait_for(lambda: net.private("alice", "fills")[0]["life"] == "posted", "the fill to be posted")
    fill = net.private("alice", "fills")[0]
    assert fill["liquidity"] == "maker" and fill["side"] == "buy" and fill["fee"] == 4 * PRICE * 10 * 100 // 10**6
    batch = net.http.get(f"/v1/batches/{fill['batch']}").json()
    with L1Client(net.l1.url) as c:
        assert c.batch(batch["l1BatchId"])["post_root"] == batch["postRoot"]
    net.advance(net.genesis.preset.challenge_window + 1)
    wait_for(lambda: net.private("alice", "fills")[0]["life"] == "final", "the fill to be final")
    orders = net.private("alice", "orders")
    assert orders[0]["orderId"] == maker_id and orders[0]["filled"] == 4 and orders[0]["status"] == "open"
    positions = net.private("bob", "positions")
    assert positions == [pytest.approx(positions[0])] and positions[0]["lots"] == -4
    margin = net.private("alice", "margin")
    assert margin["collateral"] < 10_000 * USDC and margin["free"] > 0


def _bad(alice: Any, bob: Any, net: Net) -> list[tuple[str, Any, int, str]]:
    good = alice.order(True, PRICE, 1)
    foreign = alice.order(True, PRICE, 1, key=net.keys["bob"])
    return [
        ("float price", {**good, "price": 500000.5}, 400, "malformed"),
        ("float that is whole", {**good, "lots": 1.0}, 400, "malformed"),
        ("negative lots", {**good, "lots": -1}, 400, "malformed"),
        ("decimal string", {**good, "price": "500000.0"}, 400, "malformed"),
        ("exponent string", {**good, "price": "5e5"}, 400, "malformed"),
        ("overflow", {**good, "lots": 1 << 64}, 400, "malformed"),
        ("bool as number", {**good, "lots": True}, 400, "malformed"),
        ("zero lots", {**good, "lots": 0}, 400, "malformed"),
        ("unknown field", {**good, "leverage": 10}, 400, "malformed"),
        ("missing signature", {k: v for k, v in good.items() if k != "signature"}, 400, "malformed"),
        ("unknown market", {**good, "market": 7}, 404, "unknown_market"),
        ("unknown symbol", {**good, "market": "DOGE-USD"}, 404, "unknown_market"),
        ("foreign signature", foreign, 403, "wrong_signer"),
        ("signature of other fields", {**good, "lots": 2}, 403, "wrong_signer"),
        ("garbage signature", {**good, "signature": "0x" + "11" * 65}, 401, "bad_signature"),
        ("short signature", {**good, "signature": "0x1234"}, 400, "malformed"),
        ("expired", alice.order(True, PRICE, 1, expiry=net.now() - 1), 422, "expired"),
        ("outside the band", alice.order(True, PRICE * 2, 1), 422, "price_band"),
        ("too large for margin", alice.order(True, PRICE, 10**6), 422, "insufficient_margin"),
    ]


def test_refusals_change_nothing(market: Net, trader: Any) -> None:
    net, alice, bob = market, trader("alice"), trader("bob")
    net.http.post("/v1/orders", json=bob.order(False, PRICE + 100, 3))
    before = state_of(net)
    for name, body, status, code in _bad(alice, bob, net):
        r = net.http.post("/v1/orders", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), name
        assert r.json()["error"]["message"], name
        assert state_of(net) == before, name
    replayed = alice.order(True, PRICE - 10, 1)
    assert net.http.post("/v1/orders", json=replayed).status_code == 200
    after = state_of(net)
    r = net.http.post("/v1/orders", json=replayed)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "duplicate_order") and state_of(net) == after
    assert net.http.post("/v1/orders", content=b"{not json").json()["error"]["code"] == "malformed"
    big = {"orders": [alice.order(True, 1, 1, nonce=1)] * (net.node.settings.max_batch_orders + 1)}
    r = net.http.post("/v1/orders/batch", json=big)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large") and state_of(net) == after
    metrics = net.http.get("/metrics").text
    assert 'rampart_rejects_total{reason="wrong_signer"}' in metrics


def test_bad_query_and_path_parameters_are_the_api_error_naming_the_parameter(net: Net) -> None:
    """Request validation (FastAPI's) answers like every other refusal: 400, code `malformed`, a
    message naming the parameter and what it got, `params` listing them; never pydantic's raw list."""
    alice = f"0x{net.keys.addr('alice').hex()}"
    cases = [
        ("/v1/markets/BTC-USD/book?depth=-5", ["depth"],
         "query parameter depth: Input should be greater than or equal to 1, got '-5'"),
        ("/v1/markets/0/book?depth=many", ["depth"],
         "query parameter depth: Input should be a valid integer, unable to parse string as an integer, got 'many'"),
        ("/v1/markets/0/trades?limit=5000", ["limit"],
         "query parameter limit: Input should be less than or equal to 1000, got '5000'"),
        ("/v1/markets/0/funding?limit=0", ["limit"],
         "query parameter limit: Input should be greater than or equal to 1, got '0'"),
        ("/v1/batches/first", ["index"],
         "path parameter index: Input should be a valid integer, unable to parse string as an integer, got 'first'"),
        ("/v1/batches?after=-1&limit=0", ["after", "limit"],
         "query parameter after: Input should be greater than or equal to 0, got '-1'; "
         "query parameter limit: Input should be greater than or equal to 1, got '0'"),
        (f"/v1/accounts/{alice}/fills?limit=-5", ["limit"],
         "query parameter limit: Input should be greater than or equal to 1, got '-5'"),
    ]
    for path, params, message in cases:
        r = net.http.get(path)
        assert r.status_code == 400, (path, r.text)
        assert r.json() == {"error": {"code": "malformed", "message": message, "params": params}}, path


def test_batch_endpoint_answers_each_order(market: Net, trader: Any) -> None:
    net, alice, bob = market, trader("alice"), trader("bob")
    orders = [alice.order(True, PRICE - i, 1) for i in range(5)]
    orders.insert(2, {**alice.order(True, PRICE, 1), "lots": 0})
    orders.append(bob.order(False, PRICE - 1, 3))
    results = net.http.post("/v1/orders/batch", json={"orders": orders}).json()["results"]
    assert [r["status"] for r in results] == ["ok", "ok", "error", "ok", "ok", "ok", "ok"]
    assert results[2]["code"] == "malformed"
    assert [f["lots"] for f in results[-1]["fills"]] == [1, 1] and results[-1]["state"] == "cancelled" or \
        results[-1]["remaining"] == 1


def test_batch_cancel_answers_each_cancel(market: Net, trader: Any) -> None:
    """POST /v1/orders/cancel/batch (and /exchange's cancel list): one answer per cancel, in
    order, a refused one changing nothing; one wait for the journal for the whole request."""
    net, alice, bob = market, trader("alice"), trader("bob")
    ids = [net.http.post("/v1/orders", json=alice.order(True, PRICE - 200 - i, 1)).json()["orderId"] for i in range(4)]
    cancels = [alice.cancel(ids[0]), alice.cancel(ids[1], key=net.keys["bob"]), bob.cancel(ids[2]),
               {**alice.cancel(ids[2]), "orderId": "0x12"}, alice.cancel(ids[2]), alice.cancel(ids[0])]
    results = net.http.post("/v1/orders/cancel/batch", json={"cancels": cancels}).json()["results"]
    assert [r["status"] for r in results] == ["ok", "error", "error", "error", "ok", "error"]
    assert [r.get("code") for r in results] == [None, "wrong_signer", "unknown_order", "malformed", None,
                                                "unknown_order"]
    assert results[0]["orderId"] == ids[0] and results[4]["orderId"] == ids[2]
    statuses = {o["orderId"]: o["status"] for o in net.private("alice", "orders")}
    assert [statuses[i] for i in ids] == ["cancelled", "open", "cancelled", "open"]
    r = net.http.post("/exchange", json={"action": {"type": "cancel", "cancels": [alice.cancel(ids[3]),
                                                                                    alice.cancel(ids[3])]}})
    assert [s["status"] for s in r.json()["response"]["data"]["statuses"]] == ["ok", "error"]
    for body, code in (({"cancels": {}}, "malformed"), ({"orders": []}, "malformed"),
                       ({"cancels": [alice.cancel(ids[1])] * (net.node.settings.max_batch_orders + 1)}, "too_large")):
        r = net.http.post("/v1/orders/cancel/batch", json=body)
        assert r.status_code in (400, 413) and r.json()["error"]["code"] == code
    assert net.private("alice", "orders") and {o["orderId"]: o["status"] for o in net.private("alice", "orders")}[
        ids[1]] == "open"
    assert "/v1/orders/cancel/batch" in net.http.get("/openapi.json").json()["paths"]
    # enough of them for the signature workers (a worker checks them in chunks), one forged
    placed = net.http.post("/v1/orders/batch", json={"orders": [alice.order(False, PRICE + 300 + i, 1)
                                                                for i in range(70)]}).json()["results"]
    quotes = [r["orderId"] for r in placed]
    cancels = [alice.cancel(q) for q in quotes]
    cancels.insert(35, alice.cancel(quotes[0], key=net.keys["bob"]))
    results = net.http.post("/v1/orders/cancel/batch", json={"cancels": cancels}).json()["results"]
    assert [r.get("code") for r in results] == [None] * 35 + ["wrong_signer"] + [None] * 35
    assert [r["orderId"] for r in results if r["status"] == "ok"] == quotes
    assert not set(quotes) & {o["orderId"] for o in net.private("alice", "orders") if o["status"] == "open"}


def test_cancel_cancel_all_replace_and_privacy(market: Net, trader: Any) -> None:
    net, alice, bob = market, trader("alice"), trader("bob")
    ids = [net.http.post("/v1/orders", json=alice.order(True, PRICE - 100 - i, 1)).json()["orderId"] for i in range(3)]
    before = state_of(net)
    # bob cannot cancel alice's order, neither as alice nor as himself
    r = net.http.post("/v1/orders/cancel", json=alice.cancel(ids[0], key=net.keys["bob"]))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "wrong_signer")
    r = net.http.post("/v1/orders/cancel", json=bob.cancel(ids[0]))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_order")
    assert state_of(net) == before
    # nor read her orders
    r = net.http.get(f"/v1/accounts/0x{alice.address.hex()}/orders", headers=net.auth("bob"))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "wrong_signer")
    r = net.http.get(f"/v1/accounts/0x{alice.address.hex()}/orders")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthenticated")
    stale = {**net.auth("alice"), "X-Rampart-Timestamp": str(net.now() - 10_000)}
    assert net.http.get(f"/v1/accounts/0x{alice.address.hex()}/orders", headers=stale).json()["error"]["code"] == \
        "stale_auth"
    assert net.http.post("/v1/orders/cancel", json=alice.cancel(ids[0])).json()["status"] == "ok"
    r = net.http.post("/v1/orders/cancel", json=alice.cancel(ids[0]))  # replayed cancel
    assert r.status_code == 404
    new = alice.order(True, PRICE - 101, 1)
    r = net.http.post("/v1/orders/replace", json={"cancel": alice.cancel(ids[1]), "order": new})
    assert r.json()["replaced"] == ids[1] and r.json()["state"] == "open"
    statuses = {o["orderId"]: o["status"] for o in net.private("alice", "orders")}
    assert statuses[ids[0]] == "cancelled" and statuses[ids[1]] == "cancelled" and statuses[ids[2]] == "open"
    r = net.http.post("/v1/orders/cancel-all", json=alice.cancel_all(1000))
    assert r.json()["cancelled"] == 2
    assert net.http.post("/v1/orders/cancel-all", json=alice.cancel_all(1000)).json()["error"]["code"] == "bad_nonce"
    assert net.http.get("/v1/markets/BTC-USD/book").json()["bids"] == []
    assert net.http.post("/v1/orders", json=alice.order(True, PRICE - 1, 1, nonce=999)).json()["error"]["code"] == \
        "cancelled"


def test_withdrawal_is_claimable_once_final(market: Net, trader: Any) -> None:
    net, alice = market, trader("alice")
    assert net.http.post("/v1/withdrawals", json=alice.withdraw(10**12, 0)).json()["error"]["code"] == \
        "insufficient_margin"
    assert net.http.post("/v1/withdrawals", json=alice.withdraw(USDC, 1)).json()["error"]["code"] == "bad_nonce"
    r = net.http.post("/v1/withdrawals", json=alice.withdraw(250 * USDC, 0))
    assert r.json()["status"] == "ok"
    assert net.http.post("/v1/withdrawals", json=alice.withdraw(250 * USDC, 0)).json()["error"]["code"] == "bad_nonce"
    wait_for(lambda: net.private("alice", "withdrawals")[0]["life"] == "posted", "withdrawal posted")
    net.advance(net.genesis.preset.challenge_window + 1)
    w = wait_for(lambda: (lambda ws: ws[0] if ws[0]["claim"] else None)(net.private("alice", "withdrawals")),
                 "a claim")
    claim = w["claim"]
    with net.l1_client("alice") as c:
        before = c.account(alice.address)["usdc"]
        c.withdraw(claim["batchId"], WithdrawalLeaf(claim["leafIndex"], alice.address, claim["amount"]),
                   [bytes.fromhex(h[2:]) for h in claim["proof"]])
        assert c.account(alice.address)["usdc"] == before + 250 * USDC
    assert net.private("alice", "margin")["collateral"] == 9_750 * USDC


def test_forced_withdrawal_is_included(market: Net) -> None:
    net = market
    with net.l1_client("bob") as c:
        index = c.request_withdrawal(100 * USDC)
    wait_for(lambda: any(w["forcedIndex"] == index and w["life"] == "posted" for w in net.private("bob", "withdrawals")),
             "the forced withdrawal in a posted batch")
    assert net.private("bob", "margin")["collateral"] == 9_900 * USDC


def test_hyperliquid_shaped_routes_and_docs(market: Net, trader: Any) -> None:
    net, alice = market, trader("alice")
    r = net.http.post("/exchange", json={"action": {"type": "order", "orders": [alice.order(True, PRICE - 5, 2)]}})
    status = r.json()["response"]["data"]["statuses"][0]
    assert status["status"] == "ok"
    book = net.http.post("/info", json={"type": "l2Book", "coin": "BTC"}).json()
    assert book["bids"] == [[PRICE - 5, 2]]
    ts, sig = net.auth("alice").values()
    mine = net.http.post("/info", json={"type": "openOrders", "user": "0x" + alice.address.hex(), "timestamp": ts,
                                        "signature": sig}).json()
    assert [o["orderId"] for o in mine] == [status["orderId"]]
    r = net.http.post("/exchange", json={"action": {"type": "cancel", "cancels": [alice.cancel(status["orderId"])]}})
    assert r.json()["response"]["data"]["statuses"][0]["status"] == "ok"
    assert net.http.post("/info", json={"type": "meta"}).json()["universe"][0]["symbol"] == "BTC-USD"
    spec = net.http.get("/openapi.json").json()
    assert "/v1/orders/batch" in spec["paths"] and "OrderWire" in spec["components"]["schemas"]
    # what is documented is what is answered: a malformed request is a 400 Error, a POST the rules
    # refuse a 422 Error
    text = json.dumps(spec)
    assert "HTTPValidationError" not in text
    assert spec["paths"]["/v1/orders"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert all("422" not in op["responses"] for path in spec["paths"].values() for m, op in path.items() if m == "get")
    assert spec["paths"]["/v1/markets/{market}/book"]["get"]["responses"]["400"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/Error"}
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs and refs <= set(spec["components"]["schemas"])  # every reference resolves
    assert net.http.get("/health").json()["status"] == "ok"
    assert net.http.post("/v1/orders", json=alice.order(True, PRICE - 6, 1)).json()["status"] == "ok"  # the fast lane
    metrics = net.http.get("/metrics").text
    for name in ("rampart_orders_total", "rampart_fills_total", "rampart_batch_txs", "rampart_batch_post_seconds",
                 "rampart_games"):
        assert name in metrics
    answered = re.search(r"^rampart_trading_answer_seconds_count (\S+)$", metrics, re.M)
    assert answered is not None and float(answered.group(1)) >= 1  # the fast lane's answers are timed
    assert "rampart_event_loop_lag_seconds_bucket" in metrics

    def value(name: str) -> float:
        found = re.search(rf"^{name} (\S+)$", metrics, re.M)
        assert found is not None, name
        return float(found.group(1))

    # what the process holds, for an operator watching it grow: every order the API can show, the
    # state's leaves, its memory. Read while batches are built beside it: the state only grows here,
    # so the figure lies between the genesis state's and the state's a moment after the scrape
    assert value("rampart_orders_held") == len(net.node.core.orders) >= 1
    genesis_records = len(State.from_genesis(net.genesis).records)
    assert genesis_records <= value("rampart_state_records") <= len(net.node.batcher.state.records)
    assert value("process_resident_memory_bytes") > 10 * 2**20


def test_limits_per_account_and_connection(net_factory: Any, trader: Any) -> None:
    net = net_factory(account_rate=1e-9, account_burst=2, max_open_orders=1)
    net.deposit("alice", 10_000 * USDC)
    net.oracle(BTC, PRICE)
    alice = trader("alice")
    assert net.http.post("/v1/orders", json=alice.order(True, PRICE - 1, 1)).status_code == 200
    r = net.http.post("/v1/orders", json=alice.order(True, PRICE - 2, 1))
    assert r.json()["error"]["code"] == "too_many_open_orders"
    r = net.http.post("/v1/orders", json=alice.order(True, PRICE - 3, 1))
    assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
