"""Snapshots: a restart from the newest snapshot and the journal after it gives the sequencer a
full replay gives (core, read models, output stream, batches, the batcher's spec state); a corrupt,
foreign or stale snapshot is skipped; the journal stores one only behind its records."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import Any

import pytest

from contracts_spec.params import DEV
from sequencer import journal as journal_module
from sequencer.batcher import Batcher
from sequencer.core import Core
from sequencer.journal import Journal, SnapshotRow, snapshot_parts, snapshots
from sequencer.node import Node, recover_core, restore_core
from sequencer.scenario import Keys, dev_genesis
from sequencer.snapshot import VERSION, Snapshotter, decode, genesis_hash

from .conftest import BTC, USDC, Net, wait_for
from .test_journal import drive

PRICE = 500_000
ACCOUNTS = [bytes([0xAB]) + i.to_bytes(19, "big") for i in range(8)]


def engine_view(core: Core) -> dict[str, Any]:
    engine = core.engine
    books = {m: ([(k, [(o.id, o.remaining) for o in q]) for k, q in sorted(b.bids.items())],
                 [(k, [(o.id, o.remaining) for o in q]) for k, q in sorted(b.asks.items())])
             for m, b in engine.books.items()}
    return {"accounts": {a: engine.account_summary(a) for a in engine.risk.accounts},
            "markets": {m: engine.market_record(m) for m in engine.risk.markets}, "books": books,
            "counters": (engine.seen, engine.accepted, engine.seq, engine.deposits, engine.next_expiry,
                         [(e[0], e[1], e[3]) for e in engine.expiries], sorted(engine.fund_orders))}


def core_view(core: Core, out_base: int) -> dict[str, Any]:
    """Every field of the core, the engine by what it holds, the output stream from `out_base` on."""
    fields = core.snapshot_fields()
    view = {k: list(v) if isinstance(v, deque) else v for k, v in fields.items()
            if k not in ("engine", "outputs", "out_times", "out_base", "trades", "genesis", "preset", "touched_levels",
                      "_out_marks")}
    view["trades"] = {m: list(t) for m, t in core.trades.items()}
    view["engine"] = engine_view(core)
    view["outputs"] = [repr(core.output(n)) for n in range(out_base, core.out_end)]
    view["out_times"] = core.out_times[out_base - core.out_base:]
    return view


def batcher_view(batcher: Batcher) -> dict[str, Any]:
    return {"root": batcher.state.root(), "next_out": batcher.next_out, "parent_time": batcher.parent_time,
            "marks": {i: m - batcher.undo_base for i, m in batcher.marks.items()}, "undo": len(batcher.state.undo),
            "ours": batcher.ours, "rollback_to": batcher.rollback_to}


def close(node: Node) -> None:
    node.journal.close()
    node.service.verifier.close()
    node.client.close()


# --- a live sequencer, restarted ------------------------------------------------------------------


def test_snapshot_and_tail_restore_what_a_full_replay_does(net_factory: Any, trader: Any) -> None:
    net: Net = net_factory(snapshot_every=40)
    for name in ("alice", "bob", "carol"):
        net.deposit(name, 10_000 * USDC)
    net.oracle(BTC, PRICE)
    alice, bob, carol = trader("alice"), trader("bob"), trader("carol")
    rng = random.Random(11)
    resting: list[tuple[Any, str]] = []

    def trade(rounds: int) -> None:
        for _ in range(rounds):
            maker, taker = rng.sample([alice, bob, carol], 2)
            side = rng.random() < 0.5
            r = net.http.post("/v1/orders", json=maker.order(side, PRICE + rng.randint(-3, 3), rng.randint(2, 6)))
            assert r.status_code == 200, r.text
            if r.json()["state"] == "open":
                resting.append((maker, r.json()["orderId"]))
            net.http.post("/v1/orders", json=taker.order(not side, PRICE + rng.randint(-3, 3), rng.randint(1, 3)))
            if resting and rng.random() < 0.3:
                owner, oid = resting.pop(rng.randrange(len(resting)))
                net.http.post("/v1/orders/cancel", json=owner.cancel(oid))

    def all_posted() -> bool:
        h = net.http.get("/health").json()
        return bool(h["batched"] == h["outputs"] and not h["pendingPost"])

    trade(40)
    assert net.http.post("/v1/withdrawals", json=alice.withdraw(100 * USDC, 0)).json()["status"] == "ok"
    wait_for(all_posted, "everything posted")
    net.advance(net.genesis.preset.challenge_window + 1)
    wait_for(lambda: net.node.core.batches and net.node.core.batches[-1].status == "final", "final batches")
    net.oracle(BTC, PRICE)  # the old price went stale with the clock
    trade(40)
    wait_for(all_posted, "the later batches posted")
    node = net.node
    assert node is not None
    wait_for(lambda: node.snapshotter.taken >= node.core.seq - 39 and not node.snapshotter.busy, "a snapshot")
    node.snapshotter.every = 0  # no snapshot at shutdown: the restart replays a tail
    taken = node.snapshotter.taken
    trade(5)
    last = node.core.seq
    net.stop_seq()

    journal = Journal.open(*net.db)
    seqs = journal.snapshot_seqs()
    assert 1 <= len(seqs) <= 2 and seqs[0] == taken < last
    shot = decode(journal.load_snapshot(taken), net.genesis, journal)  # type: ignore[arg-type]
    assert shot.batches and all(b.status == "final" for b in shot.batches)
    journal.close()

    restored = Node(net.settings())
    assert restored.snapshotter.taken == taken and restored.core.seq == last
    base = restored.core.out_base
    assert base > 0 and len(restored.core.batches) > len(shot.batches)  # outputs trimmed; batches re-executed
    views = core_view(restored.core, base), batcher_view(restored.batcher)
    close(restored)

    journal = Journal.open(*net.db)
    with journal.engine.begin() as conn:
        conn.execute(snapshots.delete())
    journal.close()
    replayed = Node(net.settings())
    assert replayed.snapshotter.taken == 0 and replayed.core.out_base == 0
    assert (core_view(replayed.core, base), batcher_view(replayed.batcher)) == views
    close(replayed)


# --- the core alone, on the journal ---------------------------------------------------------------


def run_live(db: tuple[str, str | None], fork: bool, snapshot_at: int) -> tuple[Core, int]:
    """Drive a live core; snapshot it after `snapshot_at` inputs' worth of the workload runs."""
    genesis = dev_genesis(Keys())
    journal = Journal.open(db[0], db[1])
    core = Core(genesis, journal)
    batcher = Batcher(core, journal, None, DEV.max_batch_txs, post=False)
    snapshotter = Snapshotter(core, batcher, journal, every=1)
    snapshotter.fork = fork
    taken = 0

    async def run() -> None:
        nonlocal taken
        core.attach(asyncio.get_running_loop())
        journal.start()
        await drive(core, ACCOUNTS, random.Random(3))
        assert await snapshotter.take()
        taken = core.seq
        await drive(core, ACCOUNTS, random.Random(4))  # the tail

    asyncio.run(run())
    journal.close()
    return core, taken


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "in-loop"])
def test_core_from_snapshot_and_tail_equals_full_replay(db: tuple[str, str | None], fork: bool) -> None:
    live, taken = run_live(db, fork, 0)
    journal = Journal.open(db[0], db[1])
    assert journal.snapshot_seqs() == [taken] and 0 < taken < live.seq
    assert [r.seq for r in journal.replay(after=taken)] == list(range(taken + 1, live.seq + 1))
    restored, snapshot = restore_core(live.genesis, journal, [])
    assert snapshot is not None and snapshot.seq == taken
    full = recover_core(live.genesis, journal)
    journal.close()
    assert core_view(restored, 0) == core_view(full, 0) == core_view(live, 0)
    assert restored.counters["fills"] > 100


def put_snapshot(db: tuple[str, str | None], row: SnapshotRow) -> None:
    journal = Journal.open(db[0], db[1])
    journal.write_snapshot(row)
    journal.close()


@pytest.mark.parametrize("bad", ["corrupt", "foreign", "version", "misnumbered", "part-missing"])
def test_a_bad_snapshot_is_skipped_for_the_next_older(db: tuple[str, str | None], bad: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    live, taken = run_live(db, True, 0)
    journal = Journal.open(db[0], db[1])
    good = journal.load_snapshot(taken)
    journal.close()
    assert good is not None
    body = bytearray(good.body)
    body[len(body) // 2] ^= 0xFF
    other = genesis_hash(dev_genesis(Keys("other")))
    row = {"corrupt": SnapshotRow(live.seq - 1, 0, good.genesis, VERSION, bytes(body[:len(body) // 2])),
           "foreign": SnapshotRow(live.seq - 1, 0, other, VERSION, good.body),
           "version": SnapshotRow(live.seq - 1, 0, good.genesis, VERSION + 1, good.body),
           "misnumbered": SnapshotRow(live.seq - 1, 0, good.genesis, VERSION, good.body),
           "part-missing": SnapshotRow(live.seq - 1, 0, good.genesis, VERSION, good.body)}[bad]
    put_snapshot(db, row)
    journal = Journal.open(db[0], db[1])
    if bad == "part-missing":
        with journal.engine.begin() as conn:
            conn.execute(snapshot_parts.delete().where(snapshot_parts.c.seq == live.seq - 1,
                                                       snapshot_parts.c.part == 0))
    assert journal.snapshot_seqs() == [live.seq - 1, taken]
    with caplog.at_level(logging.WARNING, "rampart.snapshot"):
        restored, snapshot = restore_core(live.genesis, journal, [])
    assert snapshot is not None and snapshot.seq == taken
    assert f"snapshot at record {live.seq - 1} skipped" in caplog.text
    assert core_view(restored, 0) == core_view(live, 0)
    # with no snapshot that fits, the full replay
    with journal.engine.begin() as conn:
        conn.execute(snapshots.delete().where(snapshots.c.seq == taken))
    restored, snapshot = restore_core(live.genesis, journal, [])
    journal.close()
    assert snapshot is None and core_view(restored, 0) == core_view(live, 0)


def test_the_journal_keeps_the_newest_two_snapshots_behind_their_records(db: tuple[str, str | None],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "PART_BYTES", 3)
    journal = Journal.open(db[0], db[1], group=4)
    journal.start()
    for n in range(1, 31):
        journal.append(9, n, b"")
        if n % 10 == 0:
            journal.write_snapshot(SnapshotRow(n, 0, "g", VERSION, bytes(range(n))))  # in parts of 3 bytes
    journal.close()
    journal = Journal.open(db[0], db[1])
    assert journal.snapshot_seqs() == [30, 20] and journal.load_snapshot(20).body == bytes(range(20))  # type: ignore[union-attr]
    with journal.engine.connect() as conn:
        assert sorted(set(conn.execute(snapshot_parts.select()).scalars())) == [20, 30]  # no stray parts
    assert [r.seq for r in journal.replay(after=20)] == list(range(21, 31)) and journal.last_now == 30
    with pytest.raises(Exception, match="ahead of the journal"):
        journal.write_snapshot(SnapshotRow(31, 0, "g", VERSION, b""))
    journal.close()
