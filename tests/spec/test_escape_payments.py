"""The escape hatch's payments as an invariant: whatever the accounts' values (bankrupt ones
included) and in whatever order they claim, the bridge pays out at most what it holds less the
deposits it must refund, each claim at most its value, and in full while the bridge can."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from contracts_spec.escape import (
    compute_escape_available,
    compute_escape_payment,
    is_deposit_refundable,
    is_final_after_freeze,
)

values = st.lists(st.integers(-10**12, 10**12), max_size=40)
balances = st.integers(0, 10**13)


@given(values, balances, st.integers(0, 10**12))
def test_claims_never_exceed_the_bridge(claims: list[int], bridge: int, reserved: int) -> None:
    reserved = min(reserved, bridge)  # the reserved deposits are in the bridge
    paid_total = 0
    for value in claims:
        available = compute_escape_available(bridge - paid_total, reserved)
        paid = compute_escape_payment(max(0, value), available)
        assert 0 <= paid <= max(0, value)
        assert paid == min(max(0, value), available)  # in full while the bridge can
        paid_total += paid
    assert paid_total <= bridge - reserved
    assert paid_total == min(sum(max(0, v) for v in claims), bridge - reserved)


def test_refunds_and_finality_after_a_freeze() -> None:
    assert is_deposit_refundable(5, 5) and not is_deposit_refundable(4, 5)
    assert is_final_after_freeze(True, 3, 3) and not is_final_after_freeze(True, 4, 3)
    assert not is_final_after_freeze(False, 2, 3)
