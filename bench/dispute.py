#!/usr/bin/env python3
"""Dispute figures: the time to compute a bisection root in a 10,000-trade batch (worst case:
a fresh replay from a copy of the pre-state; and with verifier.trace's walk and caches along a
game's bisection path), then a whole game over HTTP on the dev preset, from opening to
resolution, player against player and against a silent opponent (time advanced by the admin call).

usage: python bench/dispute.py [TRADES]    (from the repository root)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.verifier.conftest

from contracts_spec import dispute  # noqa: E402
from contracts_spec.dispute import Seat  # noqa: E402
from contracts_spec.params import DEV  # noqa: E402
from contracts_spec.state import State  # noqa: E402
from contracts_spec.stf import BatchOrders, process_tx  # noqa: E402
from contracts_spec.types import BatchData  # noqa: E402
from sequencer.scenario import Keys, dev_genesis  # noqa: E402
from tests.l1.conftest import T0, Node, make_settings  # noqa: E402
from tests.verifier.conftest import Arena  # noqa: E402
from verifier.trace import Trace  # noqa: E402

USDC = 1_000_000
ACCOUNTS = 200


def fund(arena: Arena) -> list[str]:
    """A first batch: deposits for every trader (queued on the chain) and both oracle prices."""
    b, alice = arena.builder, arena.clients["alice"]
    b.reset()
    names = [f"trader-{i}" for i in range(ACCOUNTS)]
    alice.faucet(usdc=ACCOUNTS * 10_000_000 * USDC)
    now = arena.seq.now()
    for name in names:
        alice.deposit(10_000_000 * USDC, account=arena.keys.addr(name))
        b.deposit(name, 10_000_000 * USDC)
    b.oracle(0, 600_000, now - 1)
    b.oracle(1, 300_000, now - 1)
    arena.post(b.data())
    return names


def trades(arena: Arena, names: list[str], n: int) -> BatchData:
    """n trades, each between two freshly signed orders (20,000 signatures for 10,000 trades)."""
    b = arena.builder
    b.reset()
    for i in range(n):
        maker, taker = names[(i * 7) % ACCOUNTS], names[(i * 13 + 1) % ACCOUNTS]
        if maker == taker:
            taker = names[(i * 13 + 2) % ACCOUNTS]
        market = i % 2
        price = (600_000 if market == 0 else 300_000) + (i % 21) - 10
        b.match(maker, taker, market, maker_buys=bool(i % 3), price=price, lots=1 + i % 50)
    return b.data()


def naive_root(pre: State, arena: Arena, bid: int, index: int) -> float:
    """No trace: copy the pre-state, replay `index` transactions, take the root."""
    p = arena.posted[bid]
    t = time.perf_counter()
    state = pre.copy()
    orders = BatchOrders(p.body.orders, DEV)
    for tx in p.body.txs[:index]:
        process_tx(state, tx, orders, p.env)
    state.root()
    return time.perf_counter() - t


def bisection_roots(arena: Arena, bid: int, lie_at: int) -> list[tuple[int, float]]:
    """The honest side's root queries along a game against a lie at `lie_at`, timed one by one."""
    p = arena.posted[bid]
    honest = Trace(p.pre.copy(), p.header, p.body, p.env)
    liar = Trace(p.pre.copy(), p.header, p.body, p.env, arena.lie(lie_at))
    n = len(p.body.txs)
    game = dispute.open_game(bid, b"\xcc" * 20, p.header.prev_root, liar.root_at(n), n, 0, 0, DEV, 1)
    timed: list[tuple[int, float]] = []

    def honest_root(index: int) -> bytes:
        t = time.perf_counter()
        root = honest.root_at(index)
        timed.append((index, time.perf_counter() - t))
        return root

    while dispute.get_phase(game) != dispute.Phase.STEP:
        reveal = dispute.next_move(game, Seat.SEQUENCER, liar.root_at)
        game = dispute.apply_move(game, Seat.SEQUENCER, reveal, 1, DEV)  # type: ignore[arg-type]
        answer = dispute.next_move(game, Seat.CHALLENGER, honest_root)
        game = dispute.apply_move(game, Seat.CHALLENGER, answer, 1, DEV)  # type: ignore[arg-type]
    t = time.perf_counter()
    honest.step_proof(game.lo)
    timed.append((-game.lo, time.perf_counter() - t))  # negative: the step proof at lo
    return timed


def games_on_one_trace(arena: Arena, bid: int, targets: list[int], in_index_order: bool) -> float:
    """Games on one batch heading to different transactions, one trace, one root per game per
    round; visited in index order (as Player.play_once does) or high and low alternately."""
    p = arena.posted[bid]
    trace = Trace(p.pre.copy(), p.header, p.body, p.env)
    n = len(p.body.txs)
    paths = []
    for target in targets:
        lo, hi, path = 0, 1 << dispute.compute_depth(n), []
        while hi - lo > 1:
            mid = (lo + hi) // 2
            path.append(mid)
            lo, hi = (mid, hi) if target >= mid else (lo, mid)
        paths.append(path)
    trace.root_at(n)  # warm: every signature recovered, every transaction run once
    t = time.perf_counter()
    for points in zip(*paths, strict=True):
        ordered = sorted(points)
        if not in_index_order:  # highest, lowest, second highest, second lowest, ...
            ordered = [ordered.pop() if i % 2 == 0 else ordered.pop(0) for i in range(len(ordered))]
        for index in ordered:
            trace.root_at(index)
    return time.perf_counter() - t


def cold_root(arena: Arena, bid: int, index: int, handed_over: bool) -> float:
    """A fresh trace's first root, with each order's signer and id recovered by the trace or
    handed over by a node that already verified them."""
    p = arena.posted[bid]
    signers = ids = None
    if handed_over:
        orders = BatchOrders(p.body.orders, DEV)
        ids = {i: orders.verify(i) for i in range(len(p.body.orders))}
        signers = {i: o.order.account for i, o in enumerate(p.body.orders)}
    trace = Trace(p.pre.copy(), p.header, p.body, p.env, signers=signers, ids=ids)
    t = time.perf_counter()
    trace.root_at(index)
    return time.perf_counter() - t


def whole_game(arena: Arena, bid: int) -> tuple[float, int, int, tuple[int, int]]:
    """Player against player over HTTP; after each tick the chain's time is advanced by the wall
    time the ticks took (in whole seconds, the remainder carried), so the clocks run as on a live
    dev chain. Returns wall seconds, chain seconds, rounds and the clocks left at the end."""
    defender, vera = arena.player("sequencer"), arena.player("vera")
    start_chain = arena.seq.now()
    t = time.perf_counter()
    gid = vera.challenge(bid)
    rounds, owed = 0, 0.0
    while not (vera.is_done(gid) and defender.is_done(gid)):
        for player in (defender, vera):
            tick = time.perf_counter()
            player.tick()
            owed += time.perf_counter() - tick
            if owed >= 1:  # the chain's clock follows the wall clock in whole seconds
                arena.seq.increase_time(int(owed))
                owed -= int(owed)
        rounds += 1
    wall = time.perf_counter() - t
    info = arena.seq.game(gid)
    assert info.status == "challenger_won", info.status
    return wall, arena.seq.now() - start_chain, rounds, info.game.clocks


def silent_game(arena: Arena, bid: int) -> tuple[float, int]:
    """The challenger against a silent sequencer: opening, the clock run out by the admin call,
    resolution and claim. Wall seconds and chain seconds."""
    victor = arena.player("victor")
    start_chain = arena.seq.now()
    t = time.perf_counter()
    gid = victor.challenge(bid)
    victor.tick()
    deadline = arena.seq.game(gid).deadline
    assert deadline is not None
    arena.seq.increase_time(deadline - arena.seq.now() + 1)
    victor.tick()
    assert victor.is_done(gid)
    return time.perf_counter() - t, arena.seq.now() - start_chain


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(make_settings((f"sqlite:///{tmp}/l1.db", None)), dev_genesis(Keys(), genesis_time=T0)).start()
        arena = Arena(node, (f"sqlite:///{tmp}/players.db", None))
        try:
            run(arena, n)
        finally:
            arena.close()
            node.stop()


def run(arena: Arena, n: int) -> None:
    names = fund(arena)
    lie_at = n - 1 - n // 7
    t = time.perf_counter()
    bid = arena.post(trades(arena, names, n), fault=arena.lie(lie_at))
    print(f"batch              : {n} trades, {len(arena.posted[bid].body.orders)} signed orders, "
          f"{ACCOUNTS} accounts; built, executed and posted in {time.perf_counter() - t:.2f} s")
    pre = arena.posted[bid].pre
    t = time.perf_counter()
    pre.copy()
    print(f"pre-state copy     : {time.perf_counter() - t:.3f} s (a trace takes one copy, once per batch)")
    for index in (n // 2, n):
        print(f"naive root at {index:<5}: {naive_root(pre, arena, bid, index):.3f} s "
              "(copy the pre-state, replay, root: each query, no cache)")
    timed = bisection_roots(arena, bid, lie_at)
    roots = [(i, s) for i, s in timed if i >= 0]
    step = [s for i, s in timed if i < 0][0]
    print(f"trace, game path   : {len(roots)} bisection roots in {sum(s for _, s in roots):.3f} s; "
          f"first (cold) {roots[0][1]:.3f} s at {roots[0][0]}, then max {max(s for _, s in roots[1:]):.3f} s, "
          f"median {sorted(s for _, s in roots[1:])[len(roots) // 2 - 1]:.4f} s; step proof {step:.3f} s")
    print("                     per query: " + ", ".join(f"{i}:{s * 1000:.0f}ms" for i, s in roots))
    for handed in (False, True):
        print(f"cold trace root    : {cold_root(arena, bid, n // 2, handed):.3f} s at {n // 2}, signatures "
              + ("handed over by the node" if handed else "recovered by the trace"))
    for targets in ([1, n - 1], [1, n // 3, 2 * n // 3, n - 1]):
        for ordered in (False, True):
            took = games_on_one_trace(arena, bid, targets, ordered)
            print(f"{len(targets)} games, 1 trace : {took:.3f} s for the {len(targets) * dispute.compute_depth(n)} roots of "
                  f"games heading to {targets} (warm trace), visited "
                  + ("in index order per round (as the player does)" if ordered else "high and low alternately"))
    print(f"dev game clock     : {DEV.game_clock} s per side, at least {DEV.clock_extension} s after each move")
    wall, chain, rounds, clocks = whole_game(arena, bid)
    k = dispute.compute_depth(n)
    print(f"whole game (HTTP)  : opening to resolution and claim in {wall:.2f} s wall, {rounds} rounds of ticks, "
          f"{chain} s of chain time (following the wall clock); {k} reveals + {k} answers + 1 step; "
          f"clocks left: sequencer {clocks[0]} s, challenger {clocks[1]} s")
    arena.seq.register_sequencer(DEV.challenger_bond)  # top the stake up after the lost batch
    bid2 = arena.post(arena.body(3), fault=arena.lie(1))
    wall, chain = silent_game(arena, bid2)
    print(f"silent sequencer   : opening to resolution and claim in {wall:.2f} s wall, {chain} s of chain time "
          "(advanced by the admin call)")


if __name__ == "__main__":
    main()
