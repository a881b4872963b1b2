#!/usr/bin/env python3
"""Base-layer figures: batch-posting throughput with ~1 MB batches over HTTP (a real `rampart-l1`
process on SQLite, or the URL in RAMPART_L1_DB), and one-step verification time and witness
size per transaction kind, worst case, as the chain runs them (proofs checked, STF on witness).

usage: python bench/l1.py [BATCHES]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx

from contracts_spec import codec, dispute, witness
from contracts_spec.crypto import keccak
from contracts_spec.merkle import list_proof, list_root
from contracts_spec.params import BTC_USD, DEV, genesis_to_json, make_genesis
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, process_tx
from contracts_spec.types import (
    BatchData,
    BatchHeader,
    Genesis,
    Order,
    Seconds,
    SignedOrder,
    TimeInForce,
    Trade,
    Tx,
)
from l1_mock.client import L1Client
from sequencer.scenario import ORACLE_NAMES, BatchBuilder, Keys

USDC = 1_000_000
T0 = 1_700_000_000
FILLER_ACCOUNTS = 100_000


def genesis_for(keys: Keys, markets: int = 4) -> Genesis:
    params = tuple(replace(BTC_USD, market_id=i, symbol=f"M{i}-USD") for i in range(markets))
    return make_genesis(
        DEV,
        oracle_signers=tuple(keys.addr(n) for n in ORACLE_NAMES), oracle_quorum=2,
        sequencer=keys.addr("sequencer"), genesis_time=T0, markets=params,
    )


# --- posting throughput ---------------------------------------------------------------------


def big_batch(seed: int, target: int = 1_000_000) -> BatchData:
    """~target bytes of compressed data: orders with incompressible signatures, trades between them.
    Posting checks decoding and roots, not signatures, so random signatures are fine here."""
    account = bytes(19) + b"\x09"
    orders, txs = [], []
    rnd = os.urandom
    size = 0
    i = 0
    while size < target:
        for side in (True, False):
            o = Order(account, 0, side, 600_000 + i, 10, TimeInForce.GTC, False, 0, seed * 10**6 + i, i)  # type: ignore[arg-type]
            orders.append(SignedOrder(o, rnd(64) + b"\x1b"))
        txs.append(Trade(len(orders) - 2, len(orders) - 1, 10, 600_000 + i))  # type: ignore[arg-type]
        i += 1
        size += 2 * 66 + 40  # estimate; checked below
        if size >= target:
            data = codec.encode_batch_data(BatchData(tuple(orders), tuple(txs)))
            size = len(data)
    return BatchData(tuple(orders), tuple(txs))


def bench_posting(n_batches: int) -> None:
    keys = Keys("bench-l1-")
    genesis = genesis_for(keys, 2)
    state = State.from_genesis(genesis)
    root, gproof = state.root(), witness.prove_globals(state)
    g = state.globals()
    tmp = Path(tempfile.mkdtemp())
    (tmp / "genesis.json").write_text(genesis_to_json(genesis))
    port = 18545 + os.getpid() % 1000
    db = os.environ.get("RAMPART_L1_DB", f"sqlite:///{tmp / 'l1.db'}")
    proc = subprocess.Popen([sys.executable, "-m", "l1_mock.cli", "--genesis", str(tmp / "genesis.json"),
                             "--db", db, "--port", str(port), "--manual-time"])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(url + "/info", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        seq = L1Client(url, keys["sequencer"])
        seq.faucet(native=10**21)
        seq.register_sequencer(genesis.preset.sequencer_stake_min)
        print(f"building {n_batches} batches of ~1 MB ...", flush=True)
        batches = []
        for k in range(n_batches):
            body = big_batch(k)
            data = codec.encode_batch_data(body)
            header = BatchHeader(k, root, root, len(body.txs), list_root([codec.tx_hash(t) for t in body.txs]),
                                 keccak(data), g.deposits_consumed, g.forced_consumed,
                                 witness.globals_withdrawal_root(g),
                                 list_root([codec.signed_order_hash(o) for o in body.orders]), Seconds(T0))
            batches.append((header, data))
        t = time.perf_counter()
        t_verify = 0.0
        for header, data in batches:
            t1 = time.perf_counter()
            dispute.verify_batch(genesis.preset, header, data, gproof,
                                 dispute.Parent(header.index - 1, root, T0), T0, lambda i: None, lambda i: None)
            t_verify += time.perf_counter() - t1
        t_verify_each = t_verify / n_batches
        t = time.perf_counter()
        for header, data in batches:
            seq.post_batch(header, data, gproof)
        dt = time.perf_counter() - t
        mb = sum(len(d) for _, d in batches) / 1e6
        txs = sum(h.tx_count for h, _ in batches)
        print(f"posting            : {n_batches / dt:.2f} batches/s, {mb / dt:.2f} MB/s "
              f"({mb / n_batches:.2f} MB, {txs // n_batches:,} txs and {2 * txs // n_batches:,} orders a batch; "
              f"verify_batch alone {t_verify_each * 1e3:.0f} ms a batch)")
        seq.close()
    finally:
        proc.terminate()
        proc.wait(10)


# --- one-step verification ------------------------------------------------------------------


def bench_steps(reps: int = 50) -> None:
    keys = Keys("bench-step-")
    genesis = genesis_for(keys, 4)
    preset = genesis.preset
    state = State.from_genesis(genesis)
    b = BatchBuilder(genesis, keys)
    names = ["alice", "bob", "carol", "dave"]
    for i in range(FILLER_ACCOUNTS):  # a realistic tree depth: proofs grow with log2(leaves)
        b.deposit(f"filler-{i}", USDC)
        if len(b.txs) == 50_000:
            b.apply(state, T0 + 1)
            b.reset()
    for n in names:
        b.deposit(n, (2_000 if n == "carol" else 10_000_000) * USDC)
    for m in range(4):
        b.oracle(m, 600_000, T0 + 1)
    # alice and bob hold positions in all 4 markets (the margin witness holds every one)
    for m in range(4):
        b.match("alice", "bob", m, maker_buys=m % 2 == 0, price=600_000, lots=100)
    b.match("dave", "carol", 0, maker_buys=False, price=600_000, lots=5_000)
    b.apply(state, T0 + 2)
    b.reset()
    b.oracle(0, 570_000, T0 + 20)
    b.apply(state, T0 + 21)
    b.reset()
    state.root()
    state.checkpoint()
    now = T0 + 30
    cases: list[tuple[str, Callable[[], Tx]]] = [
        ("Deposit", lambda: b.deposit("alice", USDC)),
        ("ForcedWithdraw", lambda: b.forced_withdraw("alice", USDC)),
        ("Trade (4 markets each)", lambda: b.match("alice", "bob", 1, maker_buys=True, price=600_000, lots=10)),
        ("Cancel", lambda: b.cancel("alice", b.order("alice", 1, True, 590_000, 5))),
        ("CancelAll", lambda: b.cancel_all("bob", 100)),
        ("OraclePrice", lambda: b.oracle(2, 601_000, T0 + 29)),
        ("FundingTick", lambda: b.funding(0)),
        ("Liquidate", lambda: b.liquidate("carol", 0, 5_000, 570_000)),
        ("Withdraw (4 markets)", lambda: b.withdraw("alice", USDC, 0)),
    ]
    print(f"{'one-step proof':24} {'verify ms (median)':>18} {'witness bytes':>14} {'proof bytes':>12}")
    for name, add in cases:
        tx = add()
        body = b.data()
        idx = body.txs.index(tx)
        orders = BatchOrders(body.orders, preset)
        env = b.env(T0 + 61 if name == "FundingTick" else now)  # dev funding interval: 60 s
        pre = state.copy()
        for earlier in body.txs[:idx]:
            process_tx(pre, earlier, orders, env)
        pre_root = pre.root()
        result = witness.make_witness(pre, tx, orders, env)
        post = pre.copy()
        try:
            process_tx(post, tx, orders, env)
        except Exception:  # noqa: BLE001 - a rejected case still measures the proof
            pass
        order_hashes = [codec.signed_order_hash(o) for o in body.orders]
        named = (tx.maker, tx.taker) if isinstance(tx, Trade) else ()
        proof = dispute.StepProof(
            tx=codec.encode_tx(tx),
            tx_proof=tuple(list_proof([codec.tx_hash(t) for t in body.txs], idx)),
            order_count=len(body.orders),
            orders=tuple(dispute.OrderProof(i, codec.encode_signed_order(body.orders[i]),
                                            tuple(list_proof(order_hashes, i))) for i in named),
            witness=result.witness,
        )
        count = len(body.txs)
        game = dispute.Game(0, b"\x01" * 20, count, idx, idx + 1, pre_root, post.root(), None,
                            dispute.Seat.CHALLENGER, (10, 10), Seconds(env.now), 1, 1)
        header = BatchHeader(0, pre_root, post.root(), count, list_root([codec.tx_hash(t) for t in body.txs]),
                             bytes(32), 0, 0, bytes(32), list_root(order_hashes), env.now)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            outcome = dispute.compute_step_outcome(game, header, proof, b.bridge, preset)
            times.append(time.perf_counter() - t)
        verdict = "ok" if outcome == post.root() else ("rejected" if outcome is None else "MISMATCH")
        proof_bytes = len(proof.tx) + 32 * len(proof.tx_proof) + sum(len(o.order) + 32 * len(o.proof) for o in proof.orders)
        print(f"{name:24} {statistics.median(times) * 1e3:18.2f} {len(result.witness):14,} {proof_bytes:12,}  {verdict}")
        b.reset()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    bench_steps()
    bench_posting(n)


if __name__ == "__main__":
    main()
