"""Time-locked governance on the base layer over HTTP: only the governance key announces, everyone
sees the change (event, reads, client), posting refuses a batch that applies it early or leaves
it out past the forced-inclusion delay, and a one-step proof over ApplyGovernance reads the queue."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from contracts_spec import codec, errors, governance
from contracts_spec.params import DEV
from contracts_spec.types import ApplyGovernance, GovernanceEntry, Seconds, SetMarketParams, SetOracleSigners
from l1_mock.client import ClientBridge, L1Error
from sequencer.scenario import Keys

from .conftest import NATIVE, Node
from .rollup import Sequencer, credit_mallory, play

BTC = 0


class World:
    def __init__(self, node: Node, keys: Keys) -> None:
        self.node, self.keys = node, keys
        self.chain = node.client(keys["sequencer"])
        self.gov = node.client(keys["governance"])
        self.vera = node.client(keys["vera"])
        self.vera.faucet(native=10 * NATIVE)
        self.seq = Sequencer(node.genesis, keys, self.chain)  # type: ignore[arg-type]
        self.seq.stake()

    def snapshot(self) -> dict[str, Any]:
        events, _ = self.chain.events(limit=1000)
        return {"rollup": self.chain.rollup(), "governance": self.chain.governance_changes(), "events": len(events)}

    def fee_change(self) -> SetMarketParams:
        return SetMarketParams(replace(self.node.genesis.markets[BTC], taker_fee_ppm=2_000))  # type: ignore[union-attr]

    def announce(self, change: Any) -> dict[str, Any]:
        """Announce on the base layer and mirror the queue entry in the sequencer's bridge view."""
        result = self.gov.announce_governance(change)
        self.seq.b.bridge.governance_entries.append(GovernanceEntry(change, Seconds(result["effective_time"])))
        return result

    def apply_next(self) -> None:
        self.seq.b.txs.append(ApplyGovernance(len([t for t in self.seq.b.txs if isinstance(t, ApplyGovernance)])
                                              + self.seq.state.globals().governance_applied))


@pytest.fixture
def world(node: Node, keys: Keys) -> World:
    return World(node, keys)


def refused(code: str, world: World, call: Any) -> None:
    before = world.snapshot()
    with pytest.raises(L1Error) as e:
        call()
    assert e.value.code == code, e.value
    assert world.snapshot() == before


def test_only_the_governance_key_announces_valid_changes(world: World) -> None:
    change = world.fee_change()
    refused("not_governance", world, lambda: world.vera.announce_governance(change))
    refused("not_governance", world, lambda: world.chain.announce_governance(change))  # not even the sequencer
    bad = SetOracleSigners((bytes(20), bytes(20)), 1)
    refused("bad_governance_change", world, lambda: world.gov.announce_governance(bad))
    refused("malformed", world, lambda: world.gov.send("announce_governance", {"change": "0x09"}))


def test_an_announced_change_is_visible_to_everyone(world: World) -> None:
    t = world.chain.now()
    result = world.announce(world.fee_change())
    assert result["index"] == 0 and result["effective_time"] >= t + DEV.governance_delay
    assert result["decoded"]["params"]["taker_fee_ppm"] == 2_000
    (event,) = [e for e in world.vera.follow(names=["GovernanceAnnounced"])]
    assert event.data["index"] == 0 and event.data["effective_time"] == result["effective_time"]
    listed = world.vera.governance_changes()
    assert [c["status"] for c in listed["changes"]] == ["announced"] and listed["applied"] == 0
    assert world.vera.governance_entry(0) == GovernanceEntry(world.fee_change(), Seconds(result["effective_time"]))
    assert world.vera.governance_entry(1) is None
    assert ClientBridge(world.vera).governance(0) == world.vera.governance_entry(0)
    world.chain.increase_time(DEV.governance_delay)
    assert world.vera.governance_changes()["changes"][0]["status"] == "effective"


def test_a_batch_applying_a_change_early_is_refused(world: World) -> None:
    result = world.announce(world.fee_change())
    # a sequencer whose mirror claims the change is effective already: the STF would take it,
    # the base layer does not
    world.seq.b.bridge.governance_entries[0] = GovernanceEntry(world.fee_change(), Seconds(world.chain.now()))
    world.apply_next()
    early = world.seq.build()
    refused("governance_too_early", world,
            lambda: world.chain.post_batch(early.header, early.data, early.globals_proof))
    # one second before the effective time: still refused
    world.chain.increase_time(result["effective_time"] - world.chain.now() - 1)
    early = world.seq.build()
    refused("governance_too_early", world,
            lambda: world.chain.post_batch(early.header, early.data, early.globals_proof))
    # at the effective time it goes through, and the base layer records the switch
    world.chain.increase_time(1)
    world.seq.b.bridge.governance_entries[0] = GovernanceEntry(world.fee_change(), Seconds(result["effective_time"]))
    bid = world.seq.post(world.seq.build())
    assert world.chain.batch(bid)["governance_applied"] == 1 and world.chain.rollup()["governance_applied"] == 1
    assert world.seq.state.market(BTC).params.taker_fee_ppm == 2_000
    assert world.vera.governance_changes()["changes"][0]["status"] == "applied"


def test_out_of_order_or_unannounced_changes_are_refused_at_posting(world: World) -> None:
    world.announce(world.fee_change())
    world.announce(SetOracleSigners(world.node.genesis.oracle_signers[:2], 2))  # type: ignore[union-attr]
    world.chain.increase_time(DEV.governance_delay)
    world.seq.b.txs.append(ApplyGovernance(1))  # skips 0: the STF rejects it, posting refuses it
    with pytest.raises(errors.BadQueueIndex):  # the honest STF refuses to build it
        world.seq.build()
    built = world.seq.build(skip_invalid=True)
    refused("governance_too_early", world, lambda: world.chain.post_batch(built.header, built.data, built.globals_proof))


def test_an_effective_change_must_be_applied_within_the_forced_inclusion_delay(world: World) -> None:
    result = world.announce(world.fee_change())
    world.chain.increase_time(result["effective_time"] - world.chain.now() + DEV.forced_inclusion_delay - 1)
    world.seq.post(world.seq.build())  # not yet overdue: a batch without it is fine
    world.chain.increase_time(1)
    late = world.seq.build()
    refused("forced_inclusion_missed", world, lambda: world.chain.post_batch(late.header, late.data, late.globals_proof))
    world.apply_next()
    world.seq.post(world.seq.build())


def test_a_lie_about_a_governance_change_loses_its_one_step_game(world: World) -> None:
    """The base layer's step reads the change from its own queue (ChainBridge), never the prover."""
    result = world.announce(world.fee_change())
    world.chain.increase_time(result["effective_time"] - world.chain.now())
    world.apply_next()
    built = world.seq.build(lie_at=0, tamper=credit_mallory(world.keys))
    bid = world.seq.post(built)
    gid = world.vera.open_game(bid).game_id
    info, counts = play(gid, world.chain, world.vera, built, built.trace(), built.truth())
    assert info.status == "challenger_won" and counts["step"] == 1


def test_the_change_encoding_on_the_wire_is_the_spec_codec(world: World) -> None:
    change = SetOracleSigners(world.node.genesis.oracle_signers, 3)  # type: ignore[union-attr]
    governance.validate_change(change)
    result = world.gov.announce_governance(change)
    assert result["change"] == "0x" + codec.encode_governance_change(change).hex()
