"""The escape hatch: when the rollup may be frozen, and what each user may take out after.

After a freeze no batch is accepted and no game opens; the escape root is the last batch that
was final at the freeze (the genesis root if none was), and no later batch becomes final. Each
user proves their account (and every position and market of its open-market set) against it,
once, and is paid its value at that root's oracle prices, with funding and losses settled.
Deposits that root had not consumed go back to their accounts; withdrawals in its tree stay
payable. The base layer runs these rules; the bridge never pays out more than it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts_spec.errors import InvalidTransaction
from contracts_spec.margin import account_value
from contracts_spec.state import State
from contracts_spec.types import SYSTEM_ACCOUNTS, Address, Atoms, Preset, Root


class FreezeRefused(InvalidTransaction):
    """Neither escape condition holds: the rollup is live."""


class EscapeRefused(InvalidTransaction):
    """An escape claim the rules refuse (not frozen, system account, nothing to take)."""


@dataclass(frozen=True, slots=True)
class Liveness:
    """What the base layer knows about the rollup's liveness at `now`."""

    now: int
    last_batch_time: int  # base-layer time of the last accepted batch (deployment time if none)
    # base-layer time of the forced request at the valid head's forced_consumed (None: none
    # queued): a request consumed only by a batch that was later lost is unserved again
    oldest_unserved_forced_time: int | None


def is_freeze_allowed(liveness: Liveness, preset: Preset) -> bool:
    """A forced request unserved past the inclusion delay, or no batch for the escape delay."""
    forced = liveness.oldest_unserved_forced_time
    if forced is not None and liveness.now > forced + preset.forced_inclusion_delay:
        return True
    return liveness.now > liveness.last_batch_time + preset.escape_delay


def verify_freeze(liveness: Liveness, preset: Preset) -> None:
    # Verify one of the escape conditions holds
    if not is_freeze_allowed(liveness, preset):
        raise FreezeRefused("the rollup is live: no forced request is overdue and a batch is recent")


def compute_escape_value(final_root: Root, proof: bytes, account: Address) -> Atoms:
    """The account's value at the last final root, from a proof of its leaves; never negative.

    value = collateral + sum over the open-market set of (lots x oracle x K - unsettled owed),
    the same formula as margin (contracts_spec/README.md), floored at zero: a bankrupt account
    takes nothing. Raises BadProof / WitnessIncomplete when the proof does not cover every
    position and market the account holds.
    """
    # Verify the account is a user account
    if account in SYSTEM_ACCOUNTS:
        raise EscapeRefused("system accounts cannot escape")
    state = State.from_witness(final_root, proof)
    record = state.account(account)
    held = [(state.position(account, m), state.market(m)) for m in record.markets]
    return Atoms(max(0, account_value(record.collateral, held)))


def compute_escape_payment(value: int, bridge_balance: int) -> int:
    """What the bridge pays: the value, capped by what the bridge still holds."""
    return max(0, min(value, bridge_balance))


def compute_escape_available(bridge_balance: int, unrefunded_deposits: int) -> int:
    """What escape claims may draw on: the bridge less the deposits the escape root never consumed.

    Those deposits are owed to their depositors whatever the claims: they are reserved first.
    """
    return max(0, bridge_balance - unrefunded_deposits)


def verify_escape_payment(payment: int) -> None:
    # Verify the claim takes something: a bankrupt account (or an empty bridge) has nothing to take
    if payment <= 0:
        raise EscapeRefused("nothing to take: the account's value at the escape root is zero")


def is_deposit_refundable(index: int, escape_deposits_consumed: int) -> bool:
    """A deposit the escape root never consumed is not in any account: it goes back whole."""
    return index >= escape_deposits_consumed


def verify_deposit_refund(index: int, escape_deposits_consumed: int) -> None:
    # Verify the escape root did not consume the deposit (else it is in the account's value)
    if not is_deposit_refundable(index, escape_deposits_consumed):
        raise EscapeRefused(f"deposit {index} was consumed by the escape root: escape with the account")


def is_final_after_freeze(valid: bool, index: int, escape_index: int) -> bool:
    """After a freeze, final means: on the valid chain at or below the escape batch's index.

    Games can no longer open, so a batch still inside its window at the freeze could never be
    challenged again: it must never become final.
    """
    return valid and index <= escape_index
