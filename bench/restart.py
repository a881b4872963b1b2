#!/usr/bin/env python3
"""Restart time from a full journal replay versus from a snapshot, and what a snapshot costs.

Journals a workload through a live core (the service's mode): `--resting` orders that rest and
`--fills` crossing pairs that trade, then snapshots it (forked, as the node does, and on the
event loop for comparison) with `--tail` records journaled after the snapshot, and restores it
both ways. Signatures are not part of it (intake checks them).

usage: python bench/restart.py [--resting N] [--fills N] [--tail N] [--db URL]
prints: records, snapshot size, loop pause (fork) and in-loop pickling, full replay vs snapshot restart
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

# bench/verifier.py would shadow the verifier package the node imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from contracts_spec.params import DEV  # noqa: E402
from contracts_spec.types import OraclePrice, Order, Seconds, SignedOrder, TimeInForce  # noqa: E402
from sequencer.batcher import Batcher  # noqa: E402
from sequencer.core import Core, Kind, encode_oracle, encode_place, encode_queue  # noqa: E402
from sequencer.journal import Journal  # noqa: E402
from sequencer.node import recover_core, restore_core  # noqa: E402
from sequencer.scenario import Keys, dev_genesis  # noqa: E402
from sequencer.snapshot import Snapshotter, dumps, picture  # noqa: E402

PRICE = 500_000
ACCOUNTS = [bytes([0xAD]) + i.to_bytes(19, "big") for i in range(64)]


def orders(resting: int, fills: int, start: int) -> list[SignedOrder]:
    """`resting` orders 100+ ticks off the price (they rest), then `fills` pairs that cross at it."""
    out = []
    for i in range(resting):
        buy = i % 2 == 0
        price = PRICE - 100 - i % 50 if buy else PRICE + 100 + i % 50
        out.append(Order(ACCOUNTS[i % 64], 0, buy, price, 1, TimeInForce.GTC, False, 0, start + i, 0))  # type: ignore[arg-type]
    for i in range(fills):
        n = start + resting + 2 * i
        maker_buys = i % 2 == 0
        out.append(Order(ACCOUNTS[i % 64], 0, maker_buys, PRICE, 1, TimeInForce.GTC, False, 0, n, 0))  # type: ignore[arg-type]
        out.append(Order(ACCOUNTS[(i + 1) % 64], 0, not maker_buys, PRICE, 1, TimeInForce.GTC, False, 0, n + 1, 0))  # type: ignore[arg-type]
    return [SignedOrder(o, bytes(65)) for o in out]


async def place(core: Core, signed: list[SignedOrder]) -> None:
    last = 0
    for i, so in enumerate(signed):
        oid = so.order.nonce.to_bytes(32, "big")
        last = core.execute(Kind.PLACE, encode_place(so, oid, 0, False), (so, oid, 0, False)).seq
        if i % 100 == 99:
            await asyncio.sleep(0)
    await core.durable(last)


async def journal_workload(url: str, resting: int, fills: int, tail: int) -> dict[str, float]:
    genesis = dev_genesis(Keys())
    journal = Journal.open(url)
    core = Core(genesis, journal)
    batcher = Batcher(core, journal, None, DEV.max_batch_txs, post=False)
    core.attach(asyncio.get_running_loop())
    journal.start()
    tx = OraclePrice(0, Seconds(core.now), ())
    core.execute(Kind.ORACLE, encode_oracle(tx, PRICE), (tx, PRICE))
    for i, a in enumerate(ACCOUNTS):
        core.execute(Kind.DEPOSIT, encode_queue(i, a, 10**15), (i, a, 10**15))
    await place(core, orders(resting, fills, 0))
    figures: dict[str, float] = {"resting": sum(len(a.orders) for a in core.engine.risk.accounts.values()),
                                 "fills": core.counters["fills"]}
    now = max(int(genesis.genesis_time), journal.last_now or 0)
    started = time.perf_counter()
    body = dumps(picture(core, batcher, now, own_state=False))
    figures["in_loop"] = time.perf_counter() - started
    figures["mb"] = len(body) / 1e6
    snapshotter = Snapshotter(core, batcher, journal, every=1)
    started = time.perf_counter()
    if not await snapshotter.take():
        raise RuntimeError("the snapshot was not taken")
    figures["forked_total"] = time.perf_counter() - started
    figures["pause"] = snapshotter.last_pause
    figures["snapshot_seq"] = core.seq
    await place(core, orders(tail, 0, resting + 2 * fills))
    figures["records"] = core.seq
    journal.close()
    return figures


def restart_times(url: str) -> tuple[float, float]:
    genesis = dev_genesis(Keys())
    journal = Journal.open(url)
    started = time.perf_counter()
    full = recover_core(genesis, journal)
    full_s = time.perf_counter() - started
    del full
    started = time.perf_counter()
    core, snapshot = restore_core(genesis, journal, [])
    snap_s = time.perf_counter() - started
    if snapshot is None:
        raise RuntimeError("the snapshot was not used")
    journal.close()
    return full_s, snap_s


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--resting", type=int, default=100_000)
    p.add_argument("--fills", type=int, default=50_000)
    p.add_argument("--tail", type=int, default=10_000)
    p.add_argument("--db", default=None, help="journal URL (default: SQLite in a temporary directory)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = a.db or f"sqlite:///{Path(tmp) / 'journal.db'}"
        f = asyncio.run(journal_workload(url, a.resting, a.fills, a.tail))
        full_s, snap_s = restart_times(url)
    print(f"journal: {int(f['records'])} records; core at the snapshot: {int(f['resting'])} resting orders, "
          f"{int(f['fills'])} fills; snapshot at record {int(f['snapshot_seq'])}, {f['mb']:.1f} MB")
    print(f"snapshot: event loop paused {f['pause'] * 1e3:.1f} ms (fork), stored after {f['forked_total']:.2f} s; "
          f"pickling on the loop instead would pause it {f['in_loop']:.2f} s")
    print(f"restart: full replay {full_s:.2f} s, snapshot + {int(f['records'] - f['snapshot_seq'])} records "
          f"{snap_s:.2f} s ({full_s / snap_s:.1f}x)")


if __name__ == "__main__":
    main()
