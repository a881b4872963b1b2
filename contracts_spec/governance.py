"""Time-locked governance: who may change what, when a change takes effect, and how the state takes it.

The genesis governance key announces a change on the base layer, which queues it with an
effective time; a batch applies it with ApplyGovernance(queue_index), reading the entry from
the base layer (like a deposit), so the sequencer and every verifier switch at one transaction.
"""

from __future__ import annotations

from contracts_spec import codec
from contracts_spec.errors import BadGenesis, BadGovernanceChange, InvalidAmount, UnknownMarket
from contracts_spec.params import validate_market
from contracts_spec.state import State
from contracts_spec.types import (
    Address,
    Config,
    Genesis,
    GovernanceChange,
    GovernanceEntry,
    Market,
    Preset,
    Seconds,
    SetMarketParams,
    SetOracleSigners,
)


def is_governor(sender: Address, genesis: Genesis) -> bool:
    """Only the genesis governance key announces changes."""
    return sender == genesis.governance


def compute_effective_time(announced_time: int, preset: Preset) -> Seconds:
    """A change takes effect governance_delay after it was announced, never sooner."""
    return Seconds(announced_time + preset.governance_delay)


def is_effective(entry: GovernanceEntry, now: int) -> bool:
    return now >= entry.effective_time


def validate_change(change: GovernanceChange) -> None:
    """The checks a change passes before it is queued (and again when it is applied)."""
    # Verify the change has a canonical encoding (field widths, string lengths)
    try:
        codec.encode_governance_change(change)
    except (InvalidAmount, TypeError) as exc:
        raise BadGovernanceChange(f"not encodable: {exc}") from exc
    if isinstance(change, SetMarketParams):
        # Verify the market's parameters pass the genesis rules
        try:
            validate_market(change.params)
        except BadGenesis as exc:
            raise BadGovernanceChange(str(exc)) from exc
        return
    # Verify the signers are distinct and the quorum is within their number
    if len(set(change.signers)) != len(change.signers) or not (0 < change.quorum <= len(change.signers)):
        raise BadGovernanceChange("oracle signers must be distinct and 0 < quorum <= len(signers)")


def apply_change(state: State, change: GovernanceChange, now: int) -> bool:
    """Apply an effective change; False (nothing changed) when the state cannot take it.

    A market keeps its id and its atoms_per_lot_tick (what a lot times a tick is worth: changing
    it would revalue every open position); a new market must take the next id. A change refused
    here is consumed as rejected, like an unaffordable forced withdrawal, so a bad change can
    never halt the rollup.
    """
    try:
        validate_change(change)
    except BadGovernanceChange:
        return False
    if isinstance(change, SetOracleSigners):
        config = state.config()
        state.set_config(Config(change.signers, change.quorum, config.sequencer))
        return True
    return apply_market_params(state, change, now)


def apply_market_params(state: State, change: SetMarketParams, now: int) -> bool:
    params = change.params
    existing = get_market_or_none(state, params.market_id)
    if existing is None:
        # Verify a new market takes the next id
        if params.market_id > 0 and get_market_or_none(state, params.market_id - 1) is None:
            return False
        state.set_market(params.market_id, Market(params=params, last_funding_time=Seconds(now)))
        return True
    # Verify the size of a lot times a tick is unchanged
    if existing.params.atoms_per_lot_tick != params.atoms_per_lot_tick:
        return False
    state.set_market(
        params.market_id,
        Market(
            params, existing.oracle_price, existing.oracle_time, existing.funding_index, existing.loss_index,
            existing.premium_sum, existing.premium_lots, existing.last_funding_time, existing.open_interest,
        ),
    )
    return True


def get_market_or_none(state: State, market_id: int) -> Market | None:
    """The market, or None when the state proves it absent (a witness raises if it cannot tell)."""
    try:
        return state.market(market_id)
    except UnknownMarket:
        return None
