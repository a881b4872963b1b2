"""The engine against the spec: long random workloads, every emitted transaction applied with
contracts_spec's STF, the engine's incremental state equal to the spec's after every step,
oracle moves large enough to liquidate, and the same inputs giving byte-identical outputs.
"""

from __future__ import annotations

from typing import Any

from engine_harness import T0, USDC, Mirror
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts_spec.codec import encode_tx
from contracts_spec.types import TimeInForce
from sequencer.engine import Stp
from sequencer.engine.liquidation import brute_force

NAMES = ("alice", "bob", "carol", "dave")
BASE = {0: 600_000, 1: 300_000}  # 60,000.0 and 3,000.00

KINDS = (["place"] * 12 + ["cancel"] * 3 + ["replace"] * 2 + ["oracle"] * 3 + ["lever"] * 2
         + ["cancel_all", "deposit", "time", "funding", "liquidations"])


@st.composite
def op(draw: Any) -> tuple[Any, ...]:
    """One engine input; places dominate, priced mostly near the oracle so books cross."""
    kind = draw(st.sampled_from(KINDS))
    name = draw(st.sampled_from(NAMES))
    if kind == "place":
        offset = draw(st.one_of(st.integers(-20_000, 20_000), st.integers(-120_000, 120_000)))
        return (
            "place", name, draw(st.integers(0, 1)), draw(st.booleans()), offset,
            draw(st.one_of(st.integers(1, 300), st.integers(300, 3_000))),
            draw(st.sampled_from([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY])),
            draw(st.sampled_from([False] * 6 + [True])),  # reduce-only
            draw(st.sampled_from([False] * 6 + [True])),  # market order
            draw(st.sampled_from(list(Stp))),
            draw(st.sampled_from([0, 0, 0, 5, 30])),  # expiry: none, or seconds ahead
        )
    if kind == "lever":  # two accounts trade near the most their margin allows
        other = draw(st.sampled_from([n for n in NAMES if n != name]))
        return ("lever", name, other, draw(st.integers(0, 1)), draw(st.booleans()), draw(st.integers(30, 100)))
    if kind == "cancel":
        return ("cancel", name, draw(st.integers(0, 50)))
    if kind == "cancel_all":
        return ("cancel_all", name, draw(st.sampled_from([None, 0, 1, "signed"])))
    if kind == "replace":
        return ("replace", name, draw(st.integers(0, 50)), draw(st.integers(-3_000, 3_000)),
                draw(st.integers(1, 4_000)))
    if kind == "deposit":
        return ("deposit", name, draw(st.integers(1, 5_000)))
    if kind == "oracle":
        move = draw(st.one_of(st.integers(-20_000, 20_000), st.integers(-200_000, 200_000)))
        return ("oracle", draw(st.integers(0, 1)), move)
    if kind == "time":
        return ("time", draw(st.integers(1, 40)))
    if kind == "funding":
        return ("funding", draw(st.integers(0, 1)))
    return ("liquidations",)


def setup() -> Mirror:
    m = Mirror()
    m.now = T0 + 1
    for market, price in BASE.items():
        m.oracle(market, price)
    for i, name in enumerate(NAMES):
        m.deposit(name, (1_000 + 1_500 * i) * USDC)
    m.check()
    return m


def refresh(m: Mirror) -> None:
    """Keep both oracle prices fresh (the dev staleness is 60 s)."""
    for market in (0, 1):
        mkt = m.engine.risk.markets[market]
        if mkt.oracle_time < m.now:
            m.oracle(market, mkt.oracle)


def run(m: Mirror, ops: list[tuple[Any, ...]]) -> None:
    for o in ops:
        kind = o[0]
        if kind == "place":
            _, name, market, is_buy, offset, lots, tif, reduce_only, market_order, stp, ahead = o
            oracle = m.engine.risk.markets[market].oracle
            price = max(1, oracle + oracle * offset // 1_000_000)
            expiry = m.now + ahead if ahead else 0
            m.place(name, market, is_buy, price, lots, stp, market_order, tif=tif, reduce_only=reduce_only,
                    expiry=expiry)
        elif kind == "lever":
            _, maker, taker, market, maker_buys, percent = o
            risk = m.engine.risk
            mkt = risk.markets[market]
            free = min(risk.value(risk.account(m.addr(n))) for n in (maker, taker))
            lots = max(1, free * percent // 100 // (mkt.oracle * mkt.k * 6 // 100))
            m.place(maker, market, maker_buys, mkt.oracle, lots)
            m.place(taker, market, not maker_buys, mkt.oracle, lots, tif=TimeInForce.IOC)
        elif kind == "cancel":
            _, name, k = o
            orders = list(m.engine.risk.account(m.addr(name)).orders)
            if orders:
                m.cancel(name, orders[k % len(orders)])
        elif kind == "cancel_all":
            _, name, which = o
            if which == "signed":
                m.cancel_all(name, nonce_floor=m.nonces.get(m.addr(name), 0))
            else:
                m.cancel_all(name, market=which)
        elif kind == "replace":
            _, name, k, tick, lots = o
            orders = list(m.engine.risk.account(m.addr(name)).orders.values())
            if orders:
                old = orders[k % len(orders)]
                market = old.pos.mkt.id
                m.replace(name, old.id, market, old.is_buy, max(1, old.price + tick * (k % 2)), lots)
        elif kind == "deposit":
            m.deposit(o[1], o[2] * USDC)
        elif kind == "oracle":
            _, market, move = o
            mkt = m.engine.risk.markets[market]
            m.now += 1
            m.oracle(market, max(1, mkt.oracle + mkt.oracle * move // 1_000_000))
            refresh(m)
            # every account below maintenance was found and liquidated
            assert brute_force(m.engine.risk) == []
        elif kind == "time":
            m.now += o[1]
            m.engine.expire(m.now)
            refresh(m)
        elif kind == "funding":
            m.funding(o[1])
        elif kind == "liquidations":
            m.liquidations()
            assert brute_force(m.engine.risk) == []
        m.check()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op(), min_size=20, max_size=150))
def test_everything_emitted_applies_and_states_agree(ops: list[tuple[Any, ...]]) -> None:
    m = setup()
    run(m, ops)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op(), min_size=20, max_size=80))
def test_same_inputs_same_bytes(ops: list[tuple[Any, ...]]) -> None:
    first, second = setup(), setup()
    run(first, ops)
    run(second, ops)
    assert [encode_tx(tx) for tx in first.applied] == [encode_tx(tx) for tx in second.applied]
    assert first.state.root() == second.state.root()


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(st.lists(op(), min_size=300, max_size=600))
def test_long_workloads(ops: list[tuple[Any, ...]]) -> None:
    m = setup()
    run(m, ops)
