"""The sequencer defends its own batches: a real sequencer (journal and player progress on SQLite,
or PostgreSQL with RAMPART_TEST_PG) on a real base layer over HTTP, against challengers that lie
(the shared player with a wrong view) or open a game and never play, several games at once, and
a restart of the sequencer in the middle of a game. Clocks move only by the chain's time advance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts_spec import dispute
from contracts_spec.dispute import Seat
from verifier.player import Result

from .conftest import Net, wait_for
from .disputes import BOND, BURN, Challengers, all_posted, biggest, credit, drive, setup_market, trade


@pytest.fixture
def challengers(net: Net, tmp_path: Path) -> Iterator[Challengers]:
    c = Challengers(net, tmp_path)
    try:
        yield c
    finally:
        c.close()


def seq_native(net: Net) -> int:
    with net.l1_client() as c:
        return int(c.account(net.keys.addr("sequencer"))["native"])


def game(net: Net, game_id: int) -> Any:
    with net.l1_client() as c:
        return c.game(game_id)


def batch_status(net: Net, batch_id: int) -> str:
    with net.l1_client() as c:
        return str(c.batch(batch_id)["status"])


def defender_done(net: Net, game_id: int) -> bool:
    """The sequencer's defender reported and claimed the game."""
    assert net.node is not None and net.node.defender is not None
    return net.node.defender.player.is_done(game_id)


def test_defender_beats_a_lying_challenger_and_is_paid(net: Net, trader: Any, challengers: Challengers) -> None:
    setup_market(net)
    trade(net, trader, 12)
    target = biggest(all_posted(net))
    n = target["txCount"]
    assert n >= 8
    mallory_addr = net.keys.addr("mallory")
    mallory = challengers.player("mallory", fault=credit(mallory_addr, n // 2))
    before = {"mallory": challengers.native("mallory"), "sequencer": seq_native(net)}
    gid = mallory.challenge(target["l1BatchId"])
    drive(mallory, until=lambda: mallory.is_done(gid) and defender_done(net, gid), what="the game to end")
    info = game(net, gid)
    assert info.status == "sequencer_won"
    out = mallory.outcome(gid)
    assert out is not None and out.result == Result.LOST
    k = dispute.compute_depth(n)
    assert info.game.moves == 2 * k + 1  # ceil(log2 n) reveals and answers, then the step
    assert challengers.native("mallory") == before["mallory"] - BOND
    # the sequencer's winnings (mallory's bond less the burn) are claimed, its escrow back in its stake
    wait_for(lambda: seq_native(net) == before["sequencer"] + BOND - BURN, "the sequencer's winnings claimed")
    assert net.http.get("/health").json()["games"] == {"won": 1}
    assert batch_status(net, target["l1BatchId"]) == "pending"
    net.advance(net.genesis.preset.challenge_window + 1)
    wait_for(lambda: net.http.get(f"/v1/batches/{target['index']}").json()["status"] == "final", "finality")


def test_a_game_opened_and_abandoned_is_won_on_the_clock(net: Net, trader: Any, challengers: Challengers) -> None:
    setup_market(net)
    trade(net, trader, 4)
    target = biggest(all_posted(net))
    raw = challengers.client("victor")
    gid = raw.open_game(target["l1BatchId"]).game_id
    # the defender answers at once: the turn is the challenger's, whose clock runs from now
    wait_for(lambda: game(net, gid).game.turn == Seat.CHALLENGER, "the defender's first reveal")
    deadline = game(net, gid).deadline
    assert deadline is not None
    before = seq_native(net)
    with net.l1_client() as c:
        c.increase_time(deadline - c.now() + 1)
    wait_for(lambda: game(net, gid).status == "sequencer_won", "the defender to resolve on the clock")
    wait_for(lambda: defender_done(net, gid), "the defender to report and claim")
    assert seq_native(net) == before + BOND - BURN
    assert [r.status for r in net.node.defender.player.progress()] == ["won"]  # type: ignore[union-attr]


def test_several_games_at_once(net: Net, trader: Any, challengers: Challengers) -> None:
    setup_market(net)
    trade(net, trader, 6)
    first = biggest(all_posted(net))
    trade(net, trader, 6)
    batches = all_posted(net)
    second = biggest([b for b in batches if b["index"] > first["index"]])
    liars = {name: challengers.player(name, fault=credit(net.keys.addr(name), at))
             for name, at in (("mallory", 0), ("melvin", 3))}
    games = {"mallory": liars["mallory"].challenge(first["l1BatchId"]),
             "melvin": liars["melvin"].challenge(first["l1BatchId"])}
    raw = challengers.client("victor")
    games["victor"] = raw.open_game(second["l1BatchId"]).game_id

    def over() -> bool:
        if game(net, games["victor"]).status == "open":
            g = game(net, games["victor"])
            if g.game.turn == Seat.CHALLENGER and g.deadline is not None:
                with net.l1_client() as c:  # victor never plays: let his clock run out
                    if c.now() <= g.deadline and all(game(net, games[n]).status != "open" for n in liars):
                        c.increase_time(g.deadline - c.now() + 1)
        return all(defender_done(net, g) for g in games.values())

    drive(*liars.values(), until=over, what="three games to end")
    assert {n: game(net, g).status for n, g in games.items()} == dict.fromkeys(games, "sequencer_won")
    assert net.http.get("/health").json()["games"] == {"won": 3}
    with net.l1_client() as c:
        assert int(c.rollup()["sequencer_credit"]) == 0  # all claimed
    for b in (first, second):
        assert batch_status(net, b["l1BatchId"]) == "pending"


def test_a_restarted_sequencer_still_wins(net: Net, trader: Any, challengers: Challengers) -> None:
    setup_market(net)
    trade(net, trader, 20)
    target = biggest(all_posted(net))
    mallory = challengers.player("mallory", fault=credit(net.keys.addr("mallory"), target["txCount"] - 1))
    gid = mallory.challenge(target["l1BatchId"])
    drive(mallory, until=lambda: game(net, gid).game.moves >= 4, what="the game to be under way")
    net.stop_seq()
    moves = game(net, gid).game.moves
    mallory.tick()  # the challenger may answer while the sequencer is down; nothing else moves
    assert game(net, gid).status == "open"
    net.start_seq()
    progress = net.node.defender.player.progress()  # type: ignore[union-attr]
    assert [(r.game_id, r.status) for r in progress] == [(gid, "open")] and progress[0].last_move is not None
    drive(mallory, until=lambda: mallory.is_done(gid) and defender_done(net, gid), what="the game to end")
    info = game(net, gid)
    assert info.status == "sequencer_won" and info.game.moves > moves
    assert net.http.get("/health").json()["games"] == {"won": 1}
