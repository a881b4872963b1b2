"""JSON forms of spec values shared by the chain and its client (no database, no HTTP here)."""

from __future__ import annotations

from typing import Any

from contracts_spec.dispute import Game, Seat, Status, StepProof
from contracts_spec.types import Seconds
from l1_mock.envelope import hex0x, unhex


def game_to_json(g: Game) -> dict[str, Any]:
    return {
        "batch": g.batch, "challenger": hex0x(g.challenger), "tx_count": g.tx_count, "lo": g.lo, "hi": g.hi,
        "lo_root": hex0x(g.lo_root), "hi_root": hex0x(g.hi_root),
        "mid_root": None if g.mid_root is None else hex0x(g.mid_root), "turn": int(g.turn),
        "clocks": list(g.clocks), "turn_started": g.turn_started, "challenger_bond": g.challenger_bond,
        "sequencer_bond": g.sequencer_bond, "status": int(g.status), "moves": g.moves,
    }


def game_from_json(d: dict[str, Any]) -> Game:
    return Game(
        batch=d["batch"], challenger=unhex(d["challenger"]), tx_count=d["tx_count"], lo=d["lo"], hi=d["hi"],
        lo_root=unhex(d["lo_root"]), hi_root=unhex(d["hi_root"]),
        mid_root=None if d["mid_root"] is None else unhex(d["mid_root"]), turn=Seat(d["turn"]),
        clocks=(d["clocks"][0], d["clocks"][1]), turn_started=Seconds(d["turn_started"]),
        challenger_bond=d["challenger_bond"], sequencer_bond=d["sequencer_bond"], status=Status(d["status"]),
        moves=d["moves"],
    )


def step_proof_to_args(proof: StepProof) -> dict[str, Any]:
    return {
        "tx": hex0x(proof.tx),
        "tx_proof": [hex0x(h) for h in proof.tx_proof],
        "order_count": proof.order_count,
        "orders": [{"index": o.index, "order": hex0x(o.order), "proof": [hex0x(h) for h in o.proof]}
                   for o in proof.orders],
        "witness": hex0x(proof.witness),
    }

