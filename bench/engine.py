#!/usr/bin/env python3
"""Replay a workload (the JSON lines of ../shared/bench/workload.py) through the engine.

Risk checks on, spec transactions emitted. Requests are built before the clock starts, as
intake would hand them over (orders unsigned: signatures belong to intake, never to the
matching loop; ids are unique 32-byte values), then frozen out of the garbage collector
(gc.freeze): ~700,000 pre-built request objects stand in for a network buffer a service would
never hold, and the floor's own input (dicts of plain values) is untracked by the collector
anyway. The emitted transactions are handed over every DRAIN operations, as a batcher takes
them. The timed loop covers every operation, deposits and oracle updates (with their
liquidation scans) included; N counts place and cancel operations only, as the floor does,
so the two ops/s compare.

usage: python bench/engine.py OPS.jsonl [--profile]
prints: engine: N ops, F fills, S s, X ops/s
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import sys
import time
from typing import Any

from contracts_spec.params import BTC_USD, ETH_USD
from contracts_spec.types import Cancel, Order, SignedOrder, TimeInForce
from sequencer.engine import Engine, Fill, Stp

MARKETS = (BTC_USD, ETH_USD)
TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "POST_ONLY": TimeInForce.POST_ONLY}
NO_SIGNATURE = bytes(65)
DRAIN = 256  # operations between hand-overs of the emitted transactions


def address(n: int) -> bytes:
    return b"\xac" + n.to_bytes(19, "big")


def order_id(n: int) -> bytes:
    return b"\x1d" + n.to_bytes(31, "big")


def prepare(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Turn workload lines into engine calls: (kind, args...)."""
    addresses: dict[int, bytes] = {}
    owner: dict[int, bytes] = {}
    calls: list[tuple[Any, ...]] = []
    clock = 1
    for op in lines:
        kind = op["op"]
        if kind == "place":
            acct = addresses.get(op["account"]) or addresses.setdefault(op["account"], address(op["account"]))
            owner[op["id"]] = acct
            order = Order(acct, op["market"], op["side"] == "buy", op["price"], op["size"], TIF[op["tif"]],
                          False, 0, op["id"], 0)  # type: ignore[arg-type]
            calls.append(("place", SignedOrder(order, NO_SIGNATURE), order_id(op["id"]), Stp.EXPIRE_MAKER, clock))
        elif kind == "cancel":
            acct = owner.get(op["id"], address(0))
            oid = order_id(op["id"])
            calls.append(("cancel", acct, oid, Cancel(acct, oid, NO_SIGNATURE)))
        elif kind == "deposit":
            acct = addresses.setdefault(op["account"], address(op["account"]))
            calls.append(("deposit", acct, op["amount"]))
        elif kind == "oracle":
            clock += 1  # one second per oracle update: prices stay fresh, times increase
            calls.append(("oracle", op["market"], op["price"], clock))
    return calls


PLACE, CANCEL, DEPOSIT, ORACLE = range(4)


def run(calls: list[tuple[Any, ...]]) -> tuple[int, int, float, Engine]:
    """Replay the calls; the output is handed over every DRAIN calls, as a batcher would take it."""
    engine = Engine(MARKETS)
    kinds = {"place": PLACE, "cancel": CANCEL, "deposit": DEPOSIT, "oracle": ORACLE}
    work = [(kinds[c[0]], *c[1:], None, None)[:5] for c in calls]  # (kind, a, b, c, d)
    n = sum(1 for c in calls if c[0] in ("place", "cancel"))
    fills = 0
    place, cancel, deposit, set_oracle, take = (
        engine.place, engine.cancel, engine.deposit, engine.set_oracle, engine.take,
    )
    gc.collect()
    gc.freeze()  # the pre-built requests: see the module docstring
    t = time.perf_counter()
    for start in range(0, len(work), DRAIN):
        for kind, a, b, c, d in work[start:start + DRAIN]:
            if kind == PLACE:
                place(a, b, c, d)
            elif kind == CANCEL:
                cancel(a, b, c)
            elif kind == DEPOSIT:
                deposit(a, b)
            else:
                set_oracle(a, b, c)
        fills += sum(1 for e in take() if type(e) is Fill)
    secs = time.perf_counter() - t
    gc.unfreeze()
    return n, fills, secs, engine


def main() -> None:
    with open(sys.argv[1]) as f:
        calls = prepare([json.loads(line) for line in f])
    if "--profile" in sys.argv[2:]:
        profiler = cProfile.Profile()
        profiler.enable()
        run(calls)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)
        return
    n, fills, secs, _ = run(calls)
    print(f"engine: {n} ops, {fills} fills, {secs:.3f} s, {n / secs:,.0f} ops/s")


if __name__ == "__main__":
    main()
