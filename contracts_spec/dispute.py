"""The dispute game: bisection over transaction index, chess clocks, the one-step verdict, timeouts,
payouts and batch finality. Pure functions over a `Game` value that the base layer stores and
both players (the sequencer's defender, the verifier's challenger) read with `next_move`.

The trace is padded to a power of two, as Optimism's fixed-depth games: a batch of n transactions
is disputed over [0, 2^k] with k = ceil(log2 n), and the root at any index i >= n is the root at n.
Every game therefore takes exactly k bisection rounds (a reveal and an answer) and one step; a
step at an index >= n is the identity transition. A game's state is O(1) whatever was played,
so resolving it costs the same after one move as after thirty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum

from contracts_spec import codec, witness
from contracts_spec.crypto import keccak
from contracts_spec.errors import (
    BadProof,
    DecodeError,
    InvalidBatch,
    InvalidTransaction,
    SpecError,
    WitnessError,
)
from contracts_spec.merkle import list_root, verify_list_proof, verify_withdrawal_proof
from contracts_spec.stf import BridgeView
from contracts_spec.types import (
    PPM,
    Address,
    ApplyGovernance,
    BatchData,
    BatchHeader,
    Globals,
    Hash32,
    Preset,
    Root,
    Seconds,
    SignedOrder,
    WithdrawalLeaf,
)

# --- errors: a refused move changes nothing -------------------------------------------------


class GameError(SpecError):
    """A move, step or resolution the rules refuse."""


class GameOver(GameError):
    pass


class NotYourTurn(GameError):
    pass


class WrongMove(GameError):
    """The move does not fit the game's phase (a reveal when an answer is due, ...)."""


class ClockExpired(GameError):
    """The mover's clock ran out: the game can only be resolved by timeout now."""


class ClockRunning(GameError):
    """A timeout was claimed before the clock of the side to move ran out."""


class NothingToDispute(GameError):
    pass


class OutsideWindow(GameError):
    pass


# --- state ----------------------------------------------------------------------------------


class Seat(IntEnum):
    SEQUENCER = 0
    CHALLENGER = 1

    @property
    def opponent(self) -> Seat:
        return Seat(1 - self)


class Status(IntEnum):
    OPEN = 0
    CHALLENGER_WON = 1
    SEQUENCER_WON = 2
    REFUNDED = 3  # the batch was invalidated through an ancestor: nobody was proven wrong


class Phase(IntEnum):
    REVEAL = 0  # the sequencer must reveal its root at the bisection point
    ANSWER = 1  # the challenger must agree or disagree with the revealed root
    STEP = 2  # one transaction left: either side may submit the one-step proof
    OVER = 3


@dataclass(frozen=True, slots=True)
class Game:
    batch: int  # the base layer's id of the disputed batch
    challenger: Address
    tx_count: int
    lo: int  # both sides agree on the root at lo
    hi: int  # the challenger disputes the sequencer's root at hi
    lo_root: Root
    hi_root: Root
    mid_root: Root | None  # revealed by the sequencer, awaiting the challenger's answer
    turn: Seat
    clocks: tuple[int, int]  # remaining seconds per seat; the mover's as of `turn_started`
    turn_started: Seconds
    challenger_bond: int
    sequencer_bond: int  # escrowed from the sequencer's stake when the game opened
    status: Status = Status.OPEN
    moves: int = 0


@dataclass(frozen=True, slots=True)
class Reveal:
    root: Root


@dataclass(frozen=True, slots=True)
class Answer:
    agree: bool


@dataclass(frozen=True, slots=True)
class Step:
    index: int  # the transaction to prove: always game.lo


Move = Reveal | Answer | Step


@dataclass(frozen=True, slots=True)
class Payout:
    challenger: int  # credited to the challenger
    sequencer_stake: int  # returned to the sequencer's stake
    sequencer_credit: int  # credited to the sequencer (winnings)
    burnt: int


# --- pure helpers ---------------------------------------------------------------------------


def compute_depth(tx_count: int) -> int:
    """ceil(log2 n): the number of bisection rounds of every game against a batch of n txs."""
    return max(tx_count - 1, 0).bit_length()


def bisection_point(lo: int, hi: int) -> int:
    # Verify there is something left to bisect
    if hi - lo < 2:
        raise WrongMove(f"interval [{lo}, {hi}] has no interior point")
    return (lo + hi) // 2


def trace_index(index: int, tx_count: int) -> int:
    """The padded trace: the root at any index beyond the last transaction is the post root."""
    return min(index, tx_count)


def get_phase(game: Game) -> Phase:
    if game.status != Status.OPEN:
        return Phase.OVER
    if game.hi - game.lo == 1:
        return Phase.STEP
    return Phase.REVEAL if game.mid_root is None else Phase.ANSWER


def get_deadline(game: Game) -> int:
    """The time after which the side to move has lost."""
    return game.turn_started + game.clocks[game.turn]


def get_remaining(game: Game, seat: Seat, now: int) -> int:
    if seat != game.turn or game.status != Status.OPEN:
        return game.clocks[seat]
    return game.clocks[seat] - (now - game.turn_started)


def compute_burn(amount: int, preset: Preset) -> int:
    # Rounds up: what the winner is owed rounds down
    return -(-amount * preset.bond_burn_ppm // PPM)


def is_within_window(posted_time: int, now: int, preset: Preset) -> bool:
    return now < posted_time + preset.challenge_window


def is_final(
    posted_time: int, now: int, preset: Preset, open_games: int, lost: bool, invalid: bool, parent_final: bool
) -> bool:
    """A batch is final when its window has passed, no game against it is open, none was lost
    (so it is not invalid) and its parent is final."""
    return (
        not is_within_window(posted_time, now, preset)
        and open_games == 0
        and not lost
        and not invalid
        and parent_final
    )


# --- opening --------------------------------------------------------------------------------


def open_game(
    batch: int,
    challenger: Address,
    prev_root: Root,
    post_root: Root,
    tx_count: int,
    posted_time: int,
    now: int,
    preset: Preset,
    sequencer_bond: int,
) -> Game:
    """A new game: the challenger claims `post_root` wrong; the sequencer moves first."""
    # Verify the batch is still inside its challenge window
    if not is_within_window(posted_time, now, preset):
        raise OutsideWindow("the batch's challenge window has passed")
    # Verify there is a transition to dispute (an empty batch's post root is its prev root)
    if tx_count < 1:
        raise NothingToDispute("an empty batch cannot be disputed")
    hi = 1 << compute_depth(tx_count)
    return Game(
        batch=batch,
        challenger=challenger,
        tx_count=tx_count,
        lo=0,
        hi=hi,
        lo_root=prev_root,
        hi_root=post_root,
        mid_root=None,
        turn=Seat.SEQUENCER if hi > 1 else Seat.CHALLENGER,
        clocks=(preset.game_clock, preset.game_clock),
        turn_started=Seconds(now),
        challenger_bond=preset.challenger_bond,
        sequencer_bond=sequencer_bond,
    )


# --- moves ----------------------------------------------------------------------------------


def next_move(game: Game, seat: Seat, my_root_at: Callable[[int], Root]) -> Move | None:
    """The correct move for `seat` given its own trace (tx index 0..tx_count -> root), or None
    when it has nothing to do (not its turn, game over, or a step it would lose)."""
    phase = get_phase(game)
    if phase == Phase.STEP:
        mine = my_root_at(trace_index(game.hi, game.tx_count))
        # The sequencer steps when its claim holds; the challenger when it does not
        holds = mine == game.hi_root
        wants = holds if seat == Seat.SEQUENCER else not holds
        return Step(game.lo) if wants else None
    if phase == Phase.OVER or seat != game.turn:
        return None
    mid = bisection_point(game.lo, game.hi)
    mine = my_root_at(trace_index(mid, game.tx_count))
    if phase == Phase.REVEAL:
        return Reveal(mine)
    return Answer(agree=mine == game.mid_root)


def _pass_turn(game: Game, mover: Seat, now: int, preset: Preset, **changes: object) -> Game:
    """Stop the mover's clock and start the next side's, topped up to at least clock_extension.

    Like Optimism's clock extension, adapted to two alternating players: whoever must move next
    has at least `clock_extension` to do it, so a last-second move never leaves the opponent
    seconds to answer; games stay bounded (2 x game_clock + moves x clock_extension).
    """
    clocks = list(game.clocks)
    clocks[mover] = get_remaining(game, mover, now)
    moved = replace(game, moves=game.moves + 1, **changes)  # type: ignore[arg-type]
    nxt = Seat.SEQUENCER if get_phase(moved) == Phase.REVEAL else Seat.CHALLENGER
    clocks[nxt] = max(clocks[nxt], preset.clock_extension)
    return replace(moved, turn=nxt, clocks=(clocks[0], clocks[1]), turn_started=Seconds(now))


def verify_can_move(game: Game, seat: Seat, now: int) -> None:
    # Verify the game is open
    if game.status != Status.OPEN:
        raise GameOver(f"game is over: {game.status.name}")
    # Verify the mover's clock has not run out
    if now > get_deadline(game):
        raise ClockExpired(f"{game.turn.name}'s clock ran out at {get_deadline(game)}")
    # Verify it is the mover's turn (the step is open to both sides)
    if get_phase(game) != Phase.STEP and seat != game.turn:
        raise NotYourTurn(f"it is {game.turn.name}'s turn")


def apply_move(game: Game, seat: Seat, move: Reveal | Answer, now: int, preset: Preset) -> Game:
    """A bisection move: the sequencer reveals its midpoint root, the challenger answers it."""
    verify_can_move(game, seat, now)
    phase = get_phase(game)
    mid = (game.lo + game.hi) // 2
    if isinstance(move, Reveal):
        # Verify a reveal is due
        if phase != Phase.REVEAL:
            raise WrongMove(f"a reveal is not due in phase {phase.name}")
        return _pass_turn(game, seat, now, preset, mid_root=move.root)
    # Verify an answer is due
    if phase != Phase.ANSWER or game.mid_root is None:
        raise WrongMove(f"an answer is not due in phase {phase.name}")
    if move.agree:
        return _pass_turn(game, seat, now, preset, lo=mid, lo_root=game.mid_root, mid_root=None)
    return _pass_turn(game, seat, now, preset, hi=mid, hi_root=game.mid_root, mid_root=None)


def is_padding_step(game: Game) -> bool:
    """A step beyond the last transaction: the identity transition, needing no proof."""
    return game.lo >= game.tx_count


def apply_step(game: Game, seat: Seat, outcome: Root | None, now: int) -> Game:
    """The one-step verdict. `outcome` is the root the spec computed from the agreed pre-root
    for transaction `lo` (the pre-root itself for a padding step), or None when the spec
    rejected the transaction from a complete witness: then no claim of validity can stand."""
    verify_can_move(game, seat, now)
    # Verify one transaction is left
    if get_phase(game) != Phase.STEP:
        raise WrongMove("the one-step proof needs an interval of one transaction")
    holds = outcome is not None and outcome == game.hi_root
    won = Status.SEQUENCER_WON if holds else Status.CHALLENGER_WON
    return replace(game, status=won, moves=game.moves + 1)


def resolve_timeout(game: Game, now: int) -> Game:
    """The side to move let its clock run out: the other side wins."""
    # Verify the game is open
    if game.status != Status.OPEN:
        raise GameOver(f"game is over: {game.status.name}")
    # Verify the clock of the side to move has run out
    if now <= get_deadline(game):
        raise ClockRunning(f"{game.turn.name} may still move until {get_deadline(game)}")
    won = Status.CHALLENGER_WON if game.turn == Seat.SEQUENCER else Status.SEQUENCER_WON
    return replace(game, status=won)


def resolve_batch_lost(game: Game) -> Game:
    """Another game proved this game's batch wrong: the challenger's claim is upheld."""
    if game.status != Status.OPEN:
        raise GameOver(f"game is over: {game.status.name}")
    return replace(game, status=Status.CHALLENGER_WON)


def resolve_refund(game: Game) -> Game:
    """The batch fell with an invalid ancestor: the dispute is moot, both bonds go back."""
    if game.status != Status.OPEN:
        raise GameOver(f"game is over: {game.status.name}")
    return replace(game, status=Status.REFUNDED)


def compute_payout(game: Game, preset: Preset) -> Payout:
    """Where the bonds of a resolved game go: the loser's to the winner, a preset share burnt."""
    if game.status == Status.CHALLENGER_WON:
        burnt = compute_burn(game.sequencer_bond, preset)
        return Payout(game.challenger_bond + game.sequencer_bond - burnt, 0, 0, burnt)
    if game.status == Status.SEQUENCER_WON:
        burnt = compute_burn(game.challenger_bond, preset)
        return Payout(0, game.sequencer_bond, game.challenger_bond - burnt, burnt)
    if game.status == Status.REFUNDED:
        return Payout(game.challenger_bond, game.sequencer_bond, 0, 0)
    raise GameError("an open game pays nothing yet")


# --- the one-step proof ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderProof:
    index: int  # the order's index in the batch's signed orders
    order: bytes  # codec.encode_signed_order
    proof: tuple[Hash32, ...]  # list proof against the header's orders_root


@dataclass(frozen=True, slots=True)
class StepProof:
    """What a step submits: transaction `lo` proven against the header's tx_root, the signed
    orders it names proven against the orders_root, and the state witness against the pre-root."""

    tx: bytes  # codec.encode_tx
    tx_proof: tuple[Hash32, ...]
    order_count: int  # the orders list's length (the orders_root commits to it)
    orders: tuple[OrderProof, ...]
    witness: bytes


def verify_step_inputs(game: Game, header: BatchHeader, proof: StepProof) -> tuple[codec.Tx, dict[int, SignedOrder]]:
    """The transaction and orders of a step, each proven against the header; BadProof otherwise."""
    try:
        tx = codec.decode_tx(proof.tx)
        orders = {p.index: codec.decode_signed_order(p.order) for p in proof.orders}
    except DecodeError as exc:
        raise BadProof(f"undecodable step input: {exc}") from exc
    # Verify the transaction is the batch's transaction number lo
    verify_list_proof(header.tx_root, header.tx_count, game.lo, codec.tx_hash(tx), proof.tx_proof)
    # Verify each order is the batch's order at its index
    for p in proof.orders:
        verify_list_proof(header.orders_root, proof.order_count, p.index, codec.signed_order_hash(orders[p.index]), p.proof)
    return tx, orders


def compute_step_outcome(
    game: Game, header: BatchHeader, proof: StepProof | None, bridge: BridgeView, preset: Preset
) -> Root | None:
    """The post-root of transaction `lo` from the agreed pre-root, None if the spec rejects it.

    Raises WitnessError (BadProof, WitnessIncomplete) when the evidence does not suffice: the
    step is refused and nothing changes, so leaving a leaf out can never win a game.
    """
    # Verify the header is the disputed batch's and one transaction is left
    if header.tx_count != game.tx_count:
        raise BadProof("header does not match the game")
    if get_phase(game) != Phase.STEP:
        raise WrongMove("the one-step proof needs an interval of one transaction")
    if is_padding_step(game):
        return game.lo_root
    if proof is None:
        raise BadProof("a step inside the batch needs a proof")
    tx, orders = verify_step_inputs(game, header, proof)
    try:
        return witness.execute_one_step(preset, game.lo_root, proof.witness, tx, orders, bridge, header.time)
    except InvalidTransaction:
        return None


# --- posting: what the base layer accepts -----------------------------------------------------


class BadParent(InvalidBatch):
    pass


class BadBatchTime(InvalidBatch):
    pass


class BadBatchData(InvalidBatch):
    pass


class HeaderMismatch(InvalidBatch):
    """The header does not match what its data or its post-state's globals say."""


class ForcedInclusionMissed(InvalidBatch):
    pass


class GovernanceTooEarly(InvalidBatch):
    """The batch applies a governance change before its effective time (or one never announced)."""


@dataclass(frozen=True, slots=True)
class Parent:
    """The valid head the next batch must build on (at genesis: index -1, the genesis root)."""

    index: int
    post_root: Root
    time: int
    governance_applied: int = 0  # the parent post-state's governance-queue position


@dataclass(frozen=True, slots=True)
class Posting:
    data: BatchData
    globals: Globals


def verify_batch(
    preset: Preset,
    header: BatchHeader,
    data: bytes,
    globals_proof: bytes,
    parent: Parent,
    block_time: int,
    deposit_time: Callable[[int], int | None],
    forced_time: Callable[[int], int | None],
    governance_time: Callable[[int], int | None] = lambda index: None,
) -> Posting:
    """Every check the base layer makes on a posted batch, so every accepted batch is decodable
    and provable. `deposit_time(i)` / `forced_time(i)` give the queue entry's time, and
    `governance_time(i)` the governance change's effective time (None: no such entry)."""
    # Verify the batch builds on the valid head
    if header.index != parent.index + 1 or header.prev_root != parent.post_root:
        raise BadParent(f"batch must be index {parent.index + 1} on root 0x{parent.post_root.hex()}")
    # Verify the header time: not below the parent's, within the lag of the block time
    if not (max(parent.time, block_time - preset.max_time_lag) <= header.time <= block_time):
        raise BadBatchTime(f"header time {header.time} outside [max(parent, block - lag), block {block_time}]")
    # Verify the data is bounded and is what the header commits to
    if len(data) > preset.max_batch_bytes:
        raise BadBatchData(f"{len(data)} bytes of data exceed {preset.max_batch_bytes}")
    if keccak(data) != header.data_hash:
        raise HeaderMismatch("data hash does not match the header")
    try:
        body = codec.decode_batch_data(data, max_txs=preset.max_batch_txs)
    except (DecodeError, InvalidBatch) as exc:
        raise BadBatchData(f"undecodable batch data: {exc}") from exc
    # Verify the count and both roots recompute from the data
    if header.tx_count != len(body.txs):
        raise HeaderMismatch(f"header says {header.tx_count} transactions, data holds {len(body.txs)}")
    if header.tx_root != list_root([codec.tx_hash(tx) for tx in body.txs]):
        raise HeaderMismatch("tx_root does not match the data")
    if header.orders_root != list_root([codec.signed_order_hash(o) for o in body.orders]):
        raise HeaderMismatch("orders_root does not match the data")
    # Verify an empty batch changes nothing
    if not body.txs and header.post_root != header.prev_root:
        raise HeaderMismatch("an empty batch must keep its parent's root")
    g = read_post_globals(header, globals_proof)
    verify_governance_applied(header, body, parent, g, governance_time)
    # Verify no deposit, forced request or effective governance change older than the delay is left
    due = block_time - preset.forced_inclusion_delay
    for name, queued in (("deposit", deposit_time(g.deposits_consumed)), ("forced", forced_time(g.forced_consumed)),
                         ("governance change", governance_time(g.governance_applied))):
        if queued is not None and queued <= due:
            raise ForcedInclusionMissed(f"{name} queued at {queued} is past the forced-inclusion delay")
    return Posting(body, g)


def verify_governance_applied(
    header: BatchHeader, body: BatchData, parent: Parent, g: Globals, governance_time: Callable[[int], int | None]
) -> None:
    """The batch's ApplyGovernance transactions take the next queue entries in order, each one
    effective at the batch's time, and the post-state's counter says so."""
    applied = [tx.queue_index for tx in body.txs if type(tx) is ApplyGovernance]
    # Verify the data applies the next entries in order and the post-state's counter follows
    if applied != list(range(parent.governance_applied, parent.governance_applied + len(applied))):
        raise GovernanceTooEarly(f"governance changes {applied} are not the next ones from {parent.governance_applied}")
    if g.governance_applied != parent.governance_applied + len(applied):
        raise HeaderMismatch("the post-state's governance position does not match the data")
    # Verify each change is announced and effective at the batch time
    for index in applied:
        effective = governance_time(index)
        if effective is None or effective > header.time:
            raise GovernanceTooEarly(f"governance change {index} is not effective at {header.time} ({effective})")


def read_post_globals(header: BatchHeader, globals_proof: bytes) -> Globals:
    """The post-state's globals leaf, proven against the post root, matching the header's claims."""
    try:
        g = witness.read_globals(header.post_root, globals_proof)
    except WitnessError as exc:
        raise HeaderMismatch(f"bad proof of the post-state's globals: {exc}") from exc
    # Verify the header's queue positions and withdrawal root are the post-state's
    claimed = (header.deposits_consumed, header.forced_consumed, header.withdrawal_root)
    if claimed != (g.deposits_consumed, g.forced_consumed, witness.globals_withdrawal_root(g)):
        raise HeaderMismatch("queue positions or withdrawal root differ from the post-state's globals")
    return g


# --- withdrawals --------------------------------------------------------------------------------


def compute_withdrawal_leaf_hash(leaf: WithdrawalLeaf) -> Hash32:
    return keccak(codec.encode_withdrawal_leaf(leaf))


def verify_withdrawal(root: Root, count: int, leaf: WithdrawalLeaf, proof: Sequence[Hash32]) -> None:
    """BadProof unless `leaf` is in the withdrawal tree of `count` leaves with this root."""
    verify_withdrawal_proof(root, count, leaf.index, compute_withdrawal_leaf_hash(leaf), proof)

