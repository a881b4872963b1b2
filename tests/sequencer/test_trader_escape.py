"""The sequencer stops (its process is gone): users leave through the base layer alone with the
trader client — a final withdrawal claimed with a proof rebuilt from the chain, a freeze once the
escape delay has passed, each account's value from the last final root, an unconsumed deposit
refunded — and nobody is paid twice."""

from __future__ import annotations

import pytest
from trader_net import BTC, PRICE, USDC, Net, db_fixture, net_fixture, wait_for  # noqa: F401  (fixtures)

from contracts_spec.params import DEV
from sequencer.trader_client import TraderError


def test_users_leave_after_the_sequencer_stops(net: Net) -> None:
    carol, bob, dave = net.trader("carol"), net.trader("bob"), net.trader("dave")
    alice = net.trader("alice")
    # carol deposits and never talks to the sequencer again
    net.fund(carol, 2_000 * USDC)
    # alice and bob trade; bob withdraws part of his collateral
    net.fund(alice, 5_000 * USDC)
    net.fund(bob, 5_000 * USDC)
    net.oracle(BTC, PRICE)
    alice.place("BTC-USD", True, PRICE, 200)
    bob.place("BTC-USD", False, PRICE, 200, tif="IOC")
    bob.withdraw(10 * USDC)
    net.finalize(lambda: bob.withdrawals()[0]["life"], "bob's withdrawal")
    net.quiesce()
    expected = {n: t.margin()["value"] for n, t in (("alice", alice), ("bob", bob), ("carol", carol))}

    # the sequencer stops (everything it acknowledged is posted); dave deposits on the base layer anyway
    net.stop_sequencer()
    chain = net.chain()
    final_index = chain.rollup()["head_index"]
    with pytest.raises(TraderError) as e:
        carol.margin()
    assert e.value.code == "unreachable"
    net.fund(dave, 300 * USDC, wait=False)
    with pytest.raises(TraderError) as e:
        carol.freeze()
    assert e.value.code == "freeze_refused"

    # bob claims his final withdrawal: the proof is rebuilt from the base layer's data
    bob_l1 = bob.balances()["usdc"]
    (paid,) = bob.claim()
    assert paid["amount"] == 10 * USDC and bob.balances()["usdc"] == bob_l1 + 10 * USDC

    # the escape delay passes; anyone freezes; everyone takes their value at the last final root
    net.advance(DEV.escape_delay + 1)
    frozen = carol.freeze()
    assert frozen["index"] == final_index and frozen["reason"] == "no_batch"
    assert chain.canonical(final_index)["status"] == "final"
    for name, trader in (("carol", carol), ("alice", alice), ("bob", bob)):
        before = trader.balances()["usdc"]
        result = trader.escape()
        assert result["escaped"]["paid"] == result["escaped"]["value"] == expected[name] > 0
        assert trader.balances()["usdc"] == before + expected[name]
    assert expected["carol"] == 2_000 * USDC

    # dave's deposit was never consumed: it comes back whole; he had nothing at the root
    dave_l1 = dave.balances()["usdc"]
    result = dave.escape()
    assert result["escaped"]["paid"] == 0 and [r["amount"] for r in result["refunded"]] == [300 * USDC]
    assert dave.balances()["usdc"] == dave_l1 + 300 * USDC

    # nobody is paid twice
    again = carol.escape()
    assert again["escaped"]["already"] and again["refunded"] == []
    assert bob.claim() == []
    status = carol.escape_status()["freeze"]
    assert status["escaped_total"] == sum(expected.values()) and status["refunded_deposits"] == 300 * USDC
    assert chain.rollup()["bridge_usdc"] >= 0
