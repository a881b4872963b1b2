"""The dispute game's rules: honest against lying traces, clocks, timeouts and payouts."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts_spec import dispute
from contracts_spec.crypto import keccak
from contracts_spec.dispute import Answer, Game, Reveal, Seat, Status, Step
from contracts_spec.params import DEV, MAINNET
from contracts_spec.types import Root

CHALLENGER = b"\xcc" * 20
T0 = 1_000


def honest_trace(n: int, seed: int = 0) -> list[Root]:
    return [keccak(b"root" + seed.to_bytes(4, "big") + i.to_bytes(4, "big")) for i in range(n + 1)]


def lying_trace(truth: list[Root], lie_at: int) -> list[Root]:
    """A sequencer that lies about transaction `lie_at`: every root after it differs."""
    return truth[: lie_at + 1] + [keccak(b"lie" + r) for r in truth[lie_at + 1 :]]


def spec_outcome(truth: list[Root], game: Game) -> Root:
    """What the one-step proof computes: the true transition from the (agreed) pre-root."""
    if dispute.is_padding_step(game):
        return game.lo_root
    assert game.lo_root == truth[game.lo], "with one honest side the agreed root is true"
    return truth[game.lo + 1]


def new_game(n: int, seq_trace: list[Root], preset=DEV) -> Game:
    return dispute.open_game(0, CHALLENGER, seq_trace[0], seq_trace[n], n, T0, T0, preset, preset.challenger_bond)


def play(
    game: Game,
    seq: Callable[[int], Root],
    chal: Callable[[int], Root] | None,
    truth: list[Root],
    chal_policy: Callable[[Game], Answer] | None = None,
) -> tuple[Game, dict[str, int]]:
    """Both sides play instantly (1 s a move) until the step; returns the resolved game and move counts."""
    now = T0
    counts = {"reveal": 0, "answer": 0, "step": 0}
    while game.status == Status.OPEN:
        now += 1
        phase = dispute.get_phase(game)
        if phase == dispute.Phase.STEP:
            game = dispute.apply_step(game, Seat.CHALLENGER, spec_outcome(truth, game), now)
            counts["step"] += 1
        elif phase == dispute.Phase.REVEAL:
            move = dispute.next_move(game, Seat.SEQUENCER, seq)
            assert isinstance(move, Reveal)
            assert dispute.next_move(game, Seat.CHALLENGER, chal or seq) is None
            game = dispute.apply_move(game, Seat.SEQUENCER, move, now, DEV)
            counts["reveal"] += 1
        else:
            answer = chal_policy(game) if chal_policy else dispute.next_move(game, Seat.CHALLENGER, chal)  # type: ignore[arg-type]
            assert isinstance(answer, Answer)
            game = dispute.apply_move(game, Seat.CHALLENGER, answer, now, DEV)
            counts["answer"] += 1
    return game, counts


def expected_rounds(n: int) -> int:
    return (n - 1).bit_length()  # ceil(log2 n)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 100, 1000, 65_536])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_lying_sequencer_loses_in_log_rounds(n: int, where: str) -> None:
    truth = honest_trace(n)
    lie_at = {"first": 0, "middle": n // 2, "last": n - 1}[where]
    liar = lying_trace(truth, lie_at)
    game, counts = play(new_game(n, liar), liar.__getitem__, truth.__getitem__, truth)
    assert game.status == Status.CHALLENGER_WON
    assert counts == {"reveal": expected_rounds(n), "answer": expected_rounds(n), "step": 1}
    assert game.lo == lie_at, "the step lands on the lie"


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), data=st.data())
def test_truthful_side_always_wins(n: int, data: st.DataObject) -> None:
    truth = honest_trace(n, seed=n)
    lie_at = data.draw(st.integers(0, n - 1))
    liar = lying_trace(truth, lie_at)
    game, counts = play(new_game(n, liar), liar.__getitem__, truth.__getitem__, truth)
    assert game.status == Status.CHALLENGER_WON and counts["answer"] == expected_rounds(n)
    # A lying challenger, answering at random, against the honest sequencer
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    game, counts = play(new_game(n, truth), truth.__getitem__, None, truth, lambda g: Answer(rng.random() < 0.5))
    assert game.status == Status.SEQUENCER_WON
    assert counts == {"reveal": expected_rounds(n), "answer": expected_rounds(n), "step": 1}


@pytest.mark.parametrize("policy", [True, False])
def test_honest_sequencer_beats_always_agree_or_disagree(policy: bool) -> None:
    n = 77
    truth = honest_trace(n)
    game, _ = play(new_game(n, truth), truth.__getitem__, None, truth, lambda g: Answer(policy))
    assert game.status == Status.SEQUENCER_WON


def test_step_on_rejected_transaction_beats_the_claim() -> None:
    truth = honest_trace(1)
    game = new_game(1, truth)
    assert dispute.get_phase(game) == dispute.Phase.STEP and game.turn == Seat.CHALLENGER
    assert dispute.apply_step(game, Seat.SEQUENCER, None, T0 + 1).status == Status.CHALLENGER_WON
    assert dispute.apply_step(game, Seat.SEQUENCER, truth[1], T0 + 1).status == Status.SEQUENCER_WON


def test_next_move_step_only_for_the_side_that_wins_it() -> None:
    truth = honest_trace(1)
    liar = lying_trace(truth, 0)
    game = new_game(1, liar)
    assert dispute.next_move(game, Seat.CHALLENGER, truth.__getitem__) == Step(0)
    assert dispute.next_move(game, Seat.SEQUENCER, truth.__getitem__) is None
    honest_game = new_game(1, truth)
    assert dispute.next_move(honest_game, Seat.SEQUENCER, truth.__getitem__) == Step(0)
    assert dispute.next_move(honest_game, Seat.CHALLENGER, truth.__getitem__) is None


# --- refusals ---------------------------------------------------------------------------------


def test_out_of_turn_and_wrong_phase_moves_are_refused() -> None:
    truth = honest_trace(8)
    game = new_game(8, truth)
    with pytest.raises(dispute.NotYourTurn):
        dispute.apply_move(game, Seat.CHALLENGER, Answer(True), T0 + 1, DEV)
    with pytest.raises(dispute.WrongMove):
        dispute.apply_move(game, Seat.SEQUENCER, Answer(True), T0 + 1, DEV)
    with pytest.raises(dispute.WrongMove):
        dispute.apply_step(game, Seat.SEQUENCER, truth[1], T0 + 1)
    game = dispute.apply_move(game, Seat.SEQUENCER, Reveal(truth[4]), T0 + 1, DEV)
    with pytest.raises(dispute.NotYourTurn):
        dispute.apply_move(game, Seat.SEQUENCER, Reveal(truth[4]), T0 + 2, DEV)
    with pytest.raises(dispute.WrongMove):
        dispute.apply_move(game, Seat.CHALLENGER, Reveal(truth[4]), T0 + 2, DEV)


def test_moves_after_the_clock_are_refused_and_at_the_deadline_accepted() -> None:
    truth = honest_trace(8)
    game = new_game(8, truth)
    deadline = dispute.get_deadline(game)
    assert deadline == T0 + DEV.game_clock
    with pytest.raises(dispute.ClockExpired):
        dispute.apply_move(game, Seat.SEQUENCER, Reveal(truth[4]), deadline + 1, DEV)
    moved = dispute.apply_move(game, Seat.SEQUENCER, Reveal(truth[4]), deadline, DEV)
    assert moved.clocks[Seat.SEQUENCER] == 0
    assert moved.clocks[Seat.CHALLENGER] == DEV.game_clock


def test_game_over_refuses_everything() -> None:
    truth = honest_trace(1)
    game = dispute.apply_step(new_game(1, truth), Seat.CHALLENGER, truth[1], T0 + 1)
    for call in (
        lambda: dispute.apply_step(game, Seat.CHALLENGER, truth[1], T0 + 2),
        lambda: dispute.resolve_timeout(game, T0 + 10**6),
        lambda: dispute.resolve_refund(game),
        lambda: dispute.resolve_batch_lost(game),
    ):
        with pytest.raises(dispute.GameOver):
            call()


def test_opening_rules() -> None:
    truth = honest_trace(3)
    with pytest.raises(dispute.NothingToDispute):
        dispute.open_game(0, CHALLENGER, truth[0], truth[0], 0, T0, T0, DEV, 1)
    late = T0 + DEV.challenge_window
    with pytest.raises(dispute.OutsideWindow):
        dispute.open_game(0, CHALLENGER, truth[0], truth[3], 3, T0, late, DEV, 1)
    game = dispute.open_game(0, CHALLENGER, truth[0], truth[3], 3, T0, late - 1, DEV, 1)
    assert (game.lo, game.hi, game.turn) == (0, 4, Seat.SEQUENCER)


# --- clocks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seat", [Seat.SEQUENCER, Seat.CHALLENGER])
def test_timeout_each_side(seat: Seat) -> None:
    truth = honest_trace(8)
    game = new_game(8, truth)
    if seat == Seat.CHALLENGER:
        game = dispute.apply_move(game, Seat.SEQUENCER, Reveal(truth[4]), T0 + 3, DEV)
    deadline = dispute.get_deadline(game)
    with pytest.raises(dispute.ClockRunning):
        dispute.resolve_timeout(game, deadline)
    resolved = dispute.resolve_timeout(game, deadline + 1)
    winner = Status.CHALLENGER_WON if seat == Seat.SEQUENCER else Status.SEQUENCER_WON
    assert resolved.status == winner


def test_step_timeout_goes_to_the_sequencer() -> None:
    truth = honest_trace(1)
    game = new_game(1, truth)
    assert dispute.resolve_timeout(game, T0 + DEV.game_clock + 1).status == Status.SEQUENCER_WON


def test_clock_extension_guarantees_the_next_side_time_to_answer() -> None:
    truth = honest_trace(16)
    game = new_game(16, truth)
    # The challenger burns its clock down to one second on its first answer
    game = dispute.apply_move(game, Seat.SEQUENCER, Reveal(truth[8]), T0, DEV)
    game = dispute.apply_move(game, Seat.CHALLENGER, Answer(True), T0 + DEV.game_clock - 1, DEV)
    assert game.clocks[Seat.CHALLENGER] == 1
    # The sequencer waits to its own last second: the challenger still gets clock_extension
    t = game.turn_started + game.clocks[Seat.SEQUENCER]
    game = dispute.apply_move(game, Seat.SEQUENCER, Reveal(truth[12]), t, DEV)
    assert game.clocks[Seat.CHALLENGER] == DEV.clock_extension
    assert dispute.get_deadline(game) == t + DEV.clock_extension
    # ... and the sequencer, whose clock is spent, gets it back when its turn comes
    game = dispute.apply_move(game, Seat.CHALLENGER, Answer(True), t + DEV.clock_extension, DEV)
    assert game.clocks[Seat.SEQUENCER] == DEV.clock_extension


def test_game_length_is_bounded() -> None:
    """Two sides each always moving at their last second: the game still ends in bounded time."""
    n = 65_536
    truth = honest_trace(n)
    game = new_game(n, truth, MAINNET)
    while dispute.get_phase(game) != dispute.Phase.STEP:
        now = dispute.get_deadline(game)
        move = dispute.next_move(game, game.turn, truth.__getitem__)
        assert isinstance(move, Reveal | Answer)
        game = dispute.apply_move(game, game.turn, move, now, MAINNET)
    bound = 2 * MAINNET.game_clock + (2 * expected_rounds(n) + 1) * MAINNET.clock_extension
    assert dispute.get_deadline(game) - T0 <= bound


# --- payouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.CHALLENGER_WON, Status.SEQUENCER_WON, Status.REFUNDED])
def test_payouts_conserve_bonds(status: Status) -> None:
    from dataclasses import replace

    game = replace(new_game(4, honest_trace(4)), status=status, sequencer_bond=DEV.challenger_bond // 3)
    p = dispute.compute_payout(game, DEV)
    assert p.challenger + p.sequencer_stake + p.sequencer_credit + p.burnt == game.challenger_bond + game.sequencer_bond
    if status == Status.CHALLENGER_WON:
        assert p.challenger > game.challenger_bond and p.sequencer_stake == 0
        assert p.burnt == -(-game.sequencer_bond * DEV.bond_burn_ppm // 1_000_000)
    elif status == Status.SEQUENCER_WON:
        assert p.challenger == 0 and p.sequencer_stake == game.sequencer_bond
        assert p.sequencer_credit == game.challenger_bond * 9 // 10
    else:
        assert p.burnt == 0 and p.challenger == game.challenger_bond


def test_open_game_pays_nothing() -> None:
    with pytest.raises(dispute.GameError):
        dispute.compute_payout(new_game(4, honest_trace(4)), DEV)


def test_finality_rule() -> None:
    args = dict(posted_time=T0, preset=DEV, open_games=0, lost=False, invalid=False, parent_final=True)
    end = T0 + DEV.challenge_window
    assert not dispute.is_final(now=end - 1, **args)  # type: ignore[arg-type]
    assert dispute.is_final(now=end, **args)  # type: ignore[arg-type]
    for key, value in (("open_games", 1), ("lost", True), ("invalid", True), ("parent_final", False)):
        assert not dispute.is_final(now=end, **{**args, key: value})  # type: ignore[arg-type]
