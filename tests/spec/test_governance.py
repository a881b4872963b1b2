"""Time-locked governance in the spec: the change encoding, the announcement checks, how the
state takes a change, and the posting rule that refuses an early or out-of-order application."""

from __future__ import annotations

from dataclasses import replace

import pytest

from contracts_spec import codec, errors, governance
from contracts_spec.errors import BadGovernanceChange, DecodeError
from contracts_spec.params import BTC_USD, DEV
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, Env, MemoryBridge, apply_batch, process_tx
from contracts_spec.types import (
    FEE_ACCOUNT,
    ApplyGovernance,
    BatchData,
    DepositEntry,
    ForcedEntry,
    Globals,
    GovernanceEntry,
    Seconds,
    SetMarketParams,
    SetOracleSigners,
    Tx,
)
from contracts_spec.witness import execute_one_step, make_witness
from sequencer.scenario import ORACLE_NAMES
from tests.spec.conftest import BTC, BTC_PRICE, T0, USDC, World

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


# --- the STF: ApplyGovernance -----------------------------------------------------------------

RAISED_FEE = 2_000


class EncodedBridge:
    """Another BridgeView: the queue as the base layer stores it (encoded bytes), decoded per read."""

    def __init__(self, bridge: MemoryBridge) -> None:
        self.bridge = bridge
        self.governance_bytes = [codec.encode_governance_entry(e) for e in bridge.governance_entries]

    def deposit(self, index: int) -> DepositEntry | None:
        return self.bridge.deposit(index)

    def forced(self, index: int) -> ForcedEntry | None:
        return self.bridge.forced(index)

    def governance(self, index: int) -> GovernanceEntry | None:
        if not 0 <= index < len(self.governance_bytes):
            return None
        return codec.decode_governance_entry(self.governance_bytes[index])


def fee_change(world: World, effective: int = T0 + 5) -> GovernanceEntry:
    params = replace(world.state.market(BTC).params, taker_fee_ppm=RAISED_FEE)
    return GovernanceEntry(SetMarketParams(params), Seconds(effective))


def trace(state: State, data: BatchData, env: Env) -> list[tuple[bytes, int, int]]:
    """Per transaction: the root after it, the BTC taker fee then in force, the fee account's balance."""
    orders = BatchOrders(data.orders, env.preset)
    out = []
    for tx in data.txs:
        process_tx(state, tx, orders, env)
        out.append((state.root(), state.market(BTC).params.taker_fee_ppm, state.account(FEE_ACCOUNT).collateral))
    return out


def test_sequencer_and_verifier_switch_at_the_same_transaction() -> None:
    """Two independent nodes (each from genesis, each with its own view of the base layer's queue)
    apply the same batch: both run the old fee up to the ApplyGovernance and the new one after."""
    sequencer, verifier = World(), World()
    entry = fee_change(sequencer)
    sequencer.b.bridge.governance_entries.append(entry)
    b = sequencer.b
    b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE, lots=100)
    b.txs.append(ApplyGovernance(0))
    b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE, lots=100)
    data = b.data()
    fees_before = sequencer.state.account(FEE_ACCOUNT).collateral
    seq_trace = trace(sequencer.state, data, sequencer.b.env(sequencer.now))
    ver_trace = trace(verifier.state, data, Env(verifier.genesis.preset, Seconds(verifier.now),
                                                 EncodedBridge(sequencer.b.bridge)))
    assert seq_trace == ver_trace
    assert [fee for _, fee, _ in seq_trace] == [BTC_USD.taker_fee_ppm, RAISED_FEE, RAISED_FEE]
    # the fee account took 5 bp from the first taker and 20 bp from the second (makers 1 bp)
    notional = 100 * BTC_PRICE * 10
    fees = [fees_before] + [x[2] for x in seq_trace]
    assert [after - before for before, after in zip(fees, fees[1:], strict=False)] == [
        notional * (BTC_USD.taker_fee_ppm + 100) // 1_000_000, 0, notional * (RAISED_FEE + 100) // 1_000_000]
    assert sequencer.state.globals().governance_applied == 1


def test_a_change_applied_before_its_effective_time_is_rejected(world: World) -> None:
    world.b.bridge.governance_entries.append(fee_change(world, effective=world.now + 1))
    world.b.txs.append(ApplyGovernance(0))
    root = world.state.root()
    with pytest.raises(errors.GovernanceNotEffective):
        world.apply()
    assert world.state.root() == root
    world.now += 1  # at its effective time it applies
    world.apply()
    assert world.state.market(BTC).params.taker_fee_ppm == RAISED_FEE


@pytest.mark.parametrize("index,entries", [(1, 2), (0, 0)], ids=["not-next", "not-announced"])
def test_apply_governance_takes_the_next_announced_entry(world: World, index: int, entries: int) -> None:
    world.b.bridge.governance_entries.extend([fee_change(world)] * entries)
    world.b.txs.append(ApplyGovernance(index))
    with pytest.raises(errors.BadQueueIndex):
        world.apply()


def test_a_change_the_state_cannot_take_is_consumed_as_rejected(world: World) -> None:
    params = replace(world.state.market(BTC).params, atoms_per_lot_tick=20)
    world.b.bridge.governance_entries.append(GovernanceEntry(SetMarketParams(params), Seconds(T0)))
    before = world.state.market(BTC)
    world.b.txs.append(ApplyGovernance(0))
    world.apply()
    assert world.state.market(BTC) == before and world.state.globals().governance_applied == 1


def test_new_oracle_signers_take_over_at_the_change(world: World) -> None:
    keys = world.keys
    signers = (keys.addr(ORACLE_NAMES[2]), keys.addr("oracle-new"))
    world.b.bridge.governance_entries.append(GovernanceEntry(SetOracleSigners(signers, 2), Seconds(T0)))
    world.b.txs.append(ApplyGovernance(0))
    world.apply()
    world.b.reset()
    world.b.oracle(BTC, BTC_PRICE, T0 + 5)  # by oracle-0 and oracle-1: no longer registered
    with pytest.raises(errors.OracleQuorum):
        world.apply()
    world.b.reset()
    world.b.oracle(BTC, BTC_PRICE, T0 + 5, signers=(ORACLE_NAMES[2], "oracle-new"))
    world.apply()
    assert world.state.market(BTC).oracle_time == T0 + 5


@pytest.mark.parametrize(
    "change",
    [SetMarketParams(replace(BTC_USD, taker_fee_ppm=RAISED_FEE)), SetMarketParams(replace(BTC_USD, market_id=2)),
     SetMarketParams(replace(BTC_USD, market_id=3)), SetOracleSigners((A, B), 1)],
    ids=["params", "new-market", "gap", "oracle"],
)
def test_one_step_execution_equals_full_execution(world: World, change: SetMarketParams | SetOracleSigners) -> None:
    world.b.bridge.governance_entries.append(GovernanceEntry(change, Seconds(T0)))
    tx: Tx = ApplyGovernance(0)
    env = world.b.env(world.now)
    orders = BatchOrders((), env.preset)
    pre = world.state.copy()
    step = make_witness(pre, tx, orders, env)
    assert step.error is None
    post = execute_one_step(env.preset, world.state.root(), step.witness, tx, {}, world.b.bridge, Seconds(world.now))
    apply_batch(world.state, BatchData((), (tx,)), env)
    assert post == world.state.root()


def test_collateral_is_untouched_by_governance(world: World) -> None:
    total = sum(a.collateral for a in world.state.accounts().values())
    world.b.bridge.governance_entries.append(fee_change(world))
    world.b.txs.append(ApplyGovernance(0))
    world.apply()
    assert sum(a.collateral for a in world.state.accounts().values()) == total == 1_202_000 * USDC
