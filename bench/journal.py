#!/usr/bin/env python3
"""Journal cost per order and the throughput durability costs.

Runs the same pre-built orders (a crossing workload: about half the orders trade) through the
sequencer core three ways: no journal; journaled with group commit (the service's mode: many
in flight, each acknowledged at its commit); and journaled with one commit per order (what
durability costs without grouping). Signatures are not part of it (intake checks them).

usage: python bench/journal.py [--orders N] [--db URL]
prints: one line per mode with orders/s, us/order, commits and records per commit
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from contracts_spec.types import Lots, Order, Seconds, SignedOrder, Ticks, TimeInForce
from sequencer.core import Core, Kind, encode_oracle, encode_place, encode_queue
from sequencer.journal import Journal
from sequencer.scenario import Keys, dev_genesis

PRICE = 500_000


def workload(n: int) -> tuple[list[tuple[SignedOrder, bytes]], list[bytes]]:
    accounts = [bytes([0xAC]) + i.to_bytes(19, "big") for i in range(64)]
    orders = []
    for i in range(n):
        o = Order(accounts[i % 64], 0, i % 2 == 0, Ticks(PRICE + (i * 7919) % 41 - 20), Lots(1 + i % 5),
                  TimeInForce.GTC, False, Seconds(0), i, 0)
        orders.append((SignedOrder(o, bytes(65)), i.to_bytes(32, "big")))
    return orders, accounts


def fresh_core(journal: Journal | None, accounts: list[bytes]) -> Core:
    genesis = dev_genesis(Keys())
    core = Core(genesis, journal)
    from contracts_spec.types import OraclePrice

    tx = OraclePrice(0, genesis.genesis_time, ())
    core.execute(Kind.ORACLE, encode_oracle(tx, PRICE), (tx, PRICE), now=genesis.genesis_time)
    for i, a in enumerate(accounts):
        core.execute(Kind.DEPOSIT, encode_queue(i, a, 10**12), (i, a, 10**12), now=genesis.genesis_time)
    return core


def run_bare(orders: list[tuple[SignedOrder, bytes]], accounts: list[bytes]) -> float:
    core = fresh_core(None, accounts)
    start = time.perf_counter()
    for so, oid in orders:
        core.execute(Kind.PLACE, encode_place(so, oid, 0, False), (so, oid, 0, False), now=core.now)
    return time.perf_counter() - start


async def run_journaled(orders: list[tuple[SignedOrder, bytes]], accounts: list[bytes], url: str,
                        per_order_commit: bool) -> tuple[float, Journal]:
    journal = Journal.open(url)
    core = fresh_core(journal, accounts)
    loop = asyncio.get_running_loop()
    core.attach(loop)
    journal.start()
    start = time.perf_counter()
    if per_order_commit:
        for so, oid in orders:
            out = core.execute(Kind.PLACE, encode_place(so, oid, 0, False), (so, oid, 0, False))
            await core.durable(out.seq)
    else:
        last = 0
        for i, (so, oid) in enumerate(orders):
            last = core.execute(Kind.PLACE, encode_place(so, oid, 0, False), (so, oid, 0, False)).seq
            if i % 100 == 99:
                await asyncio.sleep(0)  # requests arrive in bursts; the writer commits meanwhile
        await core.durable(last)
    elapsed = time.perf_counter() - start
    journal.close()
    return elapsed, journal


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--orders", type=int, default=50_000)
    p.add_argument("--db", help="journal URL (default: a fresh SQLite file, WAL, synchronous=FULL)")
    a = p.parse_args()
    orders, accounts = workload(a.orders)
    with tempfile.TemporaryDirectory() as tmp:
        bare = run_bare(orders, accounts)
        url = a.db or f"sqlite:///{Path(tmp) / 'grouped.db'}"
        grouped, jg = asyncio.run(run_journaled(orders, accounts, url, False))
        few = orders[: min(len(orders), 2_000)]
        url1 = a.db or f"sqlite:///{Path(tmp) / 'single.db'}"
        single, js = asyncio.run(run_journaled(few, accounts, url1, True))
    n = len(orders)
    print(f"no journal:           {n / bare:10,.0f} orders/s  {bare / n * 1e6:6.1f} us/order")
    print(f"journal, group commit:{n / grouped:10,.0f} orders/s  {grouped / n * 1e6:6.1f} us/order  "
          f"{jg.commits} commits, {jg.committed / max(jg.commits, 1):.0f} records/commit")
    print(f"journal cost:         {(grouped - bare) / n * 1e6:6.1f} us/order; throughput lost to durability "
          f"{100 * (1 - bare / grouped):.0f}%")
    print(f"journal, commit each: {len(few) / single:10,.0f} orders/s  {single / len(few) * 1e6:6.1f} us/order "
          f"({len(few)} orders, one commit and fsync each)")


if __name__ == "__main__":
    main()
