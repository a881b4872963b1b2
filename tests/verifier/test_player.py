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
from contracts_spec.stf import BatchOrders, process_tx
from contracts_spec.types import BatchData
from verifier.player import Outcome, Player, Result

if TYPE_CHECKING:
    from tests.verifier.conftest import Arena

BOND = DEV.challenger_bond
BURN = -(-BOND * DEV.bond_burn_ppm // 1_000_000)
USDC = 1_000_000
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
    defender = arena.player("sequencer", on_outcome=lost.append)
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


LYING_CHALLENGERS = [(1, "first", 0), *_where(100)]


@pytest.mark.parametrize("n,where,at", LYING_CHALLENGERS, ids=[f"{n}-{w}" for n, w, _ in LYING_CHALLENGERS])
def test_honest_sequencer_beats_a_lying_challenger(arena: Arena, n: int, where: str, at: int) -> None:
    won: list[Outcome] = []
    bid = arena.post(arena.body(n))
    defender = arena.player("sequencer", on_outcome=won.append)
    mallory = arena.player("mallory", fault=arena.lie(at))  # her re-execution is wrong after `at`
    native = arena.native("sequencer")
    gid = mallory.challenge(bid)
    arena.drive(defender, mallory, until=lambda: defender.is_done(gid) and mallory.is_done(gid))
    k = dispute.compute_depth(n)
    assert arena.moves(gid) == Counter({"reveal": k, "answer": k, "step:sequencer": 1})
    assert won == [Outcome(gid, bid, Seat.SEQUENCER, Result.WON, BOND - BURN, BOND, BURN)]
    assert arena.native("sequencer") == native + BOND - BURN  # its winnings claimed
    assert mallory.outcome(gid) == Outcome(gid, bid, Seat.CHALLENGER, Result.LOST, 0, 0, BURN)
    assert arena.seq.batch(bid)["status"] == "pending"


@pytest.mark.parametrize("restarted", ["sequencer", "challenger"])
def test_a_restarted_player_still_wins(arena: Arena, restarted: str) -> None:
    """The truthful side is replaced mid-game by a new Player on the same database."""
    n = 1_000
    if restarted == "challenger":
        bid = arena.post(arena.body(n), fault=arena.lie(n // 3))
        truthful, liar = arena.player("vera"), arena.player("sequencer")
    else:
        bid = arena.post(arena.body(n))
        truthful, liar = arena.player("sequencer"), arena.player("mallory", fault=arena.lie(n // 3))
    gid = (liar if restarted == "sequencer" else truthful).challenge(bid)
    arena.drive(truthful, liar, until=lambda: arena.seq.game(gid).game.moves >= 7)
    truthful.close()
    name = "sequencer" if restarted == "sequencer" else "vera"
    reported: list[Outcome] = []
    again = arena.player(name, on_outcome=reported.append)
    assert again.progress()[0].last_move is not None  # it knows where it was
    arena.drive(again, liar, until=lambda: again.is_done(gid) and liar.is_done(gid))
    assert [o.result for o in reported] == [Result.WON]
    k = dispute.compute_depth(n)
    assert arena.moves(gid) == Counter({"reveal": k, "answer": k, f"step:{restarted}": 1})
    again.close()
    assert arena.player(name).tick() == []  # nothing left to do, nothing reported twice


def test_two_challengers_at_once_both_win_and_are_paid(arena: Arena) -> None:
    lost: list[Outcome] = []
    bid = arena.post(arena.body(1_000), fault=arena.lie(500))
    defender = arena.player("sequencer", on_outcome=lost.append)
    vera, victor = arena.player("vera"), arena.player("victor")
    natives = {name: arena.native(name) for name in ("vera", "victor")}
    games = {"vera": vera.challenge(bid), "victor": victor.challenge(bid)}
    arena.drive(defender, vera, victor,
                until=lambda: all(p.is_done(games[n]) for p, n in ((vera, "vera"), (victor, "victor"))))
    for p, name in ((vera, "vera"), (victor, "victor")):
        out = p.outcome(games[name])
        assert out is not None and (out.result, out.credited) == (Result.WON, WINNINGS)
        assert arena.native(name) == natives[name] - BOND + WINNINGS
    arena.drive(defender, until=lambda: all(defender.is_done(g) for g in games.values()))
    assert sorted((o.game_id, o.batch_id, o.result) for o in lost) == sorted(
        (g, bid, Result.LOST) for g in games.values())
    assert arena.seq.rollup()["stake"] == DEV.sequencer_stake_min - 2 * BOND


def test_a_silent_sequencer_loses_on_the_clock(arena: Arena) -> None:
    bid = arena.post(arena.body(3), fault=arena.lie(1))
    vera = arena.player("vera")
    gid = vera.challenge(bid)
    assert vera.tick() == []  # the sequencer's turn: nothing to do
    deadline = arena.seq.game(gid).deadline
    assert deadline is not None
    arena.seq.increase_time(deadline - arena.seq.now())
    assert vera.tick() == []  # its clock runs out only after the deadline
    arena.seq.increase_time(1)
    assert [p.action for p in vera.tick()] == ["resolve", "claim"]
    out = vera.outcome(gid)
    assert out is not None and (out.result, out.credited) == (Result.WON, WINNINGS)
    assert arena.seq.batch(bid)["status"] == "lost"


def test_a_silent_challenger_loses_on_the_clock(arena: Arena) -> None:
    bid = arena.post(arena.body(3))
    gid = arena.clients["mallory"].open_game(bid).game_id  # opened by hand, never played
    won: list[Outcome] = []
    defender = arena.player("sequencer", on_outcome=won.append)
    assert [p.action for p in defender.tick()] == ["reveal"]
    assert defender.tick() == []
    deadline = arena.seq.game(gid).deadline
    assert deadline is not None
    arena.seq.increase_time(deadline - arena.seq.now() + 1)
    assert [p.action for p in defender.tick()] == ["resolve", "claim"]
    assert won == [Outcome(gid, bid, Seat.SEQUENCER, Result.WON, BOND - BURN, BOND, BURN)]


class _Skipping:
    """A buggy sequencer's view: a rejected transaction kept in the batch as if it changed nothing."""

    def __init__(self, roots: list[bytes]) -> None:
        self.roots = roots

    def root_at(self, index: int) -> bytes:
        return self.roots[min(index, len(self.roots) - 1)]

    def step_proof(self, index: int) -> None:
        return None  # it has no proof that a rejected transaction is valid


def post_overdrawn(arena: Arena, *more: tuple[int, int]) -> tuple[int, BatchData]:
    """A batch whose transaction 1 withdraws more than alice has (the rules reject it), then
    withdrawals of (amount, nonce), posted as if the rejected one changed nothing."""
    b = arena.builder
    b.reset()
    arena.clients["alice"].faucet(usdc=100 * USDC)
    arena.clients["alice"].deposit(100 * USDC)
    b.deposit("alice", 100 * USDC)
    b.withdraw("alice", 500 * USDC, 0)
    for amount, nonce in more:
        b.withdraw("alice", amount, nonce)
    body = b.data()
    return arena.post(body, skip_rejected=True), body


def assert_challenger_steps_on(arena: Arena, bid: int, defender: Player, index: int) -> None:
    """vera challenges batch `bid` against `defender`, wins, and the one step is hers, on the
    rejected transaction `index`."""
    vera = arena.player("vera")
    gid = vera.challenge(bid)
    arena.drive(defender, vera, until=lambda: vera.is_done(gid) and defender.is_done(gid))
    assert vera.outcome(gid).result == Result.WON  # type: ignore[union-attr]
    stepped = [e.data for e in arena.seq.follow(names=["Stepped"]) if e.data["game_id"] == gid]
    assert [(s["seat"], s["index"], s["rejected"]) for s in stepped] == [("challenger", index, True)]


def test_a_rejected_transaction_claimed_valid_loses(arena: Arena) -> None:
    bid, body = post_overdrawn(arena, (10 * USDC, 0))
    roots = [arena.posted[bid].pre.root()]
    state = arena.posted[bid].pre.copy()
    for i, tx in enumerate(body.txs):
        if i != 1:
            process_tx(state, tx, BatchOrders(body.orders, DEV), arena.posted[bid].env)
        roots.append(state.root())
    assert roots[-1] == arena.posted[bid].header.post_root
    assert_challenger_steps_on(arena, bid, arena.player("sequencer", truth=lambda _: _Skipping(roots)), 1)


def test_a_defender_whose_own_replay_is_rejected_never_agrees_past_the_rejection(arena: Arena) -> None:
    """The sequencer's own defender re-executes with the spec (its batch kept a transaction the
    rules reject): both traces hold no state past it. Agreeing there would carry the game past the
    rejected transaction, where no one-step proof exists; the challenger must still step on it."""
    bid, _ = post_overdrawn(arena, (10 * USDC, 0), (1 * USDC, 1))  # 4 txs: the first midpoint (2) lies past 1
    assert_challenger_steps_on(arena, bid, arena.player("sequencer"), 1)  # its own spec replay: rejected at 1


def test_games_on_a_batch_built_on_a_lost_one_are_refunded(arena: Arena) -> None:
    outcomes: list[Outcome] = []
    bad = arena.post(arena.body(3), fault=arena.lie(1), build_on_lie=True)
    child = arena.post(arena.body(2), fault=arena.lie(1))
    defender = arena.player("sequencer", on_outcome=outcomes.append)
    vera, victor = arena.player("vera"), arena.player("victor")
    g_child = victor.challenge(child)  # victor re-executes the child from its parent's claimed root
    g_bad = vera.challenge(bad)
    arena.drive(defender, vera, until=lambda: vera.is_done(g_bad))
    assert arena.seq.batch(child)["status"] == "invalid"
    arena.drive(defender, victor, until=lambda: victor.is_done(g_child) and defender.is_done(g_child))
    assert victor.outcome(g_child) == Outcome(g_child, child, Seat.CHALLENGER, Result.REFUNDED, BOND, 0, 0)
    assert sorted((o.game_id, o.result, o.restaked) for o in outcomes) == sorted(
        [(g_bad, Result.LOST, 0), (g_child, Result.REFUNDED, BOND)])


def test_an_outcome_hook_that_fails_is_called_again(arena: Arena) -> None:
    calls: list[Outcome] = []

    def hook(outcome: Outcome) -> None:
        calls.append(outcome)
        if len(calls) == 1:
            raise RuntimeError("the rollback is busy")

    bid = arena.post(arena.body(2), fault=arena.lie(0))
    defender = arena.player("sequencer", on_outcome=hook)
    vera = arena.player("vera")
    gid = vera.challenge(bid)
    arena.drive(defender, vera, until=lambda: defender.is_done(gid))
    assert len(calls) == 2 and calls[0] == calls[1] and calls[0].result == Result.LOST


def test_a_key_plays_only_its_own_seat(arena: Arena) -> None:
    wrong = Player(arena.clients["vera"], arena.db[0], Seat.SEQUENCER, arena.sequencer_truth(), schema=arena.db[1])
    arena.players.append(wrong)
    with pytest.raises(ValueError):
        wrong.tick()
    with pytest.raises(ValueError):
        arena.player("sequencer").challenge(0)


def test_run_until_done_returns_the_outcome(arena: Arena) -> None:
    bid = arena.post(arena.body(3), fault=arena.lie(2))
    defender, vera = arena.player("sequencer"), arena.player("vera")
    gid = vera.challenge(bid)
    out = vera.run_until_done(gid, idle=defender.tick)
    assert (out.game_id, out.batch_id, out.result, out.credited) == (gid, bid, Result.WON, WINNINGS)
    assert vera.is_done(gid) and defender.run_until_done(gid, idle=lambda: None).result == Result.LOST
