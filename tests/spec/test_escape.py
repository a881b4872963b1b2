"""Escape-hatch rules: when a freeze is allowed, and the value an account proves and takes."""

from __future__ import annotations

import pytest

from contracts_spec import errors
from contracts_spec.escape import (
    EscapeRefused,
    FreezeRefused,
    Liveness,
    compute_escape_payment,
    compute_escape_value,
    is_freeze_allowed,
    verify_freeze,
)
from contracts_spec.margin import account_value
from contracts_spec.params import DEV
from contracts_spec.stf import holdings
from contracts_spec.types import INSURANCE_FUND
from contracts_spec.witness import prove_account
from tests.spec.conftest import BTC, USDC, World


@pytest.mark.parametrize(
    ("liveness", "allowed"),
    [
        (Liveness(now=1_000, last_batch_time=900, oldest_unserved_forced_time=None), False),
        (Liveness(now=1_000 + DEV.escape_delay + 1, last_batch_time=1_000, oldest_unserved_forced_time=None), True),
        (Liveness(now=1_000 + DEV.escape_delay, last_batch_time=1_000, oldest_unserved_forced_time=None), False),
        (Liveness(now=2_000, last_batch_time=1_999, oldest_unserved_forced_time=2_000 - DEV.forced_inclusion_delay - 1), True),
        (Liveness(now=2_000, last_batch_time=1_999, oldest_unserved_forced_time=2_000 - DEV.forced_inclusion_delay), False),
    ],
)
def test_freeze_conditions(liveness: Liveness, allowed: bool) -> None:
    assert is_freeze_allowed(liveness, DEV) is allowed
    if not allowed:
        with pytest.raises(FreezeRefused):
            verify_freeze(liveness, DEV)


def test_escape_value_equals_margin_value_with_positions(world: World) -> None:
    s, alice = world.state, world.keys.addr("alice")
    root = s.root()
    proof = prove_account(s, alice)
    account = s.account(alice)
    expected = account_value(account.collateral, holdings(s, alice, account))
    assert account.markets == (BTC,)
    assert compute_escape_value(root, proof, alice) == expected > 0


def test_escape_value_of_a_flat_account_is_its_collateral(world: World) -> None:
    s, carol = world.state, world.keys.addr("carol")
    assert compute_escape_value(s.root(), prove_account(s, carol), carol) == 2_000 * USDC


def test_escape_proof_missing_a_position_is_incomplete(world: World) -> None:
    s, alice = world.state, world.keys.addr("alice")
    carol_proof = prove_account(s, world.keys.addr("carol"))  # covers carol's leaves only
    with pytest.raises(errors.WitnessError):
        compute_escape_value(s.root(), carol_proof, alice)


def test_escape_proof_against_another_root_is_refused(world: World) -> None:
    s, alice = world.state, world.keys.addr("alice")
    proof = prove_account(s, alice)
    with pytest.raises(errors.BadProof):
        compute_escape_value(bytes(32), proof, alice)


def test_system_accounts_cannot_escape(world: World) -> None:
    s = world.state
    with pytest.raises(EscapeRefused):
        compute_escape_value(s.root(), prove_account(s, INSURANCE_FUND), INSURANCE_FUND)


def test_payment_is_capped_by_the_bridge() -> None:
    assert compute_escape_payment(500, 1_000) == 500
    assert compute_escape_payment(5_000, 1_000) == 1_000
    assert compute_escape_payment(-5, 1_000) == 0
