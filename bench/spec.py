#!/usr/bin/env python3
"""STF throughput: a 10,000-trade batch through `contracts_spec.stf.apply_batch`.

Prints trades/s with signature checks off (signers and order ids handed over by intake, as
the sequencer does) and on (every order recovered once), each excluding the root, then the root's cost on
top, the witness size per transaction kind, and the compressed data size.

usage: python bench/spec.py [TRADES]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.spec.conftest, below

from contracts_spec import codec, eip712
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, apply_batch
from contracts_spec.types import BatchData
from contracts_spec.witness import make_witness
from sequencer.scenario import BatchBuilder, Keys, dev_genesis

USDC = 1_000_000
ACCOUNTS = 200


def build(n_trades: int) -> tuple[State, BatchBuilder, BatchData, int]:
    keys = Keys("bench-")
    genesis = dev_genesis(keys)
    t0 = genesis.genesis_time
    state = State.from_genesis(genesis)
    setup = BatchBuilder(genesis, keys)
    names = [f"trader-{i}" for i in range(ACCOUNTS)]
    for name in names:
        setup.deposit(name, 10_000_000 * USDC)
    setup.oracle(0, 600_000, t0 + 1)
    setup.oracle(1, 300_000, t0 + 1)
    now = t0 + 30
    setup.apply(state, now)
    state.root()
    state.checkpoint()
    b = BatchBuilder(genesis, keys, bridge=setup.bridge)
    for i in range(n_trades):
        maker, taker = names[(i * 7) % ACCOUNTS], names[(i * 13 + 1) % ACCOUNTS]
        if maker == taker:
            taker = names[(i * 13 + 2) % ACCOUNTS]
        market = i % 2
        price = (600_000 if market == 0 else 300_000) + (i % 21) - 10
        b.match(maker, taker, market, maker_buys=bool(i % 3), price=price, lots=1 + i % 50)
    return state, b, b.data(), now


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    state, b, data, now = build(n)
    env = b.env(now)
    # what intake hands over: every order's signer and id, derived when the order arrived
    signers = {i: so.order.account for i, so in enumerate(data.orders)}
    ids = {i: eip712.order_digest(env.preset, so.order) for i, so in enumerate(data.orders)}

    for label, given, given_ids in (("signatures off", signers, ids), ("signatures on", None, None)):
        runs = []
        for _ in range(3):
            s = state.copy()
            t = time.perf_counter()
            apply_batch(s, data, env, given, given_ids)
            runs.append(time.perf_counter() - t)
        best = min(runs)
        print(f"stf {label:<15}: {n} trades in {best:.3f} s = {n / best:,.0f} trades/s (excluding root)")
    s = state.copy()
    apply_batch(s, data, env, signers, ids)
    t = time.perf_counter()
    s.root()
    root_s = time.perf_counter() - t
    print(f"root after batch   : {len(s.dirty) or 'all'} dirty records flushed in {root_s:.3f} s ({len(s.tree)} leaves)")

    payload = codec.encode_batch_data(data)
    print(f"batch data         : {len(payload):,} bytes compressed, {len(payload) / n:.1f} bytes/trade")

    # witness sizes: one of each kind from a small mixed batch
    from tests.spec.conftest import World  # the rule-table world: every kind in a few lines

    w = World()
    w.b.match("dave", "carol", 0, maker_buys=False, price=600_000, lots=5_000)
    w.b.match("dave", "carol", 1, maker_buys=False, price=300_000, lots=100)
    w.b.oracle(0, 570_000, w.now - 5)
    w.b.liquidate("carol", 0, 5_000, 570_000)
    w.b.withdraw("bob", 1_000_000, 0)
    w.b.deposit("erin", 5_000_000)
    w.b.cancel("dave", 0)
    w.b.cancel_all("dave", 10)
    w.b.forced_withdraw("alice", 1_000)
    orders = BatchOrders(w.b.orders, w.genesis.preset)
    sizes: dict[str, list[int]] = {}
    from contracts_spec.stf import process_tx

    for tx in w.b.txs:
        step = make_witness(w.state, tx, orders, w.b.env(w.now))
        sizes.setdefault(type(tx).__name__, []).append(len(step.witness))
        process_tx(w.state, tx, orders, w.b.env(w.now))
    print("witness bytes      : " + ", ".join(f"{k} {max(v):,}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
