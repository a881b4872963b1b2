"""Time-locked governance through a live sequencer over real HTTP: a fee change announced with the
governance key is applied by the sequencer's next batch once effective (ApplyGovernance), the base
layer accepts that batch, later trades pay the new fee, and the sequencer's root is what a fresh
replay of the posted batches gives. Likewise an oracle-signer change (the new set forms prices, the
removed signers count no more) and a market added by governance (orders only once effective); a
batch holding the application lost and rolled back applies the change once again, exactly once.
/v1/governance, /info and the governance WebSocket channel show each change from its announcement."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from contracts_spec.state import State
from contracts_spec.types import ApplyGovernance, SetMarketParams, SetOracleSigners
from sequencer.scenario import ORACLE_NAMES
from verifier.node import Node as Verifier
from verifier.player import fetch_batch

from .conftest import BTC, NATIVE, Feed, Net, report_wire, wait_for
from .disputes import PRICE, all_posted, chain_state, setup_market, trade
from .test_rollback import all_final, assert_state_is_the_chains, corrupt_next_batch, rolled_back, vera  # noqa: F401 (vera: the fixture)


def fill_fees(net: Net, trader: Any, lots: int = 2) -> dict[str, Any]:
    """alice rests a bid, bob sells into it: bob's (taker's) fill as served."""
    traders = net.__dict__.setdefault("traders", {})
    alice = traders.setdefault("alice", trader("alice"))
    bob = traders.setdefault("bob", trader("bob"))
    assert net.http.post("/v1/orders", json=alice.order(True, PRICE, lots)).json()["state"] == "open"
    assert net.http.post("/v1/orders", json=bob.order(False, PRICE, lots, tif="IOC")).json()["state"] == "filled"
    return dict(net.private("bob", "fills")[0])


def test_fee_change_is_applied_at_its_batch(net: Net, trader: Any) -> None:
    setup_market(net)
    old = net.genesis.markets[BTC]
    before = fill_fees(net, trader)
    cash = 2 * PRICE * old.atoms_per_lot_tick
    assert before["fee"] == -(-cash * old.taker_fee_ppm // 1_000_000)

    new = replace(old, taker_fee_ppm=old.taker_fee_ppm * 3, maker_fee_ppm=old.maker_fee_ppm * 2)
    with net.l1_client("governance") as gov:
        gov.faucet(native=NATIVE, usdc=0)
        announced = gov.announce_governance(SetMarketParams(new))
    assert announced["index"] == 0
    # not effective yet: the sequencer applies nothing
    net.advance(1)
    assert net.node.core.governance_entries == []

    net.advance(net.genesis.preset.governance_delay + 1)
    wait_for(lambda: len(net.node.core.governance_entries) == 1, "the sequencer to apply the change")
    assert net.node.core.markets[BTC] == new and net.node.core.engine.risk.markets[BTC].taker_fee == new.taker_fee_ppm
    # published: the change with what it changed, and the market's parameters in force
    [change] = governance(net)["changes"]
    assert (change["status"], change["kind"], change["market"], change["newMarket"]) == (
        "applied", "market_params", BTC, False)
    assert change["changed"] == {"takerFeePpm": {"from": old.taker_fee_ppm, "to": new.taker_fee_ppm},
                                 "makerFeePpm": {"from": old.maker_fee_ppm, "to": new.maker_fee_ppm}}
    market = net.http.get("/v1/markets/BTC-USD").json()
    assert (market["takerFeePpm"], market["makerFeePpm"]) == (new.taker_fee_ppm, new.maker_fee_ppm)
    assert governance(net)["markets"][BTC]["takerFeePpm"] == new.taker_fee_ppm
    assert "/v1/governance" in net.http.get("/openapi.json").json()["paths"]
    net.oracle(BTC, PRICE)  # a fresh price after the clock moved
    after = fill_fees(net, trader)
    assert after["fee"] == -(-cash * new.taker_fee_ppm // 1_000_000) != before["fee"]
    batches = all_posted(net)

    with net.l1_client() as c:
        assert c.rollup()["governance_applied"] == 1
        assert c.governance_changes()["changes"][0]["status"] == "applied"
        applied_in = None
        for b in batches:
            view = c.batch(b["l1BatchId"])
            assert view["status"] in ("pending", "final"), view  # accepted: neither lost nor invalid
            _, body = fetch_batch(c, b["l1BatchId"], net.genesis)
            if any(type(tx) is ApplyGovernance for tx in body.txs):
                assert [tx.queue_index for tx in body.txs if type(tx) is ApplyGovernance] == [0]
                applied_in = b["index"]
        assert applied_in is not None
        posted = net.private("bob", "fills")[0]
        assert posted["fee"] == after["fee"] and applied_in <= posted["batch"]  # the new fee, at or after the change
        head = c.rollup()
        # a fresh replay from the base layer alone gives the sequencer's root
        state = chain_state(c, net.genesis, int(head["head_index"]) + 1)
    assert state.root() == net.node.batcher.state.root()
    assert "0x" + state.root().hex() == batches[-1]["postRoot"]
    assert state.market(BTC).params == new

    # a restart replays the journal's governance record: the same parameters and root
    net.restart()
    assert net.node.core.markets[BTC] == new and len(net.node.core.governance_entries) == 1
    assert net.node.core.engine.risk.markets[BTC].taker_fee == new.taker_fee_ppm
    assert net.node.batcher.state.root() == state.root()


# --- helpers for the tests below ----------------------------------------------------------------------


def announce(net: Net, change: Any) -> dict[str, Any]:
    with net.l1_client("governance") as gov:
        gov.faucet(native=NATIVE, usdc=0)
        return gov.announce_governance(change)


def governance(net: Net) -> dict[str, Any]:
    r = net.http.get("/v1/governance")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_known(net: Net, index: int) -> dict[str, Any]:
    """Wait until the sequencer has read change `index` from the base layer's queue; the change."""
    return dict(wait_for(lambda: next((c for c in governance(net)["changes"] if c["index"] == index), None),
                         f"the sequencer to read governance change {index}"))


def wait_applied(net: Net, index: int) -> dict[str, Any]:
    def applied() -> Any:
        c = wait_known(net, index)
        return c if c["status"] in ("applied", "rejected") else None
    return dict(wait_for(applied, f"governance change {index} applied"))


def reports(net: Net, names: tuple[str, ...], market: int, prices: tuple[int, ...], t: int) -> list[dict[str, Any]]:
    """Submit one report per signer name, each in its own request, in order: each result."""
    out = []
    for name, price in zip(names, prices, strict=True):
        r = net.http.post("/v1/oracle/reports", json={"reports": [report_wire(net.genesis, net.keys[name], market,
                                                                                price, t)]})
        assert r.status_code == 200, r.text
        out.append(r.json()["results"][0])
    return out


def applications(net: Net, upto: int) -> list[tuple[int, int]]:
    """(batch index, queue index) of every ApplyGovernance in the valid chain's batches below `upto`."""
    found = []
    with net.l1_client() as c:
        for index in range(upto):
            _, body = fetch_batch(c, int(c.canonical(index)["batch_id"]), net.genesis)
            found += [(index, tx.queue_index) for tx in body.txs if type(tx) is ApplyGovernance]
    return found


def replay_agrees(net: Net) -> State:
    """Every posted batch is accepted by the base layer, and a replay of them from its data alone
    gives the sequencer's root; the replayed state."""
    batches = all_posted(net)
    with net.l1_client() as c:
        for b in batches:
            assert c.batch(b["l1BatchId"])["status"] in ("pending", "final")
        head = int(c.rollup()["head_index"])
        state = chain_state(c, net.genesis, head + 1)
    with net.node.batcher.lock:
        assert state.root() == net.node.batcher.state.root()
    assert "0x" + state.root().hex() == batches[-1]["postRoot"]
    return state


# --- oracle signers ---------------------------------------------------------------------------------


def test_oracle_signer_change_through_the_live_sequencer(net: Net, trader: Any) -> None:
    setup_market(net)  # a price from oracle-0 and oracle-1 (quorum 2 of oracle-0, -1, -2)
    fill_fees(net, trader)
    all_posted(net)
    old = [net.keys.addr(n) for n in ORACLE_NAMES]
    new_signers = (net.keys.addr("oracle-2"), net.keys.addr("oracle-3"))
    feed = Feed(net, [{"channel": "governance"}, {"channel": "markets"}])
    try:
        [snapshot] = feed.of("governance", "snapshot")
        assert snapshot["data"]["changes"] == [] and snapshot["data"]["oracle"]["quorum"] == 2
        announced = announce(net, SetOracleSigners(new_signers, 2))
        # announced, not yet effective: visible over REST, /info and the feed; nothing changes yet
        change = wait_known(net, 0)
        assert change["status"] == "announced" and change["application"] is None
        assert (change["kind"], change["quorum"], change["effectiveTime"], change["announcedTime"]) == (
            "oracle_signers", 2, announced["effective_time"], announced["announced_time"])
        assert change["signers"] == ["0x" + a.hex() for a in new_signers]
        assert change["added"] == ["0x" + net.keys.addr("oracle-3").hex()]
        assert set(change["removed"]) == {"0x" + a.hex() for a in old[:2]}
        assert net.http.post("/info", json={"type": "governance"}).json()["changes"] == [change]
        wait_for(lambda: [m["data"]["index"] for m in feed.of("governance") if m["kind"] == "announced"] == [0],
                 "the announcement on the feed")
        net.advance(1)
        t = net.now()
        assert [r["code"] for r in reports(net, ("oracle-3",), BTC, (PRICE,), t)] == ["unknown_signer"]
        assert [r["status"] for r in reports(net, ("oracle-0", "oracle-1"), BTC, (PRICE, PRICE), t)] == ["ok", "ok"]
        net.advance(1)
        t1 = net.now()  # oracle-0 reports alone for t1: gathered, short of the quorum
        assert reports(net, ("oracle-0",), BTC, (PRICE - 900,), t1) == [{"status": "ok", "applied": False}]

        net.advance(net.genesis.preset.governance_delay - 1)
        change = wait_applied(net, 0)
        assert change["status"] == "applied" and change["application"]["life"] in ("matched", "posted")
        view = governance(net)
        assert view["oracle"] == {"signers": sorted("0x" + a.hex() for a in new_signers), "quorum": 2}
        assert view["nextToApply"] == 1
        assert net.node.core.oracle_signers == frozenset(new_signers)
        [applied] = wait_for(lambda: [m for m in feed.of("governance") if m["kind"] == "applied"], "applied on feed")
        assert applied["data"]["index"] == 0 and applied["data"]["status"] == "applied"

        # removed signers are refused and never counted (not even oracle-0's report gathered before
        # the change); the new set forms the price: the lower median of its two reports
        got = reports(net, ("oracle-0", "oracle-1", "oracle-2"), BTC, (PRICE - 900, PRICE - 900, PRICE + 20), t1)
        assert [r.get("code") for r in got] == ["unknown_signer", "unknown_signer", None]
        assert got[2] == {"status": "ok", "applied": False}  # one of the new quorum of two
        assert net.http.get("/v1/markets/0").json()["oracleTime"] == t
        assert reports(net, ("oracle-3",), BTC, (PRICE + 10,), t1) == [{"status": "ok", "applied": True}]
        market = net.http.get("/v1/markets/0").json()
        assert (market["oraclePrice"], market["oracleTime"]) == (PRICE + 10, t1)
        fill_fees(net, trader)  # trading goes on at the new set's price

        state = replay_agrees(net)
        cfg = state.config()
        assert (tuple(cfg.oracle_signers), cfg.oracle_quorum) == (new_signers, 2)
        [(batch, queue_index)] = applications(net, len(all_posted(net)))
        assert queue_index == 0
        application = governance(net)["changes"][0]["application"]
        assert (application["batch"], application["batchStatus"], application["life"]) == (batch, "posted", "posted")
        wait_for(lambda: [m for m in feed.of("governance") if m["kind"] == "batch"], "the batch on the feed")
    finally:
        feed.close()

    # a restart replays the journal: the same signers, and the view is rebuilt
    net.restart()
    assert net.node.core.oracle_signers == frozenset(new_signers)
    assert wait_applied(net, 0)["application"]["batch"] == batch


# --- a new market -----------------------------------------------------------------------------------


def batch_codes(net: Net, trader: Any) -> list[str]:
    """The codes of a batch of 8 expired orders on market 2, named by id, "SOL-USD" and "SOL"."""
    orders = [{**trader.order(True, 1_000, 1, market=2, expiry=net.now() - 1), "market": (2, "SOL-USD", "SOL", 2)[i % 4]}
              for i in range(8)]  # a batch this size is checked on the signature worker when there is one
    return [r.get("code", "ok") for r in net.http.post("/v1/orders/batch", json={"orders": orders}).json()["results"]]


def test_a_market_added_by_governance_takes_orders_once_effective(net: Net, trader: Any) -> None:
    setup_market(net)
    sol = replace(net.genesis.markets[1], market_id=2, symbol="SOL-USD", lot_size="0.01", tick_size="0.001",
                  taker_fee_ppm=700)
    alice, bob = trader("alice"), trader("bob")
    feed = Feed(net, [{"channel": "governance"}, {"channel": "markets"}])
    try:
        announce(net, SetMarketParams(sol))
        change = wait_known(net, 0)
        assert (change["status"], change["kind"], change["newMarket"], change["market"], change["symbol"]) == (
            "announced", "market_params", True, 2, "SOL-USD")
        assert change["params"]["takerFeePpm"] == 700 and "changed" not in change
        # announced, not effective: no such market yet, for orders, reports or reads
        assert [m["symbol"] for m in net.http.get("/v1/markets").json()] == ["BTC-USD", "ETH-USD"]
        r = net.http.post("/v1/orders", json=alice.order(True, 1_000, 5, market=2))
        assert r.status_code != 200 and r.json()["error"]["code"] == "unknown_market", r.text
        assert net.http.get("/v1/markets/SOL-USD").status_code == 404
        assert batch_codes(net, alice) == ["unknown_market"] * 8  # checked on the signature worker too
        net.advance(net.genesis.preset.governance_delay - 5)
        assert wait_known(net, 0)["status"] == "announced"
        r = net.http.post("/v1/orders", json=alice.order(True, 1_000, 5, market=2))
        assert r.json()["error"]["code"] == "unknown_market", r.text

        net.advance(6)
        change = wait_applied(net, 0)
        assert change["status"] == "applied"
        listed = {m["symbol"]: m for m in net.http.get("/v1/markets").json()}
        assert listed["SOL-USD"]["market"] == 2 and listed["SOL-USD"]["takerFeePpm"] == 700
        assert listed["SOL-USD"]["oraclePrice"] == 0
        assert governance(net)["markets"][2] == {**change["params"]}
        wait_for(lambda: any(m["data"].get("symbol") == "SOL-USD" for m in feed.of("markets")), "the market on the feed")
        # the batch endpoint's worker knows it at once, by id and by symbol (expired: nothing changes)
        assert batch_codes(net, alice) == ["expired"] * 8
        # it takes orders once it has a price
        t = net.now()
        assert reports(net, ("oracle-1", "oracle-2"), 2, (1_000, 1_002), t)[1] == {"status": "ok", "applied": True}
        r = net.http.post("/v1/orders", json=alice.order(True, 1_000, 5, market=2))
        assert r.json()["state"] == "open", r.text
        assert net.http.get("/v1/markets/SOL-USD/book").json()["bids"] == [[1_000, 5]]
        r = net.http.post("/v1/orders", json=bob.order(False, 1_000, 5, market=2, tif="IOC"))
        assert r.json()["state"] == "filled", r.text
        [fill] = [f for f in net.private("bob", "fills") if f["market"] == 2]
        assert fill["fee"] == -(-5 * 1_000 * sol.atoms_per_lot_tick * 700 // 1_000_000)
        assert [p["lots"] for p in net.private("alice", "positions") if p["market"] == 2] == [5]

        state = replay_agrees(net)
        assert state.market(2).params == sol and state.position(alice.address, 2).lots == 5
        [(_, queue_index)] = applications(net, len(all_posted(net)))
        assert queue_index == 0
    finally:
        feed.close()
    net.restart()
    assert net.http.get("/v1/markets/SOL-USD").json()["takerFeePpm"] == 700
    assert net.http.get("/v1/markets/SOL-USD/book").json()["bids"] == []


# --- a rollback across the application ------------------------------------------------------------


def test_a_lost_batch_holding_the_application_is_rolled_back_and_applied_once(
        net: Net, trader: Any, vera: Verifier, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811 (the fixture)
    setup_market(net)
    trade(net, trader, 3)
    before = all_posted(net)
    vera.sync()
    new = replace(net.genesis.markets[BTC], taker_fee_ppm=1_500)
    announce(net, SetMarketParams(new))
    wait_known(net, 0)
    told = corrupt_next_batch(monkeypatch, net.keys.addr("mallory"))  # the next batch: the application's
    net.advance(net.genesis.preset.governance_delay + 1)
    wait_applied(net, 0)
    net.oracle(BTC, PRICE)
    trade(net, trader, 2)
    all_posted(net)
    trade(net, trader, 2)  # a batch built on the wrong one: it falls with it
    wrong = all_posted(net)
    assert told
    bad = wrong[len(before)]
    applied_in = applications(net, len(wrong))
    assert applied_in == [(bad["index"], 0)]  # the lost batch holds ApplyGovernance(0)

    [rb] = rolled_back(net, vera)
    assert rb["fromIndex"] == bad["index"] and rb["busted"] == []
    assert_state_is_the_chains(net)
    # the re-posted chain applies the change exactly once, and the sequencer says where
    with net.l1_client() as c:
        head = int(c.rollup()["head_index"])
        assert c.rollup()["governance_applied"] == 1
        assert c.batch(bad["l1BatchId"])["status"] == "lost"
    [(batch, queue_index)] = applications(net, head + 1)
    assert queue_index == 0 and batch >= bad["index"]
    assert len(net.node.core.governance_entries) == 1
    [change] = governance(net)["changes"]
    application = change["application"]
    assert (change["status"], application["batch"], application["batchStatus"], application["life"]) == (
        "applied", batch, "posted", "posted")
    state = replay_agrees(net)
    assert state.market(BTC).params == new and net.node.core.markets[BTC] == new
    fills = net.private("bob", "fills")
    assert {f["life"] for f in fills} == {"posted"} and len(fills) == 7
    # carries on to finality with the new fee
    trade(net, trader, 1)
    all_posted(net)
    vera.sync()
    all_final(net)
    application = governance(net)["changes"][0]["application"]
    assert (application["batch"], application["batchStatus"], application["life"]) == (batch, "final", "final")
    assert_state_is_the_chains(net)
