"""The batcher's undo log, without a network: the pre-state of every batch not final (what the
defender re-executes from), forgotten below the first batch not final, and the rollback's
re-application from any of them."""

from __future__ import annotations

import pytest

from contracts_spec.state import State
from sequencer.batcher import Batcher
from sequencer.core import Core, Kind, encode_queue
from sequencer.scenario import Keys, dev_genesis

T0 = 1_700_000_000
USDC = 1_000_000


@pytest.fixture
def batched() -> tuple[Core, Batcher, list[bytes]]:
    """Five batches of one deposit each (posting off); the prev root of each."""
    keys = Keys()
    core = Core(dev_genesis(keys, genesis_time=T0))
    batcher = Batcher(core, None, None, 10)
    roots = []
    for i in range(5):
        who = keys.addr(f"trader{i}")
        core.execute(Kind.DEPOSIT, encode_queue(i, who, (i + 1) * USDC), (i, who, (i + 1) * USDC), now=T0 + i)
        cut = batcher.cut(T0 + i)
        assert cut is not None
        built = batcher.build(cut)
        batcher.post(built)
        batcher.accept(built)
        roots.append(built.info.header.prev_root)
    return core, batcher, roots


def test_every_pending_batch_has_its_pre_state(batched: tuple[Core, Batcher, list[bytes]]) -> None:
    core, batcher, roots = batched
    head = batcher.state.root()
    for index, root in enumerate(roots):
        pre = batcher.pre_state(index)
        assert pre.root() == root and pre.undo == []
    assert batcher.state.root() == head  # the head is untouched


def test_finality_forgets_the_undo_log_below_the_first_batch_not_final(
        batched: tuple[Core, Batcher, list[bytes]]) -> None:
    core, batcher, roots = batched
    logged = len(batcher.state.undo)
    for b in core.batches[:3]:
        b.status = "final"
    batcher.trim()
    assert len(batcher.state.undo) < logged and sorted(batcher.marks) == [3, 4]
    for index in (0, 2):
        with pytest.raises(KeyError):
            batcher.pre_state(index)
    assert [batcher.pre_state(i).root() for i in (3, 4)] == roots[3:]
    for b in core.batches:
        b.status = "final"
    batcher.trim()
    assert batcher.state.undo == [] and batcher.marks == {}


def test_reapply_rolls_back_to_a_batch_and_rebuilds_the_same_batches(
        batched: tuple[Core, Batcher, list[bytes]]) -> None:
    core, batcher, roots = batched
    for b in core.batches[:2]:
        b.status = "final"
    batcher.trim()
    posts = [b.header.post_root for b in core.batches]
    rebuilt, replaced = batcher.reapply(2, T0 + 10, core.out_end)
    assert [b.index for b in replaced] == [2, 3, 4]
    # one batch now (the cut is no longer split by time), ending at the same root
    assert [b.info.header.prev_root for b in rebuilt] == [roots[2]]
    assert rebuilt[-1].info.header.post_root == posts[-1] and batcher.state.root() == posts[-1]
    assert [b.info.status for b in rebuilt] == ["built"] and batcher.queued == rebuilt
    assert [b.index for b in core.batches] == [0, 1, 2] and batcher.pre_state(2).root() == roots[2]
    fresh = State.from_genesis(core.genesis)
    assert batcher.pre_state(2).records.keys() != fresh.records.keys()  # deposits of batches 0 and 1
