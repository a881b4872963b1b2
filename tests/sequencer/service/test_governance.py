"""Time-locked governance through a live sequencer over real HTTP: a fee change announced with the
governance key is applied by the sequencer's next batch once effective (ApplyGovernance), the base
layer accepts that batch, later trades pay the new fee, and the sequencer's root is what a fresh
replay of the posted batches gives."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from contracts_spec.types import ApplyGovernance, SetMarketParams
from verifier.player import fetch_batch

from .conftest import BTC, NATIVE, Net, wait_for
from .disputes import PRICE, all_posted, chain_state, setup_market


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
