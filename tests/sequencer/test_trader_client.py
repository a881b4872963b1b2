"""The trader client (`sequencer.trader_client`) against a real base layer and a real sequencer,
both as processes: deposits, orders signed locally, fills through their life, positions and
margin, cancels and replaces, withdrawals claimed on the base layer, forced withdrawals, and a
clear error for every refusal."""

from __future__ import annotations

import pytest
from trader_net import BTC, PRICE, USDC, Net, db_fixture, net_fixture, wait_for  # noqa: F401  (fixtures)

from sequencer.trader_client import Trader, TraderError, format_usdc, to_units, usdc_atoms


def refused(code: str, call: object, source: str | None = None) -> TraderError:
    with pytest.raises(TraderError) as e:
        call()  # type: ignore[operator]
    assert e.value.code == code, e.value
    if source is not None:
        assert e.value.source == source
    return e.value


def life(trader: Trader, order_id: str) -> str:
    (fill,) = [f for f in trader.fills() if f["orderId"] == order_id]
    return str(fill["life"])


def test_trade_fill_life_positions_and_order_management(net: Net) -> None:
    alice, bob = net.trader("alice"), net.trader("bob")
    net.fund(alice, 10_000 * USDC)
    net.fund(bob, 10_000 * USDC)
    net.oracle(BTC, PRICE)

    maker = alice.place("BTC-USD", True, PRICE, 100)
    assert maker.result["state"] == "open" and maker.result["orderId"] == maker.order_id
    taker = bob.place("BTC", False, PRICE, 100, tif="IOC")
    assert taker.result["state"] == "filled" and taker.result["fills"][0]["lots"] == 100

    # the fill's life: matched -> posted -> final
    assert life(alice, maker.order_id) in ("matched", "posted")
    wait_for(lambda: life(alice, maker.order_id) == "posted", "the fill to be posted")
    net.finalize(lambda: life(alice, maker.order_id), "the fill")
    assert life(bob, taker.order_id) == "final"

    (pos,) = alice.positions()
    assert (pos["symbol"], pos["lots"], pos["side"]) == ("BTC-USD", 100, "long")
    m = alice.margin()
    assert m["value"] < 10_000 * USDC and m["free"] > 0 and not m["liquidatable"]

    # resting order: cancel, replace, cancel-all (a fresh price first: the window made the last stale)
    net.oracle(BTC, PRICE)
    resting = alice.place(0, True, PRICE - 1_000, 10)
    assert alice.cancel(resting.order_id)["status"] == "ok"
    assert alice.order(resting.order_id)["status"] == "cancelled"
    first = alice.place(0, True, PRICE - 1_000, 10)
    second = alice.replace(first.order_id, 0, True, PRICE - 2_000, 20)
    assert second.result["replaced"] == first.order_id
    assert {o["orderId"]: o["status"] for o in alice.orders()}[second.order_id] == "open"
    quotes = [q["orderId"] for q in alice.place_many([{"market": 0, "is_buy": True, "price": PRICE - 3_000 - i,
                                                         "lots": 1} for i in range(3)])]
    pulled = alice.cancel_many([quotes[0], quotes[2], quotes[0]])
    assert [(r["status"], r.get("code")) for r in pulled] == [("ok", None), ("ok", None), ("error", "unknown_order")]
    assert {o["orderId"] for o in alice.orders(status="open")} == {second.order_id, quotes[1]}
    assert alice.cancel_all()["status"] == "ok"
    assert alice.order(second.order_id)["status"] == "cancelled"
    assert [o for o in alice.orders(status="open")] == []

    # refusals, each with its code, nothing placed
    refused("unknown_order", lambda: alice.cancel(resting.order_id), "sequencer")
    refused("bad_order_id", lambda: alice.cancel("0x1234"), "client")
    refused("unknown_market", lambda: alice.place("DOGE-USD", True, PRICE, 1), "client")
    refused("bad_tif", lambda: alice.place(0, True, PRICE, 1, tif="GTX"), "client")
    too_big = refused("insufficient_margin", lambda: alice.place(0, True, PRICE, 1_000_000), "sequencer")
    assert too_big.status == 422
    refused("stale_auth", lambda: alice._seq("GET", f"/v1/accounts/{alice.account}/margin",
                                             headers={"X-Rampart-Timestamp": "1", "X-Rampart-Signature": "0x" + "00" * 65}))


def test_withdraw_then_claim_on_the_base_layer(net: Net) -> None:
    alice = net.trader("alice")
    net.fund(alice, 1_000 * USDC)
    l1_before = alice.balances()["usdc"]
    refused("insufficient_margin", lambda: alice.withdraw(2_000 * USDC), "sequencer")
    w = alice.withdraw(100 * USDC)
    assert w["status"] == "ok" and w["amount"] == 100 * USDC
    assert alice.claimable() == []  # not final yet
    net.finalize(lambda: alice.withdrawals()[0]["life"], "the withdrawal")
    assert alice.withdrawals()[0]["claim"]["amount"] == 100 * USDC
    (paid,) = alice.claim()
    assert paid["amount"] == 100 * USDC and alice.balances()["usdc"] == l1_before + 100 * USDC
    assert alice.claim() == []
    refused("nothing_to_claim", lambda: alice.claim(paid["leafIndex"]))
    assert alice.margin()["collateral"] == 900 * USDC


def test_a_forced_withdrawal_is_served_and_claimed(net: Net) -> None:
    bob = net.trader("bob")
    net.fund(bob, 500 * USDC)
    index = bob.force_withdraw(50 * USDC)
    assert index == 0
    wait_for(lambda: any(w["forcedIndex"] == 0 and w["accepted"] for w in bob.withdrawals()), "the request to be served")
    net.finalize(lambda: bob.withdrawals()[0]["life"], "the forced withdrawal")
    assert bob.claimable()
    before = bob.balances()["usdc"]
    (paid,) = bob.claim()
    assert paid["amount"] == 50 * USDC and bob.balances()["usdc"] == before + 50 * USDC


def test_base_layer_refusals_are_clear(net: Net) -> None:
    carol = net.trader("carol")
    refused("insufficient_balance", lambda: carol.deposit(10 * USDC), "l1")
    refused("malformed", lambda: carol.deposit(0), "l1")
    refused("freeze_refused", carol.freeze, "l1")
    refused("not_frozen", carol.escape, "l1")


@pytest.mark.parametrize(
    "text,unit,expected",
    [("60000.5", "0.1", 600_005), ("0.01", "0.0001", 100), ("1", "0.001", 1_000), ("12.000001", "0.000001", 12_000_001)],
)
def test_exact_decimal_units(text: str, unit: str, expected: int) -> None:
    assert to_units(text, unit, "x") == expected


@pytest.mark.parametrize("text", ["60000.05", "-1", "0", "abc", "1e-9"])
def test_inexact_or_bad_amounts_are_refused(text: str) -> None:
    refused("bad_amount", lambda: to_units(text, "0.1", "price"))


def test_usdc_formatting() -> None:
    assert usdc_atoms("1.5") == 1_500_000 and format_usdc(-1_500_001) == "-1.500001"
