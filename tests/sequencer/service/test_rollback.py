"""The sequencer loses a batch (only a bug can make it: the bug is injected here) to an honest
verifier node, rolls back to the last valid root, re-applies every output after it, busts what
the spec now rejects, tells the accounts and the batches channel, re-posts and carries on.
Real sequencer and verifier over HTTP on a real base layer; clocks move by the chain's time
advance only. The journal runs on SQLite, and on PostgreSQL too with RAMPART_TEST_PG."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import sequencer.batcher as batcher_module
from contracts_spec import eip712
from contracts_spec.state import State
from contracts_spec.types import WithdrawalLeaf
from sequencer.rollback import compute_corrections
from verifier.keys import write_key
from verifier.node import Node as Verifier
from verifier.settings import Settings as VerifierSettings

from .conftest import NATIVE, USDC, Feed, Net, wait_for
from .disputes import PRICE, all_posted, chain_state, setup_market, trade


def account_feed(net: Net, names: list[str]) -> Feed:
    """The batches channel and the signed account channels of `names`."""
    subs: list[dict[str, Any]] = [{"channel": "batches"}]
    for name in names:
        ts = net.now()
        sig = "0x" + eip712.sign_subscribe(net.genesis.preset, net.keys[name], ts).hex()
        subs.append({"channel": "account", "account": "0x" + net.keys.addr(name).hex(), "timestamp": ts,
                     "signature": sig})
    return Feed(net, subs)


@pytest.fixture
def vera(net: Net, tmp_path: Path) -> Iterator[Verifier]:
    """An honest verifier node that challenges every wrong batch and plays its games."""
    key_file = tmp_path / "vera.key"
    write_key(key_file, net.keys["vera"])
    with net.l1_client("vera") as c:
        c.faucet(native=10 * NATIVE)
    settings = VerifierSettings(l1_url=net.l1.url, db=f"sqlite:///{tmp_path / 'vera.db'}", key_file=key_file,  # type: ignore[union-attr]
                                workers=1)
    node = Verifier(settings, net.keys["vera"])
    try:
        yield node
    finally:
        node.close()


def corrupt_next_batch(monkeypatch: pytest.MonkeyPatch, who: bytes) -> list[int]:
    """A bug in the batcher's execution: the next batch it builds credits `who` one USDC more than
    the rules give, so its post root is wrong and the sequencer's own state with it."""
    honest = batcher_module.apply_batch
    told: list[int] = []

    def buggy(state: State, body: Any, env: Any, signers: Any = None, ids: Any = None) -> None:
        honest(state, body, env, signers, ids)
        if not told and body.txs:
            told.append(len(body.txs))
            acct = state.account(who)
            state.set_account(who, replace(acct, collateral=acct.collateral + USDC))

    monkeypatch.setattr(batcher_module, "apply_batch", buggy)
    return told


def misread_deposit(net: Net, index: int, factor: int) -> None:
    """A bug in the follower: deposit `index` of the bridge's queue is fed to the engine (and so to
    the batch) `factor` times larger than the base layer holds it."""
    follower = net.node.follower  # type: ignore[union-attr]
    honest = follower._new_entries

    def misread(read: Callable[[int], Any], start: int, most: int = 1000) -> list[tuple[int, bytes, int]]:
        out = honest(read, start, most)
        if getattr(read, "__name__", "") != "deposit_entry":
            return out
        return [(i, a, amount * factor if i == index else amount) for i, a, amount in out]

    follower._new_entries = misread  # type: ignore[method-assign]


def rolled_back(net: Net, vera: Verifier, count: int = 1) -> list[dict[str, Any]]:
    """Sync the verifier until the sequencer has rolled back and re-posted everything."""

    def step() -> Any:
        vera.sync()
        rollbacks = net.http.get("/v1/rollbacks").json()  # type: ignore[union-attr]
        health = net.http.get("/health").json()  # type: ignore[union-attr]
        done = len(rollbacks) >= count and not health["rollingBack"] and not health["pendingPost"] \
            and health["batched"] == health["outputs"]
        return rollbacks if done else None

    return list(wait_for(step, "the rollback and the re-posting", 180))


def assert_state_is_the_chains(net: Net) -> None:
    """The sequencer's state is a fresh replay of the base layer's valid batches (which hold the
    re-applied outputs), record for record; its engine agrees with it."""
    node = net.node
    assert node is not None
    with net.l1_client() as c:
        rollup = c.rollup()
        replayed = chain_state(c, net.genesis, int(rollup["head_index"]) + 1)
    assert len(node.core.batches) == int(rollup["head_index"]) + 1
    with node.batcher.lock:
        ours = node.batcher.state
        assert ours.root() == replayed.root() == bytes.fromhex(rollup["head_root"][2:])
        assert ours.records == replayed.records
        assert compute_corrections(node.core.engine, ours, node.core.withdraw_nonce) == ((), (), ())


def all_final(net: Net) -> None:
    net.advance(net.genesis.preset.challenge_window + 1)
    wait_for(lambda: all(b["status"] == "final" for b in net.http.get("/v1/batches", params={"limit": 1000}).json()),  # type: ignore[union-attr]
             "every batch final")


def test_a_wrong_root_is_lost_rolled_back_and_reposted(net: Net, trader: Any, vera: Verifier,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    setup_market(net)
    trade(net, trader, 3)
    before = all_posted(net)
    vera.sync()
    feed = account_feed(net, ["alice"])
    try:
        told = corrupt_next_batch(monkeypatch, net.keys.addr("mallory"))
        trade(net, trader, 5)
        all_posted(net)
        trade(net, trader, 4)  # a batch built on the wrong one: it falls with it
        wrong = all_posted(net)
        assert told
        bad = wrong[len(before)]
        assert len(wrong) > len(before) + 1
        [rb] = rolled_back(net, vera)
        # the verifier won its game against the wrong batch; the sequencer's defender played it honestly
        with net.l1_client() as c:
            games = c.games(batch_id=bad["l1BatchId"])
            assert [g.status for g in games] == ["challenger_won"]
            assert c.batch(bad["l1BatchId"])["status"] == "lost"
        assert net.node.defender.results["lost"] == 1  # type: ignore[union-attr]
        assert rb["fromIndex"] == bad["index"] and rb["validRoot"] == bad["prevRoot"]
        assert {b["l1BatchId"] for b in rb["lost"]} == {b["l1BatchId"] for b in wrong[len(before):]}
        assert rb["busted"] == [] and rb["engineCorrections"] == 0  # the bug was the batcher's alone
        assert_state_is_the_chains(net)
        # every fill survived, in a re-posted batch
        fills = net.private("alice", "fills")
        assert len(fills) == 12 and {f["life"] for f in fills} == {"posted"}
        assert net.http.get("/health").json()["status"] == "ok"
        # the batches channel showed the lost batches and the rollback, then the re-posted batches
        lost = {m["data"]["l1BatchId"] for m in feed.of("batches") if m["data"].get("status") == "invalid"}
        assert lost == {b["l1BatchId"] for b in rb["lost"]}
        assert [m["data"]["fromIndex"] for m in feed.of("batches", kind="rollback")] == [bad["index"]]
        # carries on: new trading is posted on the re-posted chain, and everything becomes final
        trade(net, trader, 2)
        all_posted(net)
        vera.sync()
        all_final(net)
        assert {f["life"] for f in net.private("alice", "fills")} == {"final"}
        assert_state_is_the_chains(net)
    finally:
        feed.close()


def test_busted_fills_are_reported_and_the_rest_goes_on(net: Net, trader: Any, vera: Verifier) -> None:
    setup_market(net)
    alice, carol = trader("alice"), trader("carol")
    misread_deposit(net, 2, 100)  # carol's 1,000 USDC are read as 100,000
    net.deposit("carol", 1_000 * USDC)
    feed = account_feed(net, ["alice", "carol"])
    try:
        # affordable with 1,000 USDC: survives
        net.http.post("/v1/orders", json=alice.order(False, PRICE, 10))
        small = net.http.post("/v1/orders", json=carol.order(True, PRICE, 10, tif="IOC")).json()
        assert small["state"] == "filled"
        # only affordable with the phantom collateral: the spec rejects it once it is gone
        big_ask = alice.order(False, PRICE, 100_000)
        net.http.post("/v1/orders", json=big_ask)
        big = net.http.post("/v1/orders", json=carol.order(True, PRICE, 100_000, tif="IOC")).json()
        assert big["state"] == "filled"
        # reduce-only against the position the big fill opened: rejected too, once it is busted
        net.http.post("/v1/orders", json=alice.order(True, PRICE - 1, 50_000))
        close = net.http.post("/v1/orders", json=carol.order(False, PRICE - 1, 50_000, tif="IOC",
                                                               reduce_only=True)).json()
        assert close["state"] == "filled"
        # a withdrawal of the phantom collateral: the spec rejects it too
        r = net.http.post("/v1/withdrawals", json=carol.withdraw(5_000 * USDC, 0))
        assert r.status_code == 200, r.text
        all_posted(net)
        assert net.private("carol", "margin")["value"] > 90_000 * USDC  # the engine believed it
        [rb] = rolled_back(net, vera)
        assert rb["bridgeCorrections"] == 1 and rb["engineCorrections"] > 0
        busted_ids = {big["orderId"], close["orderId"]}
        assert len(rb["bustedFills"]) == 2 and {f["lots"] for f in rb["bustedFills"]} == {100_000, 50_000}
        assert len(rb["bustedWithdrawals"]) == 1
        # over the API: each fill's life, each order's end, the account as the spec has it
        fills = {f["orderId"]: f for f in net.private("carol", "fills")}
        assert {oid: fills[oid]["life"] for oid in busted_ids} == dict.fromkeys(busted_ids, "busted")
        assert fills[small["orderId"]]["life"] == "posted"
        alice_fills = net.private("alice", "fills")
        assert sorted(f["life"] for f in alice_fills) == ["busted", "busted", "posted"]
        orders = {o["orderId"]: o for o in net.private("carol", "orders")}
        assert (orders[big["orderId"]]["status"], orders[big["orderId"]]["filled"],
                orders[big["orderId"]]["busted"]) == ("busted", 0, 100_000)
        margin = net.private("carol", "margin")
        assert 900 * USDC < margin["value"] < 1_000 * USDC
        assert [p["lots"] for p in net.private("carol", "positions")] == [10]
        [w] = net.private("carol", "withdrawals")
        assert (w["amount"], w["life"], w["claim"]) == (5_000 * USDC, "busted", None)
        assert margin["withdrawNonce"] == 0  # the busted withdrawal's nonce is free again
        # over the WebSocket: the account channel and the batches channel
        assert [m["data"]["life"] for m in feed.of("account", kind="withdrawal")][-1] == "busted"
        busted_msgs = [m for m in feed.of("account", kind="fill") if m["data"]["life"] == "busted"]
        assert {m["data"]["orderId"] for m in busted_msgs} >= busted_ids
        assert {m["data"]["lots"] for m in busted_msgs} == {100_000, 50_000}
        [msg] = feed.of("batches", kind="rollback")
        assert sorted(f["id"] for f in msg["data"]["bustedFills"]) == sorted(
            set(rb["busted"]) - set(rb["bustedWithdrawals"]))
        assert_state_is_the_chains(net)
        # carries on: carol trades within her real means, and everything becomes final
        net.http.post("/v1/orders", json=alice.order(False, PRICE, 5))
        more = net.http.post("/v1/orders", json=carol.order(True, PRICE, 5, tif="IOC")).json()
        assert more["state"] == "filled"
        r = net.http.post("/v1/withdrawals", json=carol.withdraw(100 * USDC, 0))
        assert r.status_code == 200, r.text
        all_posted(net)
        vera.sync()
        all_final(net)
        lives = {f["orderId"]: f["life"] for f in net.private("carol", "fills")}
        assert lives == {small["orderId"]: "final", more["orderId"]: "final", **dict.fromkeys(busted_ids, "busted")}
        withdrawals = net.private("carol", "withdrawals")
        assert [(w["amount"], w["life"]) for w in withdrawals] == [(5_000 * USDC, "busted"), (100 * USDC, "final")]
        claim = withdrawals[1]["claim"]
        assert claim is not None
        with net.l1_client("carol") as c:  # the re-posted chain pays it on the base layer
            c.withdraw(claim["batchId"], WithdrawalLeaf(claim["leafIndex"], net.keys.addr("carol"), claim["amount"]),
                       [bytes.fromhex(h[2:]) for h in claim["proof"]])
        assert_state_is_the_chains(net)
        # all of it survives a restart: the journal replays the rollback
        root = net.node.batcher.state.root()  # type: ignore[union-attr]
        net.restart()
        assert net.node.batcher.state.root() == root  # type: ignore[union-attr]
        assert net.http.get("/v1/rollbacks").json() == net.http.get("/v1/rollbacks").json() and \
            len(net.http.get("/v1/rollbacks").json()) == 1
        assert {f["orderId"]: f["life"] for f in net.private("carol", "fills")} == lives
        assert_state_is_the_chains(net)
    finally:
        feed.close()


def test_a_batch_lost_while_the_sequencer_is_down(net: Net, trader: Any, vera: Verifier,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Its game lost on the clock while it was away: the restarted sequencer finds the loss when it
    replays its batches, rolls back before anything else, re-posts and goes on."""
    setup_market(net)
    trade(net, trader, 3)
    before = all_posted(net)
    corrupt_next_batch(monkeypatch, net.keys.addr("mallory"))
    trade(net, trader, 5)
    bad = all_posted(net)[len(before)]
    net.stop_seq()
    with net.l1_client() as c:
        wait_for(lambda: vera.sync() and c.games(batch_id=bad["l1BatchId"]), "the verifier's challenge")
        [g] = c.games(batch_id=bad["l1BatchId"])
        assert g.deadline is not None
        c.increase_time(g.deadline - c.now() + 1)  # nobody defends it
        wait_for(lambda: vera.sync() is not None and c.batch(bad["l1BatchId"])["status"] == "lost", "the loss")
    monkeypatch.undo()  # the restarted sequencer runs without the bug
    net.start_seq()
    [rb] = rolled_back(net, vera)
    assert rb["fromIndex"] == bad["index"] and rb["busted"] == []
    assert rb["lost"] and rb["lost"][0]["l1BatchId"] == bad["l1BatchId"]
    assert {f["life"] for f in net.private("alice", "fills")} == {"posted"}
    assert_state_is_the_chains(net)
    with net.l1_client() as c:
        assert c.game(g.game_id).status == "challenger_won"
    wait_for(lambda: net.node.defender.player.progress() and all(  # type: ignore[union-attr]
        r.status != "open" for r in net.node.defender.player.progress()), "the defender to settle the lost game")  # type: ignore[union-attr]
    trade(net, trader, 2)
    all_posted(net)
    vera.sync()
    all_final(net)
    assert_state_is_the_chains(net)


def test_a_fill_that_fits_no_batch_is_busted_and_the_engine_forgets_it(net_factory: Any, trader: Any) -> None:
    """Nothing lost, but a fill whose oracle price went stale before any batch could take it: the
    same path busts it, reports it and puts the engine back on the spec's records."""
    net = net_factory(batch_interval=3600.0)  # batches only when the test wakes the batcher
    node = net.node

    def batch_everything() -> None:
        def step() -> bool:
            node.core.loop.call_soon_threadsafe(node.follower.wake.set)
            h = net.http.get("/health").json()
            return bool(h["batched"] == h["outputs"] and not h["pendingPost"] and not h["rollingBack"])
        wait_for(step, "every output batched")

    setup_market(net)
    trade(net, trader, 1)
    assert net.private("alice", "positions")[0]["lots"] == 1
    net.advance(net.genesis.preset.max_time_lag + 100)  # the price behind the fill is stale for any batch
    batch_everything()
    [rb] = net.http.get("/v1/rollbacks").json()
    assert rb["lost"] == [] and len(rb["bustedFills"]) == 1 and rb["engineCorrections"] > 0
    [fill] = net.private("alice", "fills")
    assert fill["life"] == "busted"
    assert net.private("alice", "positions") == [] and net.private("bob", "positions") == []
    assert all(b["status"] == "posted" for b in net.http.get("/v1/batches").json())
    assert_state_is_the_chains(net)
    # trading goes on at a fresh price
    net.oracle(0, PRICE)
    trade(net, trader, 2)
    batch_everything()
    assert sorted(f["life"] for f in net.private("alice", "fills")) == ["busted", "posted", "posted"]
    assert_state_is_the_chains(net)
