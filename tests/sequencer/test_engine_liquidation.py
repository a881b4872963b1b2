"""The liquidation index against a brute-force scan, liquidations and deficits applied by the
spec, funding ticks, and the insurance fund's unwind."""

from __future__ import annotations

from typing import Any

from engine_harness import T0, USDC, Mirror
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts_spec.params import BTC_USD, ETH_USD
from contracts_spec.types import (
    INSURANCE_FUND,
    FundingTick,
    Liquidate,
    Order,
    SignedOrder,
    TimeInForce,
)
from sequencer.engine import Engine, Fill, Reject
from sequencer.engine.liquidation import brute_force, scan

P = {0: 600_000, 1: 300_000}
IOC = TimeInForce.IOC

# --- the index finds exactly what a scan of every account finds ----------------------------


class Driver:
    """An engine fed unsigned orders (as the benchmark does): fast enough for many examples."""

    def __init__(self, accounts: int) -> None:
        self.engine = Engine((BTC_USD, ETH_USD))
        self.now = 1
        self.n = 0
        self.addrs = [b"\xaa" + i.to_bytes(19, "big") for i in range(accounts)]
        for market, price in P.items():
            self.engine.set_oracle(market, price, self.now)

    def order(self, who: int, market: int, is_buy: bool, price: int, lots: int, tif: Any = TimeInForce.GTC) -> Any:
        self.n += 1
        order = Order(self.addrs[who], market, is_buy, price, lots, tif, False, 0, self.n, 0)  # type: ignore[arg-type]
        return self.engine.place(SignedOrder(order, bytes(65)), self.n.to_bytes(32, "big"), now=self.now)


trade = st.tuples(st.just("trade"), st.integers(0, 5), st.integers(0, 5), st.integers(0, 1), st.booleans(),
                  st.integers(10, 100))
move = st.tuples(st.just("move"), st.integers(0, 1), st.sampled_from([-1, 1]), st.integers(0, 150_000))
rest = st.tuples(st.just("rest"), st.integers(0, 5), st.integers(0, 1), st.booleans(), st.integers(-30_000, 30_000),
                 st.integers(1, 400))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(300, 5_000), min_size=6, max_size=6),
    st.lists(st.one_of(trade, trade, move, move, rest), min_size=10, max_size=80),
)
def test_index_finds_exactly_the_accounts_a_full_scan_finds(deposits: list[int], ops: list[Any]) -> None:
    """Random leverage in one or both markets, random oracle moves: after each move, the
    accounts the index reports are exactly those below maintenance. Found accounts are then
    topped up (not liquidated), so every move starts from no account below maintenance."""
    d = Driver(6)
    engine, risk = d.engine, d.engine.risk
    for addr, amount in zip(d.addrs, deposits, strict=True):
        engine.deposit(addr, amount * USDC)
    for o in ops:
        if o[0] == "trade":  # as much as margin allows, at the oracle price
            _, a, b, market, a_buys, percent = o
            if a == b:
                continue
            mkt = risk.markets[market]
            free = min(risk.value(risk.account(d.addrs[x])) for x in (a, b))
            lots = max(1, free * percent // 100 // (mkt.oracle * mkt.k * 7 // 100))
            d.order(a, market, a_buys, mkt.oracle, lots)
            d.order(b, market, not a_buys, mkt.oracle, lots, IOC)
            engine.cancel_all(d.addrs[a])
        elif o[0] == "rest":
            _, who, market, is_buy, offset, lots = o
            mkt = risk.markets[market]
            d.order(who, market, is_buy, mkt.oracle + mkt.oracle * offset // 1_000_000, lots)
        else:
            _, market, sign, ppm = o
            ppm *= sign
            mkt = risk.markets[market]
            d.now += 1
            mkt.set_oracle(mkt.oracle + mkt.oracle * ppm // 1_000_000, d.now)
            found = scan(risk, mkt)
            assert sorted(a.address for a in found) == sorted(a.address for a in brute_force(risk))
            for acct in found:  # top up to initial margin, so the next move starts clean
                engine.deposit(acct.address, risk.requirement(acct, False) - risk.value(acct) + 1)
            assert brute_force(risk) == []
        engine.take()


def test_index_matches_a_full_scan_under_stress() -> None:
    """Forty accounts levered up to ~15x in both markets, 300 oracle moves of up to 12%:
    the index reports exactly the accounts under maintenance after every move."""
    import random

    rng = random.Random(7)
    d = Driver(40)
    engine, risk = d.engine, d.engine.risk
    for addr in d.addrs:
        engine.deposit(addr, rng.randint(200, 5_000) * USDC)
    found_total = 0
    for _ in range(300):
        for _ in range(6):
            a, b = rng.sample(range(40), 2)
            market = rng.randint(0, 1)
            mkt = risk.markets[market]
            free = min(risk.value(risk.account(d.addrs[x])) for x in (a, b))
            lots = max(1, free * rng.randint(10, 100) // 100 // (mkt.oracle * mkt.k * 7 // 100))
            is_buy = rng.random() < 0.5
            if d.order(a, market, is_buy, mkt.oracle, lots) is None:
                d.order(b, market, not is_buy, mkt.oracle, lots, IOC)
                engine.cancel_all(d.addrs[a])
        market = rng.randint(0, 1)
        mkt = risk.markets[market]
        d.now += 1
        mkt.set_oracle(max(1_000, mkt.oracle + mkt.oracle * rng.randint(-120_000, 120_000) // 1_000_000), d.now)
        found = scan(risk, mkt)
        assert sorted(a.address for a in found) == sorted(a.address for a in brute_force(risk))
        found_total += len(found)
        for acct in found:
            engine.deposit(acct.address, risk.requirement(acct, False) - risk.value(acct) + 1)
        engine.take()
    assert found_total > 300, found_total


# --- liquidations and deficits through the spec ---------------------------------------------


def levered(m: Mirror, name: str, other: str, lots: int, price: int = P[0]) -> None:
    """`name` buys `lots` BTC from `other` at `price`."""
    m.place(other, 0, False, price, lots)
    assert m.place(name, 0, True, price, lots, tif=IOC)[0] is None


def world() -> Mirror:
    m = Mirror()
    m.now = T0 + 1
    m.oracle(0, P[0])
    m.oracle(1, P[1])
    for name in ("bob", "carol"):
        m.deposit(name, 1_000_000 * USDC)
    m.deposit("alice", 400 * USDC)
    return m


def test_an_oracle_move_liquidates_exactly_the_account_under_maintenance() -> None:
    m = world()
    levered(m, "alice", "bob", 1_000)  # 6,000 USDC of BTC on 400 USDC
    _, bid = m.place("alice", 1, True, P[1] - 100, 10)  # an open order: cancelled, silently
    m.now += 1
    m.applied.clear()
    m.oracle(0, P[0] - P[0] * 2 // 100)  # -2%: value 277, maintenance 176: safe
    assert not any(isinstance(tx, Liquidate) for tx in m.applied)
    m.now += 1
    m.oracle(0, P[0] - P[0] * 4 // 100)  # -4%: value 157, maintenance 173: liquidated
    liquidations = [tx for tx in m.applied if isinstance(tx, Liquidate)]
    assert liquidations == [Liquidate(m.addr("alice"), 0, 1_000, P[0] - P[0] * 4 // 100)]  # type: ignore[arg-type]
    assert m.engine.order(m.addr("alice"), bid) is None
    assert m.engine.risk.fund.positions[0].lots == 1_000
    assert brute_force(m.engine.risk) == []
    m.check()


def test_a_gap_beyond_the_fund_is_socialised_through_the_loss_index() -> None:
    m = world()
    levered(m, "alice", "bob", 1_000)
    m.place("carol", 0, True, P[0] - 1_000, 500)  # carol: a resting bid, then a long
    m.place("bob", 0, False, P[0] - 1_000, 500, tif=IOC)
    m.now += 1
    m.applied.clear()
    m.oracle(0, P[0] - P[0] * 10 // 100)  # -10% in one update: alice is underwater
    assert any(isinstance(tx, Liquidate) for tx in m.applied)
    market = m.engine.market_record(0)
    assert market.loss_index > 0  # the fund had nothing: other lots carry the loss
    assert m.engine.risk.account(m.addr("alice")).collateral == 0
    m.check()


def test_liquidations_in_several_markets_stop_once_healthy() -> None:
    m = world()
    levered(m, "alice", "bob", 1_000)  # 6,000 USDC of BTC
    m.place("bob", 1, False, P[1], 50)
    assert m.place("alice", 1, True, P[1], 50, tif=IOC)[0] is None  # and 150 USDC of ETH
    m.now += 1
    m.oracle(1, P[1])
    m.applied.clear()
    m.oracle(0, P[0] - P[0] * 4 // 100)
    # BTC goes first; after it (and its penalty) the account covers ETH's maintenance again
    liquidated = [(tx.market, tx.lots) for tx in m.applied if isinstance(tx, Liquidate)]
    assert liquidated == [(0, 1_000)]
    assert m.engine.risk.account(m.addr("alice")).positions[1].lots == 50
    assert brute_force(m.engine.risk) == []
    m.check()


def test_funding_ticks_at_the_interval_and_settles_like_the_spec() -> None:
    m = world()
    levered(m, "alice", "bob", 100, P[0] + 3_000)  # trades above the oracle: longs pay
    assert m.funding(0) == Reject.FUNDING_TOO_EARLY
    m.now = T0 + 60  # the dev interval
    m.oracle(0, P[0])
    assert m.funding(0) is None
    assert isinstance(m.applied[-1], FundingTick)
    assert m.engine.market_record(0).funding_index > 0
    m.place("carol", 0, False, P[0], 50)
    m.place("alice", 0, True, P[0], 50, tif=IOC)  # settles alice's funding
    m.check()
    m.now += 61
    m.oracle(0, P[0])
    m.oracle(1, P[1])
    m.engine.tick(m.now)  # both markets are due
    m.sync()
    assert sum(isinstance(tx, FundingTick) for tx in m.applied) == 3
    m.check()


def test_the_fund_unwinds_its_inherited_position_with_ordinary_trades() -> None:
    m = world()
    levered(m, "alice", "bob", 1_000)
    m.now += 1
    low = P[0] - P[0] * 4 // 100
    m.oracle(0, low)
    risk = m.engine.risk
    assert risk.fund.positions[0].lots == 1_000
    _, bid = m.place("carol", 0, True, low - 100, 600)
    filled = m.engine.unwind_fund(m.now)
    fills = [e for e in m.engine.take() if isinstance(e, Fill)]
    assert filled == 600 and [(f.maker, f.lots, f.price) for f in fills] == [(bid, 600, low - 100)]
    assert fills[0].taker in m.engine.fund_orders  # an engine order: the batcher cannot post it yet
    assert risk.fund.positions[0].lots == 400
    assert risk.account(INSURANCE_FUND).orders == {}  # it never rests


def test_emitted_liquidations_apply_in_a_long_random_run() -> None:
    """A deterministic long run with many liquidations, every one applied by the spec."""
    m = world()
    for name in ("dave", "erin"):
        m.deposit(name, 300 * USDC)
    count = 0
    for step in range(30):
        for name, other in (("alice", "bob"), ("dave", "carol"), ("erin", "bob")):
            acct = m.engine.risk.account(m.addr(name))
            if not any(p.lots for p in acct.positions.values()):
                m.deposit(name, 300 * USDC)
                mkt = m.engine.risk.markets[0]
                levered(m, name, other, 600, mkt.oracle)
        m.now += 1
        price = m.engine.risk.markets[0].oracle
        m.oracle(0, price + price * (-30 if step % 3 else 25) // 1_000)
        m.oracle(1, P[1] + step)
        count += sum(isinstance(tx, Liquidate) for tx in m.applied)
        m.applied.clear()
        assert brute_force(m.engine.risk) == []
        m.check()
    assert count >= 3


def test_resync_after_outside_writes_redraws_every_box() -> None:
    """A rollback writes records and prices directly: resync makes the boxes true again."""
    m = world()
    levered(m, "alice", "bob", 1_000)
    risk = m.engine.risk
    alice = risk.account(m.addr("alice"))
    assert alice.slack >= 0
    mkt = risk.markets[0]
    mkt.set_oracle(P[0] - P[0] * 4 // 100, m.now + 1)  # as a rollback would, without a scan
    assert alice.slack >= 0 and brute_force(risk) == [alice]  # the box no longer holds
    m.now += 1
    assert m.engine.resync(m.now) == 1
    assert brute_force(risk) == [] and risk.fund.positions[0].lots == 1_000
