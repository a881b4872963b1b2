#!/usr/bin/env python3
"""Verifier figures.

1. Replay speed in trades/s on one batch of fresh orders (two signatures to recover per trade,
   the worst case), in this process: where a verifier's time goes, against the sequencer's
   per-batch work on the same batch — the spec's `apply_batch` with the signers and ids intake
   already derived, plus the root; the batcher's whole per-batch work (plus encoding, list roots,
   globals proof); and that plus the signature checks intake made on the same orders. The
   verifier's replay is everything the node does with downloaded data: decode, order ids and
   signers (recovered inline or in a pool, checked together for traders whose keys it learned, or
   remembered from earlier batches), apply_batch, root,
   header. Then what a checkpoint costs to save and restore. The figure the issue asks for —
   a running verifier against the running sequencer's sustained batch production, with the
   node's pipeline (the next batch's signatures recovered while this one executes) — is
   bench/sustained.py's; these columns only break it down.
2. Over HTTP on the dev preset (a base layer in this process, SQLite): the wall time from a bad
   batch's posting to the node's game opening, and to its resolution with the bond claimed,
   the lying sequencer defending with the shared player as fast as it can.

usage: python bench/verifier.py [TRADES] [GAME_TRADES]    (from the repository root; GAME_TRADES 0
skips the game)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.*

from contracts_spec import codec, eip712, witness  # noqa: E402
from contracts_spec.crypto import keccak, recover_address  # noqa: E402
from contracts_spec.dispute import Seat  # noqa: E402
from contracts_spec.merkle import list_root  # noqa: E402
from contracts_spec.state import State  # noqa: E402
from contracts_spec.stf import BatchOrders, Env, apply_batch, process_tx  # noqa: E402
from contracts_spec.types import Address, Atoms, BatchData, BatchHeader, Hash32, Seconds  # noqa: E402
from sequencer.scenario import BatchBuilder, Keys, dev_genesis  # noqa: E402
from verifier.replay import decode_body, judge_batch  # noqa: E402
from verifier.signers import Signers  # noqa: E402

USDC = 1_000_000
ACCOUNTS = 200
NATIVE = 10**18
CATCH_UP_BATCHES = 10


def trades(b: BatchBuilder, names: list[str], n: int, salt: int = 0) -> None:
    for i in range(n):
        maker, taker = names[(i * 7 + salt) % len(names)], names[(i * 13 + 1 + salt) % len(names)]
        if maker == taker:
            taker = names[(i * 13 + 2 + salt) % len(names)]
        market = i % 2
        price = (600_000 if market == 0 else 300_000) + (i % 21) - 10
        b.match(maker, taker, market, maker_buys=bool(i % 3), price=price, lots=1 + i % 50)


def header_for(pre: State, body: BatchData, env: Env, fault_at: int | None = None) -> tuple[BatchHeader, State]:
    """Execute like the sequencer does and build the header (a lie after `fault_at`, if given)."""
    state = pre.copy()
    prev = state.root()
    orders = BatchOrders(body.orders, env.preset)
    for i, tx in enumerate(body.txs):
        process_tx(state, tx, orders, env)
        if i == fault_at:
            lie(state)
    data = codec.encode_batch_data(body)
    g = state.globals()
    return BatchHeader(
        index=0, prev_root=prev, post_root=state.root(), tx_count=len(body.txs),
        tx_root=list_root([codec.tx_hash(t) for t in body.txs]), data_hash=keccak(data),
        deposits_consumed=g.deposits_consumed, forced_consumed=g.forced_consumed,
        withdrawal_root=witness.globals_withdrawal_root(g),
        orders_root=list_root([codec.signed_order_hash(o) for o in body.orders]), time=env.now,
    ), state


def lie(state: State) -> None:
    from contracts_spec.types import FEE_ACCOUNT

    acct = state.account(FEE_ACCOUNT)
    state.set_account(FEE_ACCOUNT, replace(acct, collateral=Atoms(acct.collateral + 1)))


def best(fn, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        times.append(fn())
    return min(times)


def replay_speed(n: int) -> None:
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
    setup.apply(state, t0 + 30)
    state.root()
    state.checkpoint()
    b = BatchBuilder(genesis, keys, bridge=setup.bridge)
    trades(b, names, n)
    body = b.data()
    env = b.env(t0 + 30)
    data = codec.encode_batch_data(body)
    header, _ = header_for(state, body, env)
    intake_signers = {i: so.order.account for i, so in enumerate(body.orders)}
    intake_ids = BatchOrders(body.orders, genesis.preset)
    ids = {i: intake_ids.order_id(i) for i in range(len(body.orders))}

    def sequencer_stf() -> float:
        s = state.copy()
        t = time.perf_counter()
        apply_batch(s, body, env, intake_signers, ids)
        s.root()
        return time.perf_counter() - t

    def sequencer_batcher() -> float:
        s = state.copy()
        t = time.perf_counter()
        apply_batch(s, body, env, intake_signers, ids)
        s.root()
        codec.encode_batch_data(body)
        list_root([codec.tx_hash(tx) for tx in body.txs])
        list_root([codec.signed_order_hash(o) for o in body.orders])
        witness.prove_globals(s)
        return time.perf_counter() - t

    def verifier(signers: Signers) -> float:
        s = state.copy()
        t = time.perf_counter()
        got = decode_body(data, genesis.preset.max_batch_txs)
        i, sg = signers.for_batch(got.orders)
        verdict = judge_batch(s, header, got, env, i, sg)
        elapsed = time.perf_counter() - t
        if not verdict.valid:
            raise SystemExit(f"bench batch judged invalid: {verdict}")
        return elapsed

    cpus = os.cpu_count() or 1
    inline = Signers(genesis.preset, workers=1)
    pooled = Signers(genesis.preset, workers=cpus, parallel_orders=1, cache_size=0)
    warm = Signers(genesis.preset, workers=1)
    warm.for_batch(body.orders)  # every order seen in an earlier batch (resting orders)
    def recover_each() -> None:  # what intake does, and a verifier for accounts it has not seen
        for so in body.orders:
            recover_address(eip712.order_digest(genesis.preset, so.order), so.signature)

    recover = best(lambda: _timed(recover_each))
    known = best(lambda: _timed(lambda: Signers(genesis.preset, workers=1).for_batch(body.orders)))
    batcher = best(sequencer_batcher)
    rows = [
        ("sequencer: apply_batch + root (stand-in)", best(sequencer_stf)),
        ("sequencer: batcher work per batch", batcher),
        ("sequencer: + intake's signature checks", batcher + recover),
        ("verifier replay, signers inline", best(lambda: verifier(Signers(genesis.preset, workers=1)))),
        (f"verifier replay, signers in {cpus} processes", best(lambda: verifier(pooled))),
        ("verifier replay, orders seen before", best(lambda: verifier(warm))),
    ]
    pooled.close()
    inline.close()
    stand_in = n / rows[0][1]
    print(f"replay of one batch of {n:,} trades ({len(body.orders):,} fresh signed orders, "
          f"{len(data):,} bytes), best of 3, {cpus} CPUs:")
    for label, seconds in rows:
        rate = n / seconds
        print(f"  {label:<46} {seconds:7.3f} s  {rate:>9,.0f} trades/s  {rate / stand_in:5.2f}x stand-in")
    print(f"  (of which order ids + signers inline: {known:.3f} s, {known / len(body.orders) * 1e6:.0f} us per "
          f"order, the traders' keys known from earlier batches and their orders checked together; recovering "
          f"each, as intake does: {recover / len(body.orders) * 1e6:.0f} us per order. A running node derives the next "
          f"batch's in its pool while it executes this one: bench/sustained.py times that against the sequencer)")
    checkpoint(state, body, env, intake_signers, ids, n / rows[3][1])


def checkpoint(state: State, body: BatchData, env: Env, signers: Mapping[int, Address], ids: Mapping[int, Hash32],
               replay_rate: float) -> None:
    """What a restart costs: a checkpoint of the state after the batch, against replaying it."""
    from verifier.snapshot import decode_state, encode_state

    after = state.copy()
    apply_batch(after, body, env, signers, ids)
    root = after.root()
    save = best(lambda: _timed(lambda: encode_state(after)))
    blob = encode_state(after)
    load = best(lambda: _timed(lambda: decode_state([blob], root)))
    print(f"checkpoint of the state after it: {len(after.records):,} records, {len(blob):,} bytes; "
          f"save {save:.3f} s, restore (decode + tree + root check) {load:.3f} s")
    print(f"  restoring costs what replaying {load * replay_rate:,.0f} trades would; a restart then replays "
          f"at most checkpoint_every batches (default 16) from the base layer's data")


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def game_latency(n: int) -> None:
    """Posting -> opening -> resolution over HTTP on the dev preset."""
    from contracts_spec.params import DEV
    from tests.l1.conftest import T0, Node, make_settings
    from verifier.keys import write_key
    from verifier.node import Node as Verifier
    from verifier.player import Player
    from verifier.settings import Settings
    from verifier.trace import Trace

    keys = Keys("bench-")
    genesis = dev_genesis(keys, genesis_time=T0)
    with tempfile.TemporaryDirectory() as tmp:
        l1 = Node(make_settings((f"sqlite:///{tmp}/l1.db", None)), genesis).start()
        try:
            seq, vera = l1.client(keys["sequencer"]), l1.client(keys["vera"])
            seq.faucet(native=1_000 * NATIVE)
            seq.register_sequencer(DEV.sequencer_stake_min)
            vera.faucet(native=10 * NATIVE)
            write_key(Path(tmp) / "vera.key", keys["vera"])
            node = Verifier(Settings(l1_url=l1.url, db=f"sqlite:///{tmp}/vera.db", key_file=Path(tmp) / "vera.key"),
                            keys["vera"])
            # an honest first batch: deposits and prices
            b = BatchBuilder(genesis, keys)
            names = [f"trader-{i}" for i in range(50)]
            funder = l1.client(keys["funder"])
            funder.faucet(usdc=len(names) * 1_000_000 * USDC)
            for name in names:
                funder.deposit(1_000_000 * USDC, account=keys.addr(name))
                b.deposit(name, 1_000_000 * USDC)
            now = seq.now()
            b.oracle(0, 600_000, now - 1)
            b.oracle(1, 300_000, now - 1)
            state = State.from_genesis(genesis)
            body = b.data()
            env = Env(genesis.preset, Seconds(now), b.bridge)
            h, state = header_for(state, body, env)
            seq.post_batch(h, codec.encode_batch_data(body), witness.prove_globals(state))
            node.sync()
            # catch-up: honest batches of n trades, then a fresh node follows them from zero
            for k in range(CATCH_UP_BATCHES):
                seq.increase_time(1)
                b.reset()
                trades(b, names, n, salt=100 + k)
                body = b.data()
                env = Env(genesis.preset, Seconds(seq.now()), b.bridge)
                h, after = header_for(state, body, env)
                seq.post_batch(replace(h, index=1 + k), codec.encode_batch_data(body), witness.prove_globals(after))
                state = after
            write_key(Path(tmp) / "victor.key", keys["victor"])
            fresh = Verifier(Settings(l1_url=l1.url, db=f"sqlite:///{tmp}/victor.db",
                                      key_file=Path(tmp) / "victor.key"), keys["victor"])
            t = time.perf_counter()
            caught = fresh.sync()
            elapsed = time.perf_counter() - t
            print(f"catch-up of a fresh node over HTTP: {caught.verified} batches, {caught.trades:,} trades "
                  f"in {elapsed:.3f} s = {caught.trades / elapsed:,.0f} trades/s (download, decode, verify, "
                  f"database, checkpoints)")
            fresh.close()
            node.sync()
            # the lie: n trades, one wrong fee in the middle
            seq.increase_time(2)
            b.reset()
            trades(b, names, n, salt=3)
            body = b.data()
            now = seq.now()
            env = Env(genesis.preset, Seconds(now), b.bridge)
            bad, bad_state = header_for(state, body, env, fault_at=len(body.txs) // 2)
            bad = replace(bad, index=1 + CATCH_UP_BATCHES)
            pre = state

            def truth(batch_id: int) -> Trace:
                fault = len(body.txs) // 2
                return Trace(pre.copy(), bad, body, env, lambda i, s: lie(s) if i == fault else None)

            defender = Player(seq, f"sqlite:///{tmp}/seq.db", Seat.SEQUENCER, truth)
            data = codec.encode_batch_data(body)
            t_post = time.perf_counter()
            bid = int(seq.post_batch(bad, data, witness.prove_globals(bad_state))["result"]["batch_id"])
            t_posted = time.perf_counter()
            while not node.sync().opened:
                pass
            t_open = time.perf_counter()
            (game,) = seq.games(batch_id=bid)
            opened_chain = seq.game(game.game_id).game.turn_started
            while seq.game(game.game_id).status == "open" or node.client.bonds(str(node.address))["claimable"]:
                defender.tick()
                node.sync()
            t_done = time.perf_counter()
            info = seq.game(game.game_id)
            print(f"game over HTTP on the dev preset, a lie in the middle of {n:,} trades "
                  f"({len(data):,} bytes of data):")
            print(f"  posting (one base-layer transaction)            {t_posted - t_post:7.3f} s")
            print(f"  posted -> game opened by the node               {t_open - t_posted:7.3f} s")
            print(f"  opened -> resolved and the bond claimed         {t_done - t_open:7.3f} s  "
                  f"({info.game.moves} moves, {info.status}; chain time used "
                  f"{seq.now() - opened_chain} s of the {DEV.game_clock} s clocks)")
            print(f"  posted -> resolved                              {t_done - t_posted:7.3f} s")
            defender.close()
            node.close()
        finally:
            l1.stop()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    game_n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    replay_speed(n)
    if game_n > 0:
        print()
        game_latency(game_n)


if __name__ == "__main__":
    main()
