"""The follower's polls look only at the batches not final yet: batches become final in order and
stay final, so the final prefix of `core.batches` is counted once, not rescanned every poll."""

from __future__ import annotations

from types import SimpleNamespace

from sequencer.follower import Follower


class Counting(list):  # type: ignore[type-arg]
    """core.batches that counts the items read one by one (a scan of every batch shows up here)."""

    reads = 0

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, int):
            Counting.reads += 1
        return super().__getitem__(key)


def batch(status: str) -> SimpleNamespace:
    return SimpleNamespace(status=status)


def follower(batches: list[SimpleNamespace]) -> Follower:
    core = SimpleNamespace(batches=Counting(batches), now=0)
    return Follower(core, None, None, None, None)  # type: ignore[arg-type]


def test_the_final_prefix_is_counted_once_and_follows_finality_rollbacks_and_restores() -> None:
    f = follower([batch("final")] * 1000 + [batch("posted"), batch("built")])
    assert f.first_open() == 1000
    Counting.reads = 0
    assert f.first_open() == 1000 and Counting.reads <= 2  # not the thousand final ones again
    f.core.batches[1000].status = "final"  # the next one became final
    assert f.first_open() == 1001
    del f.core.batches[1001:]  # a rollback replaces what follows the final ones
    f.core.batches.append(batch("built"))
    assert f.first_open() == 1001
    f.core.batches = Counting([batch("final")] * 10 + [batch("posted")])  # a snapshot restored: fewer batches
    assert f.first_open() == 10
    f.core.batches = Counting([batch("final")] * 5 + [batch("posted")] * 20)  # rebuilt longer, fewer final
    assert f.first_open() == 5
    f.core.batches = Counting([])
    assert f.first_open() == 0
