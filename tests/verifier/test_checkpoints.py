"""Checkpoints: full ones and deltas over them compose into exactly the state they were taken
of, the node writes deltas while they stay smaller than the full under them, restores from a
chain of them, and never prunes a checkpoint a kept delta builds on."""

from __future__ import annotations

import zlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from contracts_spec.state import ACCOUNT, State
from contracts_spec.types import Account
from tests.verifier import node_fixtures as nf
from tests.verifier.node_fixtures import World
from verifier.db import CheckpointRow, checkpoint_chain
from verifier.node import Node as Verifier
from verifier.snapshot import SnapshotError, decode_state, delta_base, encode_delta, encode_state

keys, genesis, l1, vdb, world = nf.keys, nf.genesis, nf.l1, nf.vdb, nf.world

ADDRESSES = [bytes([i]) * 20 for i in range(1, 9)]
# a write: (address, collateral); collateral 0 puts the account back to its default (no leaf)
writes = st.lists(st.tuples(st.sampled_from(ADDRESSES), st.integers(0, 3)), max_size=12)


def _apply(state: State, batch: list[tuple[bytes, int]]) -> set[tuple[int, bytes]]:
    for address, collateral in batch:
        state.set_account(address, replace(Account(), collateral=collateral))
    written = set(state.undo[::2])
    state.root()
    state.checkpoint()
    return written


@given(st.lists(writes, min_size=1, max_size=5))
@settings(max_examples=150, deadline=None)
def test_a_full_and_its_deltas_are_the_state(batches: list[list[tuple[bytes, int]]]) -> None:
    state = State()
    _apply(state, batches[0])
    blobs = [encode_state(state)]
    for i, batch in enumerate(batches[1:]):
        blobs.append(encode_delta(state, _apply(state, batch), base=i))
    restored = decode_state(blobs, state.root())
    assert restored.records == state.records
    assert restored.root() == state.root()
    assert [delta_base(b) for b in blobs] == [None, *range(len(blobs) - 1)]


def test_a_chain_that_does_not_hash_to_the_root_is_refused() -> None:
    state = State()
    _apply(state, [(ADDRESSES[0], 1), (ADDRESSES[1], 2)])
    full = encode_state(state)
    delta = encode_delta(state, _apply(state, [(ADDRESSES[0], 0)]), base=7)
    with pytest.raises(SnapshotError, match="does not hash"):
        decode_state([full], state.root())  # the delta left out
    with pytest.raises(SnapshotError, match="one full checkpoint, then deltas"):
        decode_state([delta, full], state.root())
    with pytest.raises(SnapshotError, match="unknown checkpoint version"):
        delta_base(zlib.compress(b"\x09" + bytes(8)))
    assert decode_state([full, delta], state.root()).records == {(ACCOUNT, ADDRESSES[1]): state.account(ADDRESSES[1])}


# --- in the node -------------------------------------------------------------------------------------


def _checkpoints(v: Verifier) -> list[tuple[int, int | None]]:
    """(batch id, base batch id or None for a full one) of every checkpoint, oldest first."""
    with v.sessions() as s:
        return [(ck.batch_id, delta_base(ck.blob)) for ck in s.scalars(select(CheckpointRow).order_by(CheckpointRow.index))]


def test_the_node_writes_deltas_and_restarts_from_them(world: World) -> None:
    v = world.verifier(checkpoint_every=1)
    ids = world.post_honest(6)
    assert v.sync().verified == 7
    cks = _checkpoints(v)
    assert [c for c, _ in cks] == ids  # one a batch
    assert cks[0][1] is None  # the first is full
    deltas = [(c, base) for c, base in cks if base is not None]
    assert deltas, "a batch touches a few records of the state: deltas, not fulls"
    for c, base in deltas:  # each delta builds on the checkpoint just before it
        assert base == ids[ids.index(c) - 1]
    v.close()
    world.verifiers.remove(v)
    # a restart restores the head from the chain ending in the newest delta, replaying nothing
    world.post(world.honest_batch(6))
    again = world.verifier(checkpoint_every=1)
    replayed: list[tuple[str, int, int]] = []
    again.progress = lambda what, done, total: replayed.append((what, done, total))
    assert again.sync().verified == 1
    assert not [r for r in replayed if r[0] == "restore"]
    assert again.head_state().root().hex() == world.seq_client.rollup()["head_root"][2:]
    assert _checkpoints(again)[-1][1] is None  # after a restart the first checkpoint is a full one


def test_deltas_give_way_to_a_full_once_they_outgrow_it(world: World) -> None:
    v = world.verifier(checkpoint_every=1)
    world.post_honest(12)
    v.sync()
    kinds = [base is None for _, base in _checkpoints(v)]
    assert kinds[0] and any(kinds[1:]), "a second full once the deltas add up to the first"
    assert not all(kinds)


def test_pruning_keeps_the_full_a_kept_delta_builds_on(world: World) -> None:
    v = world.verifier(checkpoint_every=1)
    world.post_honest(8)
    v.sync()
    world.advance(world.genesis.preset.challenge_window + 1)  # every batch so far is final
    world.post(world.honest_batch(8))
    v.sync()
    v.save_checkpoint()
    with v.sessions() as s:
        kept = list(s.scalars(select(CheckpointRow).order_by(CheckpointRow.index)))
        assert len(kept) < 10, "checkpoints below the final one's full were pruned"
        for ck in kept:
            chain = checkpoint_chain(s, ck)  # raises if a base is gone
            assert delta_base(chain[0].blob) is None
    assert v.state_after(kept[-1].batch_id).root() == v.head_state().root()


def test_a_missing_base_is_a_snapshot_error(world: World) -> None:
    v = world.verifier(checkpoint_every=1)
    world.post_honest(3)
    v.sync()
    with v.sessions() as s:
        delta = next(ck for ck in s.scalars(select(CheckpointRow).order_by(CheckpointRow.index.desc()))
                     if delta_base(ck.blob) is not None)
        base = s.get(CheckpointRow, delta_base(delta.blob))
        s.delete(base)
        s.commit()
        with pytest.raises(SnapshotError, match="builds on a missing one"):
            checkpoint_chain(s, delta)


def test_a_checkpoint_that_fails_to_commit_changes_nothing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next delta builds on the last checkpoint that is in the database, never on one whose
    transaction failed, and still holds every change since."""
    v = world.verifier(checkpoint_every=100)
    world.post_honest(1)
    v.sync()
    v.save_checkpoint()  # a full one
    world.post(world.honest_batch(1))
    v.sync()
    base, changed = v._base, set(v._changed)
    assert changed

    def fail(*_: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(Verifier, "_prune_checkpoints", staticmethod(fail))
    with pytest.raises(RuntimeError):
        v.save_checkpoint()
    assert (v._base, v._changed) == (base, changed)
    assert len(_checkpoints(v)) == 1
    monkeypatch.undo()
    world.post(world.honest_batch(2))
    v.sync()
    v.save_checkpoint()
    assert [b for _, b in _checkpoints(v)] == [None, base]
    with v.sessions() as s:
        newest = s.scalars(select(CheckpointRow).order_by(CheckpointRow.index.desc())).first()
        assert newest is not None
        chain = [c.blob for c in checkpoint_chain(s, newest)]
    assert decode_state(chain, v.head_state().root()).root() == v.head_state().root()
