"""Portable test vectors: pre-root + witness + transaction -> post-root or a named error.

`RAMPART_WRITE_VECTORS=1 pytest tests/spec/test_vectors.py` (re)writes tests/vectors/*.json
from the valid demo flow and the rule table; every run checks the committed vectors still
hold, so another implementation of the spec can be checked against the same files.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import pytest

from contracts_spec import codec, errors
from contracts_spec.params import PRESETS
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, MemoryBridge, process_tx
from contracts_spec.types import DepositEntry, ForcedEntry, Tx
from contracts_spec.witness import execute_one_step, make_witness
from tests.spec.conftest import World
from tests.spec.test_stf import CASES

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors"


def vector(name: str, state: State, tx: Tx, w: World) -> dict[str, Any]:
    orders = BatchOrders(w.b.orders, w.genesis.preset)
    env = w.b.env(w.now)
    pre_root = state.root()
    step = make_witness(state, tx, orders, env)
    post_root = None
    if step.error is None:
        process_tx(state, tx, orders, env)
        post_root = "0x" + state.root().hex()
    refs = (getattr(tx, "maker", None), getattr(tx, "taker", None))
    used = {i: w.b.orders[i] for i in refs if i is not None and i < len(w.b.orders)}
    return {
        "name": name,
        "preset": w.genesis.preset.name,
        "now": w.now,
        "pre_root": "0x" + pre_root.hex(),
        "witness": "0x" + step.witness.hex(),
        "tx": "0x" + codec.encode_tx(tx).hex(),
        "orders": {str(i): "0x" + codec.encode_signed_order(so).hex() for i, so in used.items()},
        "bridge": {
            "deposits": [["0x" + d.account.hex(), d.amount] for d in w.b.bridge.deposits],
            "forced": [["0x" + f.account.hex(), f.amount] for f in w.b.bridge.forced_requests],
        },
        "post_root": post_root,
        "error": type(step.error).__name__ if step.error else None,
    }


def generate() -> list[dict[str, Any]]:
    out = []
    w = World()
    w.b.match("dave", "carol", 0, maker_buys=False, price=600_000, lots=5_000)
    w.b.oracle(0, 570_000, w.now - 5)
    w.b.liquidate("carol", 0, 5_000, 570_000)
    w.b.withdraw("bob", 1_000_000, 0)
    w.b.deposit("erin", 5_000_000)
    for i, tx in enumerate(w.b.txs):
        out.append(vector(f"valid-{i}-{type(tx).__name__.lower()}", w.state, tx, w))
    for name, build, _error in CASES:
        w = World()
        build(w)
        state = w.state
        orders = BatchOrders(w.b.orders, w.genesis.preset)
        for tx in w.b.txs[:-1]:
            process_tx(state, tx, orders, w.b.env(w.now))
        out.append(vector(f"invalid-{name}", state, w.b.txs[-1], w))
    return out


def run_vector(v: dict[str, Any]) -> tuple[str | None, str | None]:
    """Execute a vector from its JSON alone; return (post_root, error name)."""
    h = bytes.fromhex
    bridge = MemoryBridge(
        [DepositEntry(h(a[2:]), n) for a, n in v["bridge"]["deposits"]],  # type: ignore[arg-type]
        [ForcedEntry(h(a[2:]), n) for a, n in v["bridge"]["forced"]],  # type: ignore[arg-type]
    )
    orders = {int(i): codec.decode_signed_order(h(o[2:])) for i, o in v["orders"].items()}
    try:
        post = execute_one_step(
            PRESETS[v["preset"]], h(v["pre_root"][2:]), h(v["witness"][2:]),
            codec.decode_tx(h(v["tx"][2:])), orders, bridge, v["now"],
        )
    except errors.InvalidTransaction as exc:
        return None, type(exc).__name__
    return "0x" + post.hex(), None


def committed() -> list[pathlib.Path]:
    return sorted(VECTORS.glob("*.json"))


@pytest.mark.skipif(not os.environ.get("RAMPART_WRITE_VECTORS"), reason="set RAMPART_WRITE_VECTORS=1 to rewrite")
def test_write_vectors() -> None:
    VECTORS.mkdir(exist_ok=True)
    for old in committed():
        old.unlink()
    for v in generate():
        (VECTORS / f"{v['name']}.json").write_text(json.dumps(v, indent=1) + "\n")


def test_generated_vectors_execute_from_json_alone() -> None:
    for v in generate():
        assert run_vector(json.loads(json.dumps(v))) == (v["post_root"], v["error"]), v["name"]


@pytest.mark.parametrize("path", committed(), ids=lambda p: p.stem)
def test_committed_vector(path: pathlib.Path) -> None:
    v = json.loads(path.read_text())
    assert run_vector(v) == (v["post_root"], v["error"])


def test_vectors_are_committed() -> None:
    assert len(committed()) >= len(CASES), "run RAMPART_WRITE_VECTORS=1 pytest tests/spec/test_vectors.py"
