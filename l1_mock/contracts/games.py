"""The dispute-game contract: opening with bonds, bisection moves, the one-step proof, timeouts,
resolution and payouts. Every rule is contracts_spec.dispute's; this module stores its Game
(O(1) in size, so each call costs the same however long the game) and moves the money.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts_spec import dispute
from contracts_spec.dispute import Answer, Game, Reveal, Seat, Status
from contracts_spec.types import Genesis
from l1_mock import errors
from l1_mock.chain import Ctx, credit, debit, method
from l1_mock.contracts.args import Args, Hash, HexBytes, Uint
from l1_mock.contracts.bridge import ChainBridge
from l1_mock.contracts.rollup import header_of, invalidate, is_valid, verify_live
from l1_mock.envelope import hex0x, unhex
from l1_mock.models import BatchRow, GameRow
from l1_mock.wire import game_from_json, game_to_json

# --- the stored game ----------------------------------------------------------------------------


def game_view(row: GameRow) -> dict[str, Any]:
    g = game_from_json(json.loads(row.state_json))
    view = {"game_id": row.id, "batch_id": row.batch_id, "challenger": row.challenger, "status": row.status,
            "phase": dispute.get_phase(g).name, "game": game_to_json(g),
            "deadline": dispute.get_deadline(g) if g.status == Status.OPEN else None,
            "payout": json.loads(row.payout_json) if row.payout_json else None}
    return view


def save(row: GameRow, g: Game) -> None:
    row.state_json = json.dumps(game_to_json(g))
    row.status = g.status.name.lower()
    row.moves = g.moves


class GameRef:
    """A game loaded for a transaction: its row, its rules value and its batch."""

    def __init__(self, ctx: Ctx, game_id: int) -> None:
        row = ctx.s.get(GameRow, game_id)
        if row is None:
            raise errors.NotFound(f"no game {game_id}")
        batch = ctx.s.get(BatchRow, row.batch_id)
        assert batch is not None
        self.row, self.batch, self.game = row, batch, game_from_json(json.loads(row.state_json))

    def seat(self, ctx: Ctx) -> Seat:
        if ctx.sender == hex0x(ctx.genesis.sequencer):
            return Seat.SEQUENCER
        if ctx.sender == self.row.challenger:
            return Seat.CHALLENGER
        raise errors.Forbidden("only the game's challenger and the sequencer play it", "not_a_player")

    def verify_playable(self, ctx: Ctx) -> None:
        # Verify the batch is still on the valid chain: otherwise the game can only be resolved
        if self.game.status == Status.OPEN and not is_valid(ctx.s, ctx.chain, self.batch):
            raise errors.Refused("the batch left the valid chain: resolve the game", "batch_invalidated")


def finish(ctx: Ctx, ref: GameRef, g: Game) -> dict[str, Any]:
    """Store the game; if it just ended, pay out, and invalidate a batch the challenger beat."""
    save(ref.row, g)
    if g.status == Status.OPEN:
        return game_view(ref.row)
    p = dispute.compute_payout(g, ctx.genesis.preset)
    credit(ctx.account(ref.row.challenger), "credit", p.challenger)
    credit(ctx.account(hex0x(ctx.genesis.sequencer)), "credit", p.sequencer_credit)
    ctx.chain.sequencer_stake += p.sequencer_stake
    ctx.chain.burnt += p.burnt
    ref.row.payout_json = json.dumps({"challenger": p.challenger, "sequencer_stake": p.sequencer_stake,
                                      "sequencer_credit": p.sequencer_credit, "burnt": p.burnt})
    ref.batch.open_games -= 1
    if g.status == Status.CHALLENGER_WON and not ref.batch.lost:
        invalidate(ctx, ref.batch)
    view = game_view(ref.row)
    ctx.emit("GameResolved", game_id=ref.row.id, batch_id=ref.batch.id, status=ref.row.status,
             payout=view["payout"])
    return view


# --- methods ------------------------------------------------------------------------------------


class OpenArgs(Args):
    batch_id: Uint


@method("open_game", OpenArgs)
def open_game(ctx: Ctx, args: OpenArgs) -> dict[str, Any]:
    """Challenge a pending batch's post root with a bond; an equal bond is escrowed from the
    sequencer's free stake (all of it that is left, if less), so each lost game pays its winner."""
    preset = ctx.genesis.preset
    verify_live(ctx.s, "opening a game")
    batch = ctx.s.get(BatchRow, args.batch_id)
    if batch is None:
        raise errors.NotFound(f"no batch {args.batch_id}")
    # Verify the challenger is not the sequencer and the batch is on the valid chain
    if ctx.sender == hex0x(ctx.genesis.sequencer):
        raise errors.Forbidden("the sequencer cannot challenge its own batch", "sequencer_cannot_challenge")
    if not is_valid(ctx.s, ctx.chain, batch):
        raise errors.Refused("the batch is not on the valid chain", "batch_invalidated")
    escrow = min(preset.challenger_bond, ctx.chain.sequencer_stake)
    g = dispute.open_game(batch.id, unhex(ctx.sender), unhex(batch.prev_root), unhex(batch.post_root),
                          batch.tx_count, batch.posted_time, ctx.time, preset, escrow)
    debit(ctx.account(ctx.sender), "native", g.challenger_bond)
    ctx.chain.sequencer_stake -= escrow
    row = GameRow(batch_id=batch.id, challenger=ctx.sender, state_json="", status="", moves=0)
    save(row, g)
    ctx.s.add(row)
    ctx.s.flush()
    batch.open_games += 1
    view = game_view(row)
    ctx.emit("GameOpened", game_id=row.id, batch_id=batch.id, challenger=ctx.sender, game=view["game"])
    return view


class RevealArgs(Args):
    game_id: Uint
    root: Hash


class AnswerArgs(Args):
    game_id: Uint
    agree: bool


def _move(ctx: Ctx, game_id: int, move: Reveal | Answer) -> dict[str, Any]:
    ref = GameRef(ctx, game_id)
    ref.verify_playable(ctx)
    seat = ref.seat(ctx)
    g = dispute.apply_move(ref.game, seat, move, ctx.time, ctx.genesis.preset)
    data = {"root": hex0x(move.root)} if isinstance(move, Reveal) else {"agree": move.agree}
    ctx.emit("Moved", game_id=game_id, batch_id=ref.batch.id, seat=seat.name.lower(),
             move=type(move).__name__.lower(), **data, game=game_to_json(g))
    return finish(ctx, ref, g)


@method("reveal", RevealArgs)
def reveal(ctx: Ctx, args: RevealArgs) -> dict[str, Any]:
    return _move(ctx, args.game_id, Reveal(args.root))


@method("answer", AnswerArgs)
def answer(ctx: Ctx, args: AnswerArgs) -> dict[str, Any]:
    return _move(ctx, args.game_id, Answer(args.agree))


class OrderProofArgs(Args):
    index: Uint
    order: HexBytes
    proof: list[Hash]


class StepArgs(Args):
    game_id: Uint
    tx: HexBytes = b""
    tx_proof: list[Hash] = []
    order_count: Uint = 0
    orders: list[OrderProofArgs] = []
    witness: HexBytes = b""


@method("step", StepArgs)
def step(ctx: Ctx, args: StepArgs) -> dict[str, Any]:
    """The one-step proof. A witness that does not cover the transaction's reads, or any bad proof,
    is refused (WitnessIncomplete / BadProof) and changes nothing."""
    ref = GameRef(ctx, args.game_id)
    ref.verify_playable(ctx)
    seat = ref.seat(ctx)
    dispute.verify_can_move(ref.game, seat, ctx.time)
    proof = dispute.StepProof(
        tx=args.tx, tx_proof=tuple(args.tx_proof), order_count=args.order_count,
        orders=tuple(dispute.OrderProof(o.index, o.order, tuple(o.proof)) for o in args.orders),
        witness=args.witness,
    )
    outcome = dispute.compute_step_outcome(ref.game, header_of(ref.batch), proof, ChainBridge(ctx.s),
                                           ctx.genesis.preset)
    g = dispute.apply_step(ref.game, seat, outcome, ctx.time)
    ctx.emit("Stepped", game_id=args.game_id, batch_id=ref.batch.id, seat=seat.name.lower(), index=ref.game.lo,
             outcome=None if outcome is None else hex0x(outcome), rejected=outcome is None)
    return finish(ctx, ref, g)


class GameArgs(Args):
    game_id: Uint


@method("resolve", GameArgs)
def resolve(ctx: Ctx, args: GameArgs) -> dict[str, Any]:
    """Anyone closes a game: won by the challenger if another game proved the batch wrong,
    refunded if the batch fell with an ancestor, otherwise by the clock of the side to move."""
    ref = GameRef(ctx, args.game_id)
    if ref.batch.lost:
        g = dispute.resolve_batch_lost(ref.game)
    elif not is_valid(ctx.s, ctx.chain, ref.batch):
        g = dispute.resolve_refund(ref.game)
    else:
        g = dispute.resolve_timeout(ref.game, ctx.time)
    return finish(ctx, ref, g)


@method("claim", Args)
def claim(ctx: Ctx, args: Args) -> dict[str, Any]:
    """Move the sender's credited bonds and winnings to its native balance."""
    row = ctx.account(ctx.sender)
    # Verify there is something to claim
    if row.credit == 0:
        raise errors.Refused("nothing to claim", "nothing_to_claim")
    amount = row.credit
    row.credit = 0
    credit(row, "native", amount)
    ctx.emit("Claimed", address=ctx.sender, amount=amount)
    return {"claimed": amount}


# --- reads --------------------------------------------------------------------------------------


def list_games(s: Session, batch_id: int | None, address: str | None, status: str | None, after: int,
               limit: int) -> list[dict[str, Any]]:
    q = select(GameRow).where(GameRow.id > after)
    if batch_id is not None:
        q = q.where(GameRow.batch_id == batch_id)
    if address is not None:
        q = q.where(GameRow.challenger == address)
    if status is not None:
        q = q.where(GameRow.status == status)
    return [game_view(r) for r in s.scalars(q.order_by(GameRow.id).limit(limit))]


def view_bonds(s: Session, genesis: Genesis, address: str, claimable: int) -> dict[str, Any]:
    """Every bond of an address: locked in open games (as challenger, or as the sequencer's
    escrow) and claimable (credited winnings and refunds)."""
    is_sequencer = address == hex0x(genesis.sequencer)
    q = select(GameRow).where(GameRow.status == "open")
    if not is_sequencer:
        q = q.where(GameRow.challenger == address)
    locked = []
    for r in s.scalars(q.order_by(GameRow.id)):
        g = game_from_json(json.loads(r.state_json))
        amount = g.sequencer_bond if is_sequencer else g.challenger_bond
        locked.append({"game_id": r.id, "batch_id": r.batch_id, "amount": amount})
    return {"address": address, "locked": locked, "locked_total": sum(x["amount"] for x in locked),
            "claimable": claimable}
