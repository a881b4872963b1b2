"""The dispute player over HTTP against the real base layer: player against player for lies at the
first, a middle and the last transaction of batches of 1 to 10,000 transactions, honest sequencer
against lying challengers, restarts mid-game, two challengers at once, and silent opponents."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest

from contracts_spec import dispute
from contracts_spec.dispute import Seat
from contracts_spec.params import DEV
from verifier.player import Outcome, Player, Result

if TYPE_CHECKING:
    from tests.verifier.conftest import Arena

BOND = DEV.challenger_bond
BURN = -(-BOND * DEV.bond_burn_ppm // 1_000_000)
WINNINGS = 2 * BOND - BURN  # a winning challenger: its bond back and the sequencer's, less the burn


def _where(n: int) -> list[tuple[int, str, int]]:
    seen: dict[int, str] = {}
    for name, at in (("first", 0), ("middle", n // 2), ("last", n - 1)):
        seen.setdefault(at, name)
    return [(n, name, at) for at, name in seen.items()]


LIES = [case for n in (1, 2, 3, 1_000, 10_000) for case in _where(n)]


def _over(player: Player, game_id: int) -> bool:
    return player.is_done(game_id)


@pytest.mark.parametrize("n,where,at", LIES, ids=[f"{n}-{w}" for n, w, _ in LIES])
def test_lying_sequencer_loses_to_the_truth(arena: Arena, n: int, where: str, at: int) -> None:
    lost: list[Outcome] = []
    bid = arena.post(arena.body(n), fault=arena.lie(at))
    defender = arena.player("sequencer", fault=arena.lie(at), on_outcome=lost.append)
    vera = arena.player("vera")
    native = arena.native("vera")
    gid = vera.challenge(bid)
    arena.drive(defender, vera, until=lambda: _over(vera, gid) and _over(defender, gid))
    k = dispute.compute_depth(n)
    assert arena.moves(gid) == Counter({"reveal": k, "answer": k, "step:challenger": 1})
    out = vera.outcome(gid)
    assert out is not None and out.result == Result.WON and out.credited == WINNINGS
    assert arena.native("vera") == native - BOND + WINNINGS  # claimed
    assert lost == [Outcome(gid, bid, Seat.SEQUENCER, Result.LOST, 0, 0, BURN)]
    assert arena.seq.batch(bid)["status"] == "lost"
