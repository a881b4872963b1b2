"""Time-locked governance in the spec: the change encoding, the announcement checks, how the
state takes a change, and the posting rule that refuses an early or out-of-order application."""

from __future__ import annotations

from dataclasses import replace

import pytest

from contracts_spec import codec, governance
from contracts_spec.errors import BadGovernanceChange, DecodeError
from contracts_spec.params import BTC_USD, DEV
from contracts_spec.types import (
    ApplyGovernance,
    Globals,
    GovernanceEntry,
    Seconds,
    SetMarketParams,
    SetOracleSigners,
)
from tests.spec.conftest import BTC, World

A, B, C = (bytes([i]) * 20 for i in (1, 2, 3))


# --- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [SetMarketParams(BTC_USD), SetMarketParams(replace(BTC_USD, market_id=7, symbol="SOL-USD")),
     SetOracleSigners((A, B, C), 2), SetOracleSigners((A,), 1)],
)
def test_change_and_entry_round_trip(change: SetMarketParams | SetOracleSigners) -> None:
    raw = codec.encode_governance_change(change)
    assert codec.decode_governance_change(raw) == change
    entry = GovernanceEntry(change, Seconds(1_700_000_030))
    assert codec.decode_governance_entry(codec.encode_governance_entry(entry)) == entry
    with pytest.raises(DecodeError):
        codec.decode_governance_change(raw + b"\x00")
    with pytest.raises(DecodeError):
        codec.decode_governance_change(raw[:-1])


def test_unknown_change_kind_is_refused() -> None:
    with pytest.raises(DecodeError):
        codec.decode_governance_change(b"\x09")


def test_apply_governance_tx_round_trips() -> None:
    tx = ApplyGovernance(3)
    raw = codec.encode_tx(tx)
    assert raw[0] == 10 and len(raw) == 9
    assert codec.decode_tx(raw) == tx


def test_globals_without_governance_keep_their_encoding() -> None:
    """A state that never applied a change commits to the same globals leaf as before governance."""
    assert codec.encode_record(Globals()) == b"\x00\x00\x00\x00"
    g = Globals(governance_applied=5)
    raw = codec.encode_record(g)
    assert raw == b"\x00\x00\x00\x00\x05" and codec.decode_globals(raw) == g
    with pytest.raises(DecodeError):  # a zero counter must be left out: one encoding per value
        codec.decode_globals(b"\x00\x00\x00\x00\x00")


# --- announcement checks ----------------------------------------------------------------------


BAD_CHANGES = [
    ("maintenance above initial", SetMarketParams(replace(BTC_USD, maintenance_margin_ppm=60_000))),
    ("zero lot-tick size", SetMarketParams(replace(BTC_USD, atoms_per_lot_tick=0))),
    ("long symbol", SetMarketParams(replace(BTC_USD, symbol="X" * 40))),
    ("quorum zero", SetOracleSigners((A, B), 0)),
    ("quorum above signers", SetOracleSigners((A, B), 3)),
    ("repeated signer", SetOracleSigners((A, A), 1)),
    ("short address", SetOracleSigners((b"\x01" * 19,), 1)),
]


@pytest.mark.parametrize("name,change", BAD_CHANGES, ids=[b[0] for b in BAD_CHANGES])
def test_bad_changes_are_refused(name: str, change: SetMarketParams | SetOracleSigners) -> None:
    with pytest.raises(BadGovernanceChange):
        governance.validate_change(change)


def test_effective_time_is_the_delay_after_announcement() -> None:
    assert governance.compute_effective_time(100, DEV) == 100 + DEV.governance_delay
    entry = GovernanceEntry(SetOracleSigners((A,), 1), Seconds(130))
    assert not governance.is_effective(entry, 129) and governance.is_effective(entry, 130)


# --- how the state takes a change -------------------------------------------------------------


def test_market_params_change_keeps_the_market_state(world: World) -> None:
    s = world.state
    before = s.market(BTC)
    new = replace(before.params, taker_fee_ppm=700, initial_margin_ppm=80_000)
    assert governance.apply_change(s, SetMarketParams(new), world.now)
    after = s.market(BTC)
    assert after.params == new
    assert (after.oracle_price, after.open_interest, after.funding_index) == (
        before.oracle_price, before.open_interest, before.funding_index)


@pytest.mark.parametrize(
    "params",
    [replace(BTC_USD, atoms_per_lot_tick=20),  # would revalue every open position
     replace(BTC_USD, market_id=5, symbol="GAP-USD")],  # a new market must take the next id (2)
)
def test_changes_the_state_cannot_take_change_nothing(world: World, params: object) -> None:
    s = world.state
    root = s.root()
    assert not governance.apply_change(s, SetMarketParams(params), world.now)  # type: ignore[arg-type]
    assert s.root() == root


def test_a_new_market_takes_the_next_id(world: World) -> None:
    s = world.state
    sol = replace(BTC_USD, market_id=2, symbol="SOL-USD")
    assert governance.apply_change(s, SetMarketParams(sol), world.now)
    assert s.market(2).params == sol and s.market(2).last_funding_time == world.now


def test_oracle_signers_change_keeps_the_sequencer(world: World) -> None:
    s = world.state
    seq = s.config().sequencer
    assert governance.apply_change(s, SetOracleSigners((A, B, C), 3), world.now)
    assert s.config().oracle_signers == (A, B, C) and s.config().oracle_quorum == 3
    assert s.config().sequencer == seq
