#!/usr/bin/env python3
"""A verifier's checkpoint: a full one (every record) against a delta (one batch's writes).

The state grows by an order-status record with every filled order, so a full checkpoint costs
more as history grows; a delta costs what the batches since the last checkpoint wrote. Prints,
at 100,000, 300,000 and 1,000,000 records, the time and size of a full checkpoint and of the
delta of one batch of 6,600 new order records (3,300 trades).

usage: python bench/checkpoint.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before bench/ shadows verifier

from contracts_spec.state import State  # noqa: E402
from contracts_spec.types import Lots, OrderStatus  # noqa: E402
from verifier.snapshot import encode_delta, encode_state  # noqa: E402

FILLED = OrderStatus(filled=Lots(5))


def add(state: State, n: int) -> frozenset[tuple[int, bytes]]:
    """n new filled-order records, flushed; the slots they took."""
    for _ in range(n):
        state.set_order_status(os.urandom(20), os.urandom(32), FILLED)
    written = frozenset(state.dirty)
    state.root()
    state.checkpoint()
    return written


def main() -> None:
    state = State()
    for total in (100_000, 300_000, 1_000_000):
        add(state, total - len(state.records))
        t = time.perf_counter()
        full = encode_state(state)
        full_s = time.perf_counter() - t
        changed = add(state, 6_600)
        t = time.perf_counter()
        delta = encode_delta(state, changed, base=1)
        delta_s = time.perf_counter() - t
        print(f"{len(state.records):>9,} records: full {full_s:.2f} s ({len(full):,} bytes); one batch's delta "
              f"{delta_s * 1e3:.0f} ms ({len(delta):,} bytes)")


if __name__ == "__main__":
    main()
