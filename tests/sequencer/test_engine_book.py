"""Order kinds, priority, cancel/replace and self-trade prevention.

Every scenario runs through the spec mirror: whatever the engine emits is applied with the
STF (a refused transaction fails the test) and the states are compared after each step.
"""

from __future__ import annotations

import pytest
from engine_harness import T0, USDC, Mirror

from contracts_spec.types import Cancel, CancelAll, TimeInForce, Trade
from sequencer.engine import Reject, Stp

P = 600_000  # BTC oracle price, ticks
GTC, IOC, FOK, POST = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY


@pytest.fixture
def m() -> Mirror:
    mirror = Mirror()
    mirror.now = T0 + 1
    mirror.oracle(0, P)
    mirror.oracle(1, 300_000)
    for name in ("alice", "bob", "carol", "dave"):
        mirror.deposit(name, 100_000 * USDC)
    mirror.applied.clear()
    return mirror


def trades(m: Mirror) -> list[tuple[bytes, bytes, int, int]]:
    """The applied trades as (maker id, taker id, lots, price)."""
    ids = {i: oid for oid, i in m.index.items()}
    return [(ids[t.maker], ids[t.taker], t.lots, t.price) for t in m.applied if isinstance(t, Trade)]


def resting(m: Mirror, name: str) -> dict[bytes, int]:
    return {oid: o.remaining for oid, o in m.engine.risk.account(m.addr(name)).orders.items()}


def test_price_then_time_priority(m: Mirror) -> None:
    _, a = m.place("alice", 0, True, P, 100)
    _, b = m.place("bob", 0, True, P, 100)
    _, c = m.place("carol", 0, True, P + 10, 100)
    _, t = m.place("dave", 0, False, P - 100, 250)
    assert trades(m) == [(c, t, 100, P + 10), (a, t, 100, P), (b, t, 50, P)]
    assert resting(m, "bob") == {b: 50}
    m.check()


def test_gtc_rests_its_remainder_at_its_limit(m: Mirror) -> None:
    _, a = m.place("alice", 0, False, P, 100)
    _, t = m.place("bob", 0, True, P + 5, 150)
    assert trades(m) == [(a, t, 100, P)]
    assert resting(m, "bob") == {t: 50}
    assert m.engine.books[0].best_bid() == P + 5
    m.check()


def test_ioc_remainder_is_dropped_silently(m: Mirror) -> None:
    _, a = m.place("alice", 0, False, P, 100)
    _, t = m.place("bob", 0, True, P + 5, 150, tif=IOC)
    assert trades(m) == [(a, t, 100, P)]
    assert resting(m, "bob") == {}
    assert m.applied == [m.applied[0]]  # the fill, and nothing for the dropped 50 lots
    m.check()


def test_fill_or_kill(m: Mirror) -> None:
    m.place("alice", 0, False, P, 100)
    m.place("bob", 0, False, P + 10, 100)
    assert m.place("carol", 0, True, P + 10, 201, tif=FOK)[0] == Reject.FOK_UNFILLABLE
    assert m.place("carol", 0, True, P + 5, 150, tif=FOK)[0] == Reject.FOK_UNFILLABLE  # the rest is above
    assert trades(m) == []
    result, t = m.place("carol", 0, True, P + 10, 200, tif=FOK)
    assert result is None and sum(lots for *_, lots, _ in trades(m)) == 200
    m.check()


def test_fill_or_kill_counts_what_self_trade_prevention_skips(m: Mirror) -> None:
    m.place("carol", 0, False, P, 100)  # carol's own ask comes first
    m.place("alice", 0, False, P + 1, 100)
    assert m.place("carol", 0, True, P + 1, 150, stp=Stp.EXPIRE_MAKER, tif=FOK)[0] == Reject.FOK_UNFILLABLE
    assert m.place("carol", 0, True, P + 1, 100, stp=Stp.EXPIRE_TAKER, tif=FOK)[0] == Reject.FOK_UNFILLABLE
    assert m.place("carol", 0, True, P + 1, 100, stp=Stp.EXPIRE_MAKER, tif=FOK)[0] is None
    assert resting(m, "carol") == {}  # its ask was expired on the way
    m.check()


def test_post_only_never_takes(m: Mirror) -> None:
    m.place("alice", 0, False, P, 100)
    assert m.place("bob", 0, True, P, 10, tif=POST)[0] == Reject.POST_ONLY_WOULD_CROSS
    result, b = m.place("bob", 0, True, P - 1, 10, tif=POST)
    assert result is None and resting(m, "bob") == {b: 10}
    _, t = m.place("carol", 0, False, P - 1, 10, tif=IOC)
    assert trades(m) == [(b, t, 10, P - 1)]
    m.check()


def test_market_order_is_bounded_by_the_band_and_never_rests(m: Mirror) -> None:
    band = P // 10  # 10%
    _, a = m.place("alice", 0, False, P + band // 2, 100)
    _, b = m.place("bob", 0, False, P + band, 100)
    # a plain limit this far out is refused; as a market order it is clamped to the band
    assert m.place("carol", 0, True, 2 * P, 300)[0] == Reject.PRICE_BAND
    result, t = m.place("carol", 0, True, 2 * P, 300, market_order=True, tif=IOC)
    assert result is None
    assert trades(m) == [(a, t, 100, P + band // 2), (b, t, 100, P + band)]
    assert resting(m, "carol") == {}
    assert m.place("carol", 0, True, P, 1, market_order=True, tif=POST)[0] == Reject.INVALID_ORDER
    m.check()


def test_good_til_time(m: Mirror) -> None:
    assert m.place("alice", 0, False, P, 100, expiry=m.now - 1)[0] == Reject.EXPIRED
    _, a = m.place("alice", 0, False, P, 100, expiry=m.now + 5)
    m.now += 5
    m.oracle(0, P)
    _, t = m.place("bob", 0, True, P, 10, tif=IOC)  # now == expiry: still alive
    assert trades(m) == [(a, t, 10, P)]
    m.now += 1
    m.oracle(0, P)
    assert m.place("bob", 0, True, P, 10, tif=IOC)[0] is None
    assert len(trades(m)) == 1 and resting(m, "alice") == {}
    assert m.engine.risk.account(m.addr("alice")).positions[0].open_sell == 0
    m.check()


def test_reduce_only(m: Mirror) -> None:
    assert m.place("alice", 0, False, P, 10, reduce_only=True)[0] == Reject.REDUCE_ONLY
    m.place("bob", 0, False, P, 100)
    m.place("alice", 0, True, P, 100, tif=IOC)  # alice is long 100
    assert m.place("alice", 0, True, P, 10, reduce_only=True)[0] == Reject.REDUCE_ONLY
    m.place("carol", 0, True, P, 300)
    _, t = m.place("alice", 0, False, P, 250, reduce_only=True, tif=IOC)
    assert trades(m)[-1][1:] == (t, 100, P)  # capped at the position: no flip
    assert m.engine.risk.account(m.addr("alice")).positions[0].lots == 0
    m.check()


def test_resting_reduce_only_is_dropped_once_the_position_is_gone(m: Mirror) -> None:
    m.place("bob", 0, False, P, 100)
    m.place("alice", 0, True, P, 100, tif=IOC)
    _, ro = m.place("alice", 0, False, P + 50, 100, reduce_only=True)
    m.place("carol", 0, True, P, 100)
    m.place("alice", 0, False, P, 100, tif=IOC)  # alice closes elsewhere
    _, t = m.place("dave", 0, True, P + 50, 10, tif=IOC)
    assert all(maker != ro for maker, *_ in trades(m)) and resting(m, "alice") == {}
    m.check()


def test_client_order_ids(m: Mirror) -> None:
    _, a = m.place("alice", 0, True, P - 10, 5, client_id=7)
    assert m.place("alice", 0, True, P - 11, 5, client_id=7)[0] == Reject.DUPLICATE_CLIENT_ID
    assert m.engine.cancel_client(m.addr("alice"), 8) == Reject.UNKNOWN_ORDER
    assert m.engine.cancel_client(m.addr("alice"), 7) is None
    assert resting(m, "alice") == {}
    assert m.place("alice", 0, True, P - 11, 5, client_id=7)[0] is None
    m.sync()
    m.check()


def test_cancel_one(m: Mirror) -> None:
    _, a = m.place("alice", 0, True, P - 10, 5)
    assert m.cancel("alice", a) is None
    assert isinstance(m.applied[-1], Cancel) and m.applied[-1].order_id == a
    assert m.cancel("alice", a) == Reject.UNKNOWN_ORDER
    assert m.engine.cancel(m.addr("bob"), a) == Reject.UNKNOWN_ORDER
    assert m.place("bob", 0, False, P - 10, 5, tif=IOC)[0] is None and trades(m) == []
    m.check()


def test_cancel_all_per_market_and_signed(m: Mirror) -> None:
    _, a = m.place("alice", 0, True, P - 10, 5)
    _, b = m.place("alice", 1, True, 290_000, 5)
    _, c = m.place("alice", 0, True, P - 20, 5)
    assert m.cancel_all("alice", market=1) == 1
    assert set(resting(m, "alice")) == {a, c}
    assert m.applied == []  # an unsigned cancel-all is engine-only
    floor = m.nonces[m.addr("alice")]
    assert m.cancel_all("alice", nonce_floor=floor) == 2
    assert isinstance(m.applied[-1], CancelAll)
    assert m.cancel_all("alice", nonce_floor=floor) == Reject.BAD_NONCE
    assert m.place("alice", 0, True, P - 10, 5, nonce=floor - 1)[0] == Reject.CANCELLED
    assert m.place("alice", 0, True, P - 10, 5, nonce=floor)[0] is None
    m.check()


def test_replace_keeps_priority_only_when_shrinking_at_the_same_price(m: Mirror) -> None:
    _, a = m.place("alice", 0, True, P, 100)
    _, b = m.place("bob", 0, True, P, 100)
    result, a2 = m.replace("alice", a, 0, True, P, 60)
    assert result is None and resting(m, "alice") == {a2: 60}
    _, t = m.place("carol", 0, False, P, 50, tif=IOC)
    assert trades(m) == [(a2, t, 50, P)]  # still first in the queue
    # growing loses the place
    _, a3 = m.replace("alice", a2, 0, True, P, 30)
    _, a4 = m.replace("alice", a3, 0, True, P, 40)
    _, t2 = m.place("carol", 0, False, P, 10, tif=IOC)
    assert trades(m)[-1] == (b, t2, 10, P)
    # so does a new price, even a better one
    _, b2 = m.replace("bob", b, 0, True, P + 1, 90)
    _, t3 = m.place("dave", 0, False, P, 100, tif=IOC)
    assert [x[0] for x in trades(m)[-2:]] == [b2, a4]
    assert sum(isinstance(tx, Cancel) for tx in m.applied) == 4  # each replace emits its cancel
    assert m.replace("alice", a, 0, True, P, 1)[0] == Reject.UNKNOWN_ORDER
    m.check()


def test_self_trade_prevention_expire_maker(m: Mirror) -> None:
    _, own = m.place("alice", 0, False, P, 100)
    _, other = m.place("bob", 0, False, P + 1, 100)
    _, t = m.place("alice", 0, True, P + 1, 50, stp=Stp.EXPIRE_MAKER)
    assert trades(m) == [(other, t, 50, P + 1)]
    assert resting(m, "alice") == {}  # the maker was expired, silently
    m.check()


def test_self_trade_prevention_expire_taker(m: Mirror) -> None:
    _, other = m.place("bob", 0, False, P - 1, 10)
    _, own = m.place("alice", 0, False, P, 100)
    _, t = m.place("alice", 0, True, P + 1, 50, stp=Stp.EXPIRE_TAKER)
    assert trades(m) == [(other, t, 10, P - 1)]
    assert resting(m, "alice") == {own: 100}  # the taker stopped: nothing of it rests
    m.check()


def test_self_trade_prevention_expire_both(m: Mirror) -> None:
    _, own = m.place("alice", 0, False, P, 100)
    m.place("bob", 0, False, P + 1, 100)
    _, t = m.place("alice", 0, True, P + 1, 50, stp=Stp.EXPIRE_BOTH)
    assert trades(m) == [] and resting(m, "alice") == {}
    m.check()


def test_a_quote_the_oracle_left_behind_is_dropped_not_traded(m: Mirror) -> None:
    _, a = m.place("alice", 0, False, P + P // 20, 100)  # 5% over
    m.now += 1
    m.oracle(0, P - P // 10)  # the band now tops out below alice's ask
    _, b = m.place("bob", 0, False, P - P // 10, 100)
    _, t = m.place("carol", 0, True, P - P // 10 + 1_000, 100, tif=IOC)
    assert trades(m) == [(b, t, 100, P - P // 10)]
    m.place("dave", 0, True, P, 100, market_order=True, tif=IOC)
    assert resting(m, "alice") == {a: 100}  # out of reach, not touched
    m.check()


def test_a_bid_above_the_band_is_dropped_when_a_seller_reaches_it(m: Mirror) -> None:
    _, stale = m.place("alice", 0, True, P, 100)
    m.now += 1
    m.oracle(0, P - P * 15 // 100)  # the band now tops out below alice's bid
    _, fresh = m.place("bob", 0, True, P - P * 16 // 100, 100)
    _, t = m.place("carol", 0, False, P - P * 20 // 100, 150, tif=IOC)
    assert trades(m) == [(fresh, t, 100, P - P * 16 // 100)]  # the stale bid printed nothing
    assert resting(m, "alice") == {}
    m.check()
