"""The node follows the base layer: verdicts on honest, lying and rejecting batches, checkpoints
and restarts, invalidations, and the binding of a database to one chain and one key."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from contracts_spec import codec
from contracts_spec.crypto import keccak
from contracts_spec.merkle import list_root
from contracts_spec.params import DEV
from contracts_spec.state import State
from contracts_spec.types import BatchHeader, Seconds
from contracts_spec.witness import globals_withdrawal_root
from sequencer.scenario import BatchBuilder, Keys, dev_genesis
from tests.verifier import node_fixtures as nf
from tests.verifier.node_fixtures import KINDS, REJECTIONS, World, lying_batch, rejected_batch
from verifier.db import AlertRow, BatchRow, CheckpointRow, NodeRow
from verifier.node import Node as Verifier
from verifier.node import WrongKey
from verifier.replay import StateMismatch, judge_batch

keys, genesis, l1, vdb, world = nf.keys, nf.genesis, nf.l1, nf.vdb, nf.world


def _rows(v: Verifier) -> list[BatchRow]:
    with v.sessions() as s:
        return list(s.scalars(select(BatchRow).order_by(BatchRow.batch_id)))


def _head(v: Verifier) -> NodeRow:
    with v.sessions() as s:
        row = s.get(NodeRow, 1)
        assert row is not None
        return row


def test_honest_batches_are_valid_and_the_head_follows(world: World) -> None:
    v = world.verifier(checkpoint_every=3)
    ids = world.post_honest(7)
    report = v.sync()
    assert report.verified == 8 and report.invalid == 0 and not report.opened
    assert [r.verdict for r in _rows(v)] == ["valid"] * 8
    head = _head(v)
    assert head.head_batch_id == ids[-1] and head.head_root == world.seq_client.rollup()["head_root"]
    with v.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CheckpointRow)) >= 1
    # nothing new: a second sync does nothing
    assert not v.sync().busy


def test_restart_resumes_from_a_checkpoint(world: World) -> None:
    v = world.verifier(checkpoint_every=2)
    world.post_honest(4)
    v.sync()
    v.close()
    world.verifiers.remove(v)
    for i in range(4, 7):
        world.post(world.honest_batch(i))
    again = world.verifier(checkpoint_every=2)
    replayed: list[tuple[str, int, int]] = []
    again.progress = lambda what, done, total: replayed.append((what, done, total))
    report = again.sync()
    assert report.verified == 3 and report.invalid == 0
    # the restart replays at most checkpoint_every batches, never the whole history
    assert max((d for w, d, _ in replayed if w == "restore"), default=0) <= 2
    assert _head(again).head_root == world.seq_client.rollup()["head_root"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_lie_after_each_kind_is_found(world: World, kind: str) -> None:
    v = world.verifier(challenge=False)
    world.post(world.setup_batch())
    bad = lying_batch(world, kind)
    bad_id = world.post(bad)
    v.sync()
    row = next(r for r in _rows(v) if r.batch_id == bad_id)
    assert row.verdict == "invalid", kind
    assert "post_root" in json.loads(row.mismatch_json or "{}")
    assert row.computed_root == "0x" + bad.true_roots[-1].hex()
    # every batch before it was valid; our head stays at its parent
    assert all(r.verdict == "valid" for r in _rows(v) if r.batch_id != bad_id)
    assert _head(v).head_root == "0x" + bad.header.prev_root.hex()


@pytest.mark.parametrize("kind", REJECTIONS)
def test_a_rejected_transaction_is_found(world: World, kind: str) -> None:
    v = world.verifier(challenge=False)
    world.post(world.setup_batch())
    bad_id = world.post(rejected_batch(world, kind))
    v.sync()
    row = next(r for r in _rows(v) if r.batch_id == bad_id)
    assert row.verdict == "invalid" and row.rejected_index == 1 and row.rejected_error
    with v.sessions() as s:  # challenging is off here: the node says nobody challenges it
        assert "unchallenged" in [a.kind for a in s.scalars(select(AlertRow))]


def test_batches_built_on_a_wrong_one_are_skipped(world: World) -> None:
    v = world.verifier(challenge=False)
    world.post(world.setup_batch())
    bad_id = world.post(lying_batch(world, "trade"))
    child = world.post(world.honest_batch(0))
    v.sync()
    grandchild = world.post(world.honest_batch(1))
    v.sync()
    verdicts = {r.batch_id: r.verdict for r in _rows(v)}
    assert verdicts[bad_id] == "invalid" and verdicts[child] == "skipped" and verdicts[grandchild] == "skipped"


def test_a_database_is_bound_to_its_key(world: World) -> None:
    v = world.verifier("vera")
    v.sync()
    settings = v.settings
    v.close()
    world.verifiers.remove(v)
    with pytest.raises(WrongKey):
        Verifier(settings, world.keys["victor"])
    # without a key the database still opens, read-only, as its own address
    ro = Verifier(settings, None)
    assert ro.address == "0x" + world.keys.addr("vera").hex()
    ro.close()


def test_dev_preset_is_what_the_tests_run() -> None:
    assert DEV.game_clock < DEV.challenge_window


def test_a_wrong_batch_left_past_its_window_is_a_critical_alert(world: World) -> None:
    v = world.verifier(challenge=False)
    world.post(world.setup_batch())
    world.post(lying_batch(world, "deposit"))
    v.sync()
    world.advance(DEV.challenge_window)
    v.sync()
    with v.sessions() as s:
        kinds = [a.kind for a in s.scalars(select(AlertRow).order_by(AlertRow.id))]
    assert kinds == ["invalid_batch", "unchallenged", "window_missed"]


def test_a_state_that_is_not_the_batchs_parent_never_judges() -> None:
    """A node whose own state is off raises instead of calling an honest batch wrong."""
    keys = Keys()
    g = dev_genesis(keys)
    b = BatchBuilder(g, keys)
    b.deposit("alice", 5)
    body = b.data()
    honest = State.from_genesis(g)
    prev = honest.root()
    b.apply(honest, g.genesis_time)
    gl = honest.globals()
    header = BatchHeader(0, prev, honest.root(), 1, list_root([codec.tx_hash(t) for t in body.txs]),
                         keccak(codec.encode_batch_data(body)), gl.deposits_consumed, gl.forced_consumed,
                         globals_withdrawal_root(gl), list_root([]), Seconds(g.genesis_time))
    assert judge_batch(State.from_genesis(g), header, body, b.env(g.genesis_time)).valid
    off = State.from_genesis(replace(g, oracle_quorum=3))  # a node whose state went wrong
    with pytest.raises(StateMismatch):
        judge_batch(off, header, body, b.env(g.genesis_time))


def test_the_next_batch_is_prepared_before_this_one_executes(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a pool, batch i+1 is downloaded, decoded and its signers queued before batch i runs
    the STF; a batch built on a wrong one is prepared for nothing and skipped all the same."""
    import verifier.node as node_module

    v = world.verifier(challenge=False, workers=2, parallel_orders=1)
    ids = [world.post(world.setup_batch())]
    for i in range(3):
        ids.append(world.post(world.honest_batch(i)))
    bad_id = world.post(lying_batch(world, "trade"))
    child = world.post(world.honest_batch(3))
    events: list[tuple[str, int]] = []
    prepare, judge = v.prepare, node_module.judge_batch

    def spy_prepare(row: BatchRow) -> object:
        events.append(("prepare", row.batch_id))
        return prepare(row)

    def spy_judge(state: State, header: BatchHeader, *rest: object) -> object:
        events.append(("judge", next(r.batch_id for r in _rows(v) if r.header == codec.encode_header(header))))
        return judge(state, header, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(v, "prepare", spy_prepare)
    monkeypatch.setattr(node_module, "judge_batch", spy_judge)
    report = v.sync()
    assert report.verified == 5 and report.invalid == 1
    verdicts = {r.batch_id: r.verdict for r in _rows(v)}
    assert [verdicts[i] for i in ids] == ["valid"] * 4
    assert verdicts[bad_id] == "invalid" and verdicts[child] == "skipped"
    chain = [*ids, bad_id]
    for earlier, later in zip(chain, [*chain[1:], child], strict=True):
        assert events.index(("prepare", later)) < events.index(("judge", earlier))
    assert ("judge", child) not in events
    assert _head(v).head_root == "0x" + world.seq_client.batch(ids[-1])["post_root"].removeprefix("0x")
