"""The escape hatch: when the rollup may be frozen, and what each user may take out after.

After a freeze no batch is accepted; each user proves their account (and every position and
market of its open-market set) against the last final state root, once, and is paid its
value at that root's oracle prices, with funding and losses settled. The base layer runs
these rules; the bridge never pays out more than it holds.
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
    oldest_unserved_forced_time: int | None  # base-layer time of the oldest forced request not consumed


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
