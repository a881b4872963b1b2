"""The state transition: valid flows, and one rejected transaction per rule with the state unchanged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from contracts_spec import errors
from contracts_spec.margin import account_value, maintenance_requirement
from contracts_spec.stf import apply_batch, funding_rate_ppm, holdings, median_price
from contracts_spec.types import (
    FEE_ACCOUNT,
    INSURANCE_FUND,
    BatchData,
    Deposit,
    ForcedWithdraw,
    TimeInForce,
    Trade,
)
from tests.spec.conftest import BTC, BTC_PRICE, ETH, T0, USDC, World


def total_collateral(w: World) -> int:
    return sum(a.collateral for a in w.state.accounts().values())


def test_setup_world_conserves_and_opens_positions(world: World) -> None:
    s, k = world.state, world.keys
    assert s.position(k.addr("alice"), BTC).lots == 1_000
    assert s.position(k.addr("bob"), BTC).lots == -1_000
    assert s.market(BTC).open_interest == 1_000
    assert total_collateral(world) == (100_000 + 100_000 + 2_000 + 1_000_000) * USDC
    # maker alice paid 1 bp, taker bob 5 bp of 0.1 BTC x 60,000 = 6,000 USDC
    assert s.account(FEE_ACCOUNT).collateral == 600_000 + 3_000_000


def test_trade_settles_fees_and_premium(world: World) -> None:
    b = world.b
    b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE + 100, lots=100)
    world.apply()
    m = world.state.market(BTC)
    assert m.premium_sum == 100 * 100 and m.premium_lots == 1_000 + 100
    assert world.state.position(world.keys.addr("carol"), BTC).lots == 100


def test_liquidation_moves_position_to_fund_with_penalty(world: World) -> None:
    b, s, k = world.b, world.state, world.keys
    # carol goes ~17x long 0.5 BTC, then BTC drops 5%
    b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE, lots=5_000)
    b.oracle(BTC, 570_000, T0 + 20)
    world.now = T0 + 21
    world.apply()
    carol = k.addr("carol")
    held = holdings(s, carol, s.account(carol))
    assert account_value(s.account(carol).collateral, held) < maintenance_requirement(held)
    before = total_collateral(world)
    b.reset()
    b.liquidate("carol", BTC, 5_000, 570_000)
    world.apply()
    assert s.position(carol, BTC).lots == 0
    assert s.position(INSURANCE_FUND, BTC).lots == 5_000
    assert s.account(carol).collateral >= 0
    assert total_collateral(world) == before


def test_deficit_beyond_fund_is_socialised_and_collected(world: World) -> None:
    b, s, k = world.b, world.state, world.keys
    b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE, lots=5_000)
    b.oracle(BTC, 500_000, T0 + 20)  # -16.7%: carol is deep under water
    world.now = T0 + 21
    world.apply()
    b.reset()
    b.liquidate("carol", BTC, 5_000, 500_000)
    world.apply()
    m = s.market(BTC)
    assert s.account(k.addr("carol")).collateral == 0
    assert m.loss_index > 0  # the fund had (almost) nothing: the rest is socialised
    fund_before = s.account(INSURANCE_FUND).collateral
    assert fund_before < 0
    # an ordinary trade settles dave's share of the loss back to the fund
    b.reset()
    b.match("dave", "alice", BTC, maker_buys=False, price=500_000, lots=10)
    world.apply()
    assert s.account(INSURANCE_FUND).collateral > fund_before
    assert total_collateral(world) == (100_000 + 100_000 + 2_000 + 1_000_000) * USDC


def test_funding_is_capped_and_zero_sum_up_to_dust(world: World) -> None:
    b, s, k = world.b, world.state, world.keys
    b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE + 6_000, lots=2_000)  # +1% premium
    world.apply()
    assert funding_rate_ppm(s.market(BTC)) == s.market(BTC).params.funding_rate_cap_ppm
    b.reset()
    b.oracle(BTC, BTC_PRICE, T0 + 70)
    b.funding(BTC)
    world.now = T0 + 71
    world.apply()
    m = s.market(BTC)
    assert m.premium_lots == 0 and m.last_funding_time == T0 + 71
    # longs owe what shorts are owed, exactly, before rounding
    longs = sum(p.lots for a in (k.addr(n) for n in ("alice", "bob", "carol", "dave"))
                for p in [s.position(a, BTC)] if p.lots > 0)
    shorts = -sum(p.lots for a in (k.addr(n) for n in ("alice", "bob", "carol", "dave"))
                  for p in [s.position(a, BTC)] if p.lots < 0)
    assert longs == shorts == m.open_interest


def test_withdrawal_appends_to_tree_and_bumps_nonce(world: World) -> None:
    b, s, k = world.b, world.state, world.keys
    b.withdraw("carol", 500 * USDC, nonce=0)
    world.apply()
    assert s.account(k.addr("carol")).withdraw_nonce == 1
    assert s.globals().withdrawal_count == 1


def test_unaffordable_forced_withdrawal_is_consumed_as_rejected(world: World) -> None:
    b, s, k = world.b, world.state, world.keys
    b.forced_withdraw("carol", 10**12)
    world.apply()
    assert s.globals().forced_consumed == 1
    assert s.globals().withdrawal_count == 0
    assert s.account(k.addr("carol")).collateral == 2_000 * USDC


def test_median_is_the_lower_middle() -> None:
    assert median_price([5, 1, 3]) == 3
    assert median_price([4, 1, 3, 2]) == 2


# --- one rejection per rule ---------------------------------------------------------------

Case = Callable[[World], None]


def _fill_after_cancel(w: World) -> None:
    m = w.b.order("dave", BTC, False, BTC_PRICE, 10)
    t = w.b.order("carol", BTC, True, BTC_PRICE, 10)
    w.b.cancel("dave", m)
    w.b.trade(m, t, 10)


def _fill_after_cancel_all(w: World) -> None:
    m = w.b.order("dave", BTC, False, BTC_PRICE, 10, nonce=3)
    t = w.b.order("carol", BTC, True, BTC_PRICE, 10)
    w.b.cancel_all("dave", 4)
    w.b.trade(m, t, 10)


def _overfill(w: World) -> None:
    m = w.b.order("dave", BTC, False, BTC_PRICE, 10)
    t1 = w.b.order("carol", BTC, True, BTC_PRICE, 6)
    t2 = w.b.order("alice", BTC, True, BTC_PRICE, 6)
    w.b.trade(m, t1, 6)
    w.b.trade(m, t2, 6)


def _orders(w: World, **taker: object) -> tuple[int, int]:
    m = w.b.order("dave", BTC, False, BTC_PRICE, 10)
    args: dict = dict(name="carol", market=BTC, is_buy=True, price=BTC_PRICE, lots=10)
    args.update(taker)
    return m, w.b.order(**args)


def _trade(w: World, lots: int = 10, trade_price: int | None = None, **taker: object) -> None:
    m, t = _orders(w, **taker)
    w.b.trade(m, t, lots, trade_price)


def _cancel_by_other(w: World) -> None:
    m, _ = _orders(w)
    forged = replace(w.b.cancel("dave", m), account=w.keys.addr("carol"))
    w.b.txs[-1] = forged


def _withdraw_by_other(w: World) -> None:
    w.b.txs.append(replace(w.b.withdraw("carol", 1, 0), account=w.keys.addr("dave")))
    del w.b.txs[-2]


def _liquidate_fund(w: World) -> None:
    w.b._add(replace(w.b.liquidate("alice", BTC, 1, BTC_PRICE), account=INSURANCE_FUND))
    del w.b.txs[-2]


def _high_s(w: World) -> None:
    from contracts_spec.crypto import SECP256K1_N

    m, t = _orders(w)
    so = w.b.orders[t]
    r, s, v = so.signature[:32], int.from_bytes(so.signature[32:64], "big"), so.signature[64]
    w.b.orders[t] = replace(so, signature=r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v]))
    w.b.trade(m, t, 10)


def _oracle_future(w: World) -> None:
    w.b.oracle(BTC, BTC_PRICE, w.now + 5)


def _stale_trade(w: World) -> None:
    w.now = T0 + 1 + 61
    _trade(w)


def _carol_underwater(w: World) -> None:
    w.b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE, lots=5_000)


CASES: list[tuple[str, Case, type[errors.SpecError]]] = [
    ("deposit-wrong-index", lambda w: w.b._add(Deposit(7)), errors.BadQueueIndex),
    ("deposit-not-in-bridge", lambda w: w.b._add(Deposit(4)), errors.BadQueueIndex),
    ("forced-wrong-index", lambda w: w.b._add(ForcedWithdraw(1)), errors.BadQueueIndex),
    ("trade-unknown-order", lambda w: w.b._add(Trade(0, 9, 1, BTC_PRICE)), errors.UnknownOrder),
    ("trade-forged-signature", lambda w: _trade(w, signer="alice"), errors.WrongSigner),
    ("trade-high-s", _high_s, errors.BadSignature),
    ("trade-same-side", lambda w: _trade(w, is_buy=False), errors.SideMismatch),
    ("trade-self", lambda w: _trade(w, name="dave"), errors.SelfTrade),
    ("trade-expired", lambda w: _trade(w, expiry=T0 + 5), errors.OrderExpired),
    ("trade-not-maker-price", lambda w: _trade(w, trade_price=BTC_PRICE - 1), errors.PriceOutsideLimit),
    ("trade-beyond-taker-limit", lambda w: _trade(w, price=BTC_PRICE - 10), errors.PriceOutsideLimit),
    ("trade-post-only-taker", lambda w: _trade(w, tif=TimeInForce.POST_ONLY), errors.PostOnlyViolated),
    ("trade-overfill", _overfill, errors.Overfill),
    ("trade-zero-lots", lambda w: _trade(w, lots=0), errors.InvalidAmount),
    ("trade-after-cancel", _fill_after_cancel, errors.OrderCancelled),
    ("trade-after-cancel-all", _fill_after_cancel_all, errors.OrderCancelled),
    ("trade-reduce-only-increases", lambda w: _trade(w, reduce_only=True), errors.ReduceOnlyViolated),
    ("trade-below-initial-margin", lambda w: w.b.match("dave", "carol", BTC, False, BTC_PRICE, 10_000), errors.InsufficientMargin),
    ("trade-outside-band", lambda w: w.b.match("dave", "carol", BTC, False, 700_000, 1), errors.PriceOutsideBand),
    ("trade-stale-oracle", _stale_trade, errors.StaleOracle),
    ("trade-unknown-market", lambda w: w.b.match("dave", "carol", 7, False, 100, 1), errors.UnknownMarket),
    ("trade-position-limit", lambda w: w.b.match("dave", "alice", BTC, False, BTC_PRICE, 10_000_001), errors.PositionLimit),
    ("cancel-wrong-signer", _cancel_by_other, errors.WrongSigner),
    ("cancel-all-replay", lambda w: (w.b.cancel_all("dave", 5), w.b.cancel_all("dave", 5)), errors.BadNonce),
    ("oracle-below-quorum", lambda w: w.b.oracle(BTC, BTC_PRICE, T0 + 5, signers=("oracle-0",)), errors.OracleQuorum),
    ("oracle-unregistered", lambda w: w.b.oracle(BTC, BTC_PRICE, T0 + 5, signers=("oracle-0", "mallory")), errors.OracleQuorum),
    ("oracle-repeated-signer", lambda w: w.b.oracle(BTC, BTC_PRICE, T0 + 5, signers=("oracle-0", "oracle-0")), errors.OracleQuorum),
    ("oracle-not-increasing", lambda w: w.b.oracle(BTC, BTC_PRICE, T0 + 1), errors.OracleNotMonotonic),
    ("oracle-in-future", _oracle_future, errors.OracleNotMonotonic),
    ("oracle-move-too-large", lambda w: w.b.oracle(BTC, BTC_PRICE * 2, T0 + 5), errors.OracleMoveTooLarge),
    ("funding-too-early", lambda w: w.b.funding(BTC), errors.FundingTooEarly),
    ("liquidate-healthy", lambda w: w.b.liquidate("alice", BTC, 1_000, BTC_PRICE), errors.HealthyAccount),
    ("liquidate-system", _liquidate_fund, errors.HealthyAccount),
    ("liquidate-outside-band", lambda w: w.b.liquidate("alice", BTC, 1_000, 500_000), errors.PriceOutsideBand),
    ("withdraw-beyond-free", lambda w: w.b.withdraw("carol", 2_001 * USDC, 0), errors.InsufficientMargin),
    ("withdraw-with-position-beyond-free", lambda w: w.b.withdraw("bob", 99_800 * USDC, 0), errors.InsufficientMargin),
    ("withdraw-bad-nonce", lambda w: w.b.withdraw("carol", 1, 1), errors.BadNonce),
    ("withdraw-zero", lambda w: w.b.withdraw("carol", 0, 0), errors.InvalidAmount),
    ("withdraw-wrong-signer", _withdraw_by_other, errors.WrongSigner),
]


@pytest.mark.parametrize(("name", "build", "error"), CASES, ids=[c[0] for c in CASES])
def test_invalid_transaction_is_rejected_and_changes_nothing(
    world: World, name: str, build: Case, error: type[errors.SpecError]
) -> None:
    state = world.state
    root_before = state.root()
    records_before = dict(state.records)
    build(world)
    with pytest.raises(error):
        apply_batch(state, BatchData(tuple(world.b.orders), tuple(world.b.txs)), world.b.env(world.now))
    assert state.records == records_before
    assert state.root() == root_before


def test_liquidation_of_an_underwater_account_rejects_oversize(world: World) -> None:
    _carol_underwater(world)
    world.b.oracle(BTC, 570_000, T0 + 20)
    world.now = T0 + 21
    world.apply()
    world.b.reset()
    world.b.liquidate("carol", BTC, 5_001, 570_000)
    root = world.state.root()
    with pytest.raises(errors.InvalidAmount):
        world.apply()
    assert world.state.root() == root


def test_eth_market_is_independent(world: World) -> None:
    world.b.match("dave", "carol", ETH, maker_buys=True, price=300_000, lots=100)
    world.apply()
    carol = world.keys.addr("carol")
    assert world.state.account(carol).markets == (ETH,)


def test_rollback_after_a_root_restores_the_committed_root(world: World) -> None:
    state = world.state
    root = state.root()
    mark = len(state.undo)
    world.b.deposit("erin", 5 * USDC)
    world.apply()
    assert state.root() != root  # the tree now holds erin's deposit
    state.rollback_to(mark)
    assert state.root() == root
