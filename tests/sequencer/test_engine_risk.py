"""Pre-trade risk: the named reject reasons, the worst-case margin rule at its boundary, and
fills the spec would refuse being dropped instead of emitted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from engine_harness import T0, USDC, Mirror

from contracts_spec.params import BTC_USD, DEV, ETH_USD, make_genesis
from contracts_spec.types import TimeInForce, Trade
from sequencer.engine import Reject
from sequencer.scenario import ORACLE_NAMES, Keys

P = 600_000
IOC, FOK, POST = TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY
MAX_POS, MAX_OI = 1_000, 1_500


def tight_mirror() -> Mirror:
    """BTC with a 1,000-lot position limit and 1,500 lots of open interest; ETH as in the preset."""
    keys = Keys("engine-")
    genesis = make_genesis(
        DEV, tuple(keys.addr(n) for n in ORACLE_NAMES), 2, keys.addr("sequencer"), genesis_time=T0,
        markets=(replace(BTC_USD, max_position_lots=MAX_POS, max_open_interest_lots=MAX_OI), ETH_USD),
    )
    m = Mirror(keys=keys, genesis=genesis)
    m.now = T0 + 1
    m.oracle(0, P)
    m.oracle(1, 300_000)
    for name in ("alice", "bob", "carol"):
        m.deposit(name, 100_000 * USDC)
    m.deposit("poor", 10 * USDC)
    return m


def plain_mirror() -> Mirror:
    """The dev markets, as the preset has them."""
    m = Mirror()
    m.now = T0 + 1
    m.oracle(0, P)
    m.oracle(1, 300_000)
    for name in ("alice", "bob", "carol"):
        m.deposit(name, 100_000 * USDC)
    return m


def nothing(m: Mirror) -> None:
    pass


def rest_an_order(m: Mirror) -> None:
    signed, oid = m.sign("alice", 0, True, P - 1, 1, nonce=0)
    m.engine.place(signed, oid, now=m.now)
    m.sync()


def age_the_oracle(m: Mirror) -> None:
    m.now += 61  # the dev staleness is 60 s


def raise_the_floor(m: Mirror) -> None:
    m.cancel_all("alice", nonce_floor=5)


def open_orders_near_the_position_limit(m: Mirror) -> None:
    assert m.place("alice", 0, True, P - 10, 600)[0] is None
    assert m.place("alice", 0, False, P + 10, 900)[0] is None  # max(|P+B|, |P-S|) is 900


def open_interest_near_its_limit(m: Mirror) -> None:
    m.deposit("dave", 100_000 * USDC)
    m.place("bob", 0, False, P, 900)
    m.place("alice", 0, True, P, 900, tif=IOC)
    m.place("dave", 0, False, P, 500)
    m.place("carol", 0, True, P, 500, tif=IOC)
    assert m.engine.market_record(0).open_interest == 1_400


def an_ask(m: Mirror) -> None:
    m.place("bob", 0, False, P, 1)


def a_client_id(m: Mirror) -> None:
    m.place("alice", 0, True, P - 1, 1, client_id=3)


REJECTS: list[tuple[str, Callable[[Mirror], Any], Callable[[Mirror], Any], Reject]] = [
    ("unknown market", nothing, lambda m: m.place("alice", 7, True, P, 1)[0], Reject.UNKNOWN_MARKET),
    ("duplicate order id", rest_an_order, lambda m: m.place("alice", 0, True, P - 1, 1, nonce=0)[0],
     Reject.DUPLICATE_ORDER),
    ("zero lots", nothing, lambda m: m.place("alice", 0, True, P, 0)[0], Reject.INVALID_ORDER),
    ("expired", nothing, lambda m: m.place("alice", 0, True, P, 1, expiry=m.now - 1)[0], Reject.EXPIRED),
    ("nonce below the floor", raise_the_floor, lambda m: m.place("alice", 0, True, P, 1, nonce=4)[0],
     Reject.CANCELLED),
    ("stale oracle", age_the_oracle, lambda m: m.place("alice", 0, True, P, 1)[0], Reject.STALE_ORACLE),
    ("buy above the band", nothing, lambda m: m.place("alice", 0, True, P + P // 10 + 1, 1)[0], Reject.PRICE_BAND),
    ("sell below the band", nothing, lambda m: m.place("alice", 0, False, P - P // 10 - 1, 1)[0],
     Reject.PRICE_BAND),
    ("post-only would cross", an_ask, lambda m: m.place("alice", 0, True, P, 1, tif=POST)[0],
     Reject.POST_ONLY_WOULD_CROSS),
    ("reduce-only without a position", nothing, lambda m: m.place("alice", 0, False, P, 1, reduce_only=True)[0],
     Reject.REDUCE_ONLY),
    ("position limit", nothing, lambda m: m.place("alice", 0, True, P, MAX_POS + 1)[0], Reject.POSITION_LIMIT),
    ("position limit counting open orders", open_orders_near_the_position_limit,
     lambda m: m.place("alice", 0, True, P - 10, 401)[0], Reject.POSITION_LIMIT),
    ("open-interest limit", open_interest_near_its_limit, lambda m: m.place("carol", 0, True, P - 100, 101)[0],
     Reject.OPEN_INTEREST_LIMIT),
    ("insufficient margin", nothing, lambda m: m.place("poor", 0, True, P, 100)[0], Reject.INSUFFICIENT_MARGIN),
    ("fill-or-kill short of liquidity", an_ask, lambda m: m.place("alice", 0, True, P, 2, tif=FOK)[0],
     Reject.FOK_UNFILLABLE),
    ("duplicate client id", a_client_id, lambda m: m.place("alice", 0, True, P - 2, 1, client_id=3)[0],
     Reject.DUPLICATE_CLIENT_ID),
    ("cancel of no resting order", nothing, lambda m: m.cancel("alice", bytes(32)), Reject.UNKNOWN_ORDER),
]


@pytest.mark.parametrize(("case", "setup", "attempt", "reason"), REJECTS, ids=[r[0] for r in REJECTS])
def test_reject_reasons(case: str, setup: Callable[[Mirror], Any], attempt: Callable[[Mirror], Any],
                        reason: Reject) -> None:
    m = tight_mirror()
    setup(m)
    applied = len(m.applied)
    books = {mid: book.depth() for mid, book in m.engine.books.items()}
    assert attempt(m) == reason
    assert len(m.applied) == applied  # a refused request emits nothing
    assert {mid: book.depth() for mid, book in m.engine.books.items()} == books  # and changes no book
    m.check()


FEE_CAP = 4_125  # per lot at 600,000: ceil((750,000 + 75,000) x 10 x 500 / 1e6)
IM_PER_LOT = P * 10 * 50_000 // 1_000_000  # 300,000


def test_initial_margin_on_the_worst_case_at_its_boundary() -> None:
    """E = collateral - IM(max(|P + B|, |P - S|)) - (B + S) x fee cap - worst prints, exactly."""
    m = tight_mirror()
    m.deposit("dave", 100 * (IM_PER_LOT + FEE_CAP))
    assert m.place("dave", 0, True, P, 100)[0] is None  # E = 0: accepted
    assert m.place("dave", 0, True, P, 1)[0] == Reject.INSUFFICIENT_MARGIN
    # a sell does not raise the worst case: refused by the strict rule, accepted as solvent
    assert m.place("dave", 0, False, P + 1, 100)[0] is None
    # a buy priced over the oracle also owes its worst print
    m.deposit("erin", 10 * (IM_PER_LOT + FEE_CAP) + 10 * 10 * 10 - 1)
    assert m.place("erin", 0, True, P + 10, 10)[0] == Reject.INSUFFICIENT_MARGIN
    m.deposit("erin", 1)
    assert m.place("erin", 0, True, P + 10, 10)[0] is None
    m.check()


def test_a_maker_whose_fill_the_spec_would_refuse_is_dropped() -> None:
    m = plain_mirror()
    m.deposit("dave", 400 * USDC)
    m.place("bob", 0, False, P, 1_000)
    assert m.place("dave", 0, True, P, 1_000, tif=IOC)[0] is None  # dave is long 1,000
    assert m.place("dave", 0, True, P - 1_000, 300)[0] is None  # and bids for 300 more
    m.now += 1
    m.oracle(0, P - P // 50)  # -2%: under initial margin, above maintenance
    risk = m.engine.risk
    dave = risk.account(m.addr("dave"))
    assert risk.value(dave) < risk.requirement(dave, False) and not risk.is_liquidatable(dave)
    m.applied.clear()
    _, t = m.place("carol", 0, False, P - 1_000, 300)
    assert not any(isinstance(tx, Trade) for tx in m.applied)  # the spec would refuse dave's fill
    assert dave.orders == {} and m.engine.order(m.addr("carol"), t).remaining == 300
    m.check()


def test_an_unproven_taker_stops_where_its_margin_ends() -> None:
    m = plain_mirror()
    m.deposit("dave", 400 * USDC)
    m.place("bob", 0, False, P, 1_000)
    m.place("dave", 0, True, P, 1_000, tif=IOC)  # dave is long 1,000
    m.now += 1
    low = P - P * 35 // 1_000  # -3.5%: under initial margin, above maintenance
    m.oracle(0, low)
    risk = m.engine.risk
    dave = risk.account(m.addr("dave"))
    assert dave.slack < 0 and not risk.is_liquidatable(dave)
    _, b = m.place("bob", 0, True, low, 1_000)
    _, c = m.place("carol", 0, True, low - 10, 900)
    m.applied.clear()
    # selling 1,900 does not raise dave's worst case (1,000 long), so it is admitted as solvent;
    # the first 1,000 close the long, the next fill would open 900 short without the margin for it
    result, t = m.place("dave", 0, False, low - 10, 1_900, tif=IOC)
    assert result is None
    assert [(tx.lots, tx.price) for tx in m.applied if isinstance(tx, Trade)] == [(1_000, low)]
    assert dave.positions[0].lots == 0 and m.engine.order(m.addr("carol"), c).remaining == 900
    m.check()
