"""The rollup contract: the sequencer's stake, batch posting (checked by contracts_spec.dispute.
verify_batch), the valid chain of batches with O(1) rollback, finality, and data by hash.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts_spec import codec, dispute, escape
from contracts_spec.crypto import keccak
from contracts_spec.errors import DecodeError
from contracts_spec.params import genesis_to_json
from contracts_spec.state import State
from contracts_spec.types import BatchHeader, Genesis
from l1_mock import errors
from l1_mock.chain import Ctx, debit, method
from l1_mock.contracts.args import Args, HexBytes, Uint
from l1_mock.envelope import hex0x, unhex
from l1_mock.models import (
    AccountRow,
    BatchDataRow,
    BatchRow,
    CanonicalRow,
    ChainRow,
    DepositRow,
    ForcedRow,
    FreezeRow,
    GovernanceRow,
)

_GENESIS_ROOTS: dict[str, bytes] = {}


def genesis_root(genesis: Genesis) -> bytes:
    key = genesis_to_json(genesis)
    root = _GENESIS_ROOTS.get(key)
    if root is None:
        root = _GENESIS_ROOTS[key] = State.from_genesis(genesis).root()
    return root


# --- stake ----------------------------------------------------------------------------------


class StakeArgs(Args):
    amount: Uint


@method("register_sequencer", StakeArgs)
def register_sequencer(ctx: Ctx, args: StakeArgs) -> dict[str, Any]:
    """Stake (or add stake) as the genesis sequencer; posting needs at least sequencer_stake_min free."""
    # Verify the sender is the genesis sequencer
    if ctx.sender != hex0x(ctx.genesis.sequencer):
        raise errors.Forbidden("only the genesis sequencer stakes", "not_sequencer")
    debit(ctx.account(ctx.sender), "native", args.amount)
    ctx.chain.sequencer_stake += args.amount
    ctx.chain.sequencer_registered = True
    ctx.emit("SequencerStaked", sequencer=ctx.sender, amount=args.amount, stake=ctx.chain.sequencer_stake)
    return {"stake": ctx.chain.sequencer_stake}


# --- the escape hatch's switch ------------------------------------------------------------------


def get_freeze(s: Session) -> FreezeRow | None:
    return s.get(FreezeRow, 1)


def verify_live(s: Session, what: str) -> None:
    # Verify the rollup is not frozen: after a freeze only escape claims, refunds and payouts remain
    if get_freeze(s) is not None:
        raise errors.Refused(f"the rollup is frozen: {what} is refused; use the escape hatch", "frozen")


# --- the valid chain --------------------------------------------------------------------------


def is_valid(s: Session, chain: ChainRow, batch: BatchRow) -> bool:
    """On the valid chain: not lost, and still the canonical batch at its index."""
    if batch.lost or batch.index > chain.head_index:
        return False
    canon = s.get(CanonicalRow, batch.index)
    return canon is not None and canon.batch_id == batch.id


def get_parent(s: Session, chain: ChainRow, genesis: Genesis) -> dispute.Parent:
    if chain.head_batch_id is None:
        return dispute.Parent(-1, genesis_root(genesis), genesis.genesis_time)
    head = s.get(BatchRow, chain.head_batch_id)
    assert head is not None
    return dispute.Parent(head.index, unhex(head.post_root), head.time, head.governance_applied)


def invalidate(ctx: Ctx, batch: BatchRow) -> None:
    """A batch lost a game: it and everything built on it leave the valid chain, in O(1)."""
    was_valid = is_valid(ctx.s, ctx.chain, batch)
    batch.lost = True
    if was_valid:
        ctx.chain.head_index = batch.index - 1
        ctx.chain.head_batch_id = batch.parent_id
    ctx.emit("BatchInvalidated", batch_id=batch.id, index=batch.index, head_index=ctx.chain.head_index,
             head_batch_id=ctx.chain.head_batch_id)


def _final_given(s: Session, chain: ChainRow, genesis: Genesis, b: BatchRow, now: int, parent_final: bool) -> bool:
    return dispute.is_final(b.posted_time, now, genesis.preset, b.open_games, b.lost, not is_valid(s, chain, b),
                            parent_final)


def _not_known_final(s: Session, row: BatchRow | None) -> tuple[list[BatchRow], BatchRow | None]:
    """`row` and its ancestors down to the first one known final, newest first, and that one
    (None: they go down to genesis)."""
    pending: list[BatchRow] = []
    while row is not None and not row.final:
        pending.append(row)
        row = s.get(BatchRow, row.parent_id) if row.parent_id is not None else None
    return pending, row


def is_final(s: Session, chain: ChainRow, genesis: Genesis, batch: BatchRow, now: int) -> bool:
    """Final: valid, window passed, no open game, none lost, and the parent final. The batch's own
    terms first (a batch inside its window answers at once), then a walk back only over ancestors
    not yet known final: posting caches finality (`last_final_batch`), so that walk spans at most
    the batches posted within about a window, never the chain since genesis."""
    freeze = get_freeze(s)
    if freeze is not None:
        return escape.is_final_after_freeze(is_valid(s, chain, batch), batch.index, freeze.index)
    if batch.final:
        return True
    if not _final_given(s, chain, genesis, batch, now, True):
        return False
    parent = s.get(BatchRow, batch.parent_id) if batch.parent_id is not None else None
    parent_final = True
    for b in reversed(_not_known_final(s, parent)[0]):
        parent_final = _final_given(s, chain, genesis, b, now, parent_final)
        if not parent_final:
            return False
    return True


def mark_final(s: Session, chain: ChainRow, genesis: Genesis, batch: BatchRow, now: int) -> bool:
    """is_final, caching the answer on the batch and its ancestors (only inside a transaction)."""
    if not is_final(s, chain, genesis, batch, now):
        return False
    for row in _not_known_final(s, batch)[0]:
        row.final = True
    return True


def last_final_batch(s: Session, chain: ChainRow, genesis: Genesis, now: int) -> BatchRow | None:
    """The highest batch of the valid chain that is final now (None: none is, the genesis root),
    caching the answer on it and its ancestors (only inside a transaction).

    One walk down to the first batch known final, then finality up from there: O(pending).
    """
    head = s.get(BatchRow, chain.head_batch_id) if chain.head_batch_id is not None else None
    pending, last = _not_known_final(s, head)
    for b in reversed(pending):
        if not _final_given(s, chain, genesis, b, now, True):
            break
        b.final = True
        last = b
    return last


def batch_status(s: Session, chain: ChainRow, genesis: Genesis, batch: BatchRow, now: int) -> str:
    if batch.lost:
        return "lost"
    if not is_valid(s, chain, batch):
        return "invalid"
    if is_final(s, chain, genesis, batch, now):
        return "final"
    return "pending"


# --- posting ----------------------------------------------------------------------------------


class PostArgs(Args):
    header: HexBytes  # codec.encode_header
    data: HexBytes  # codec.encode_batch_data
    globals_proof: HexBytes  # witness.prove_globals of the post-state


class ChainQueueTimes:
    def __init__(self, s: Session) -> None:
        self.s = s

    def deposit_time(self, index: int) -> int | None:
        row = self.s.get(DepositRow, index)
        return None if row is None else row.time

    def forced_time(self, index: int) -> int | None:
        row = self.s.get(ForcedRow, index)
        return None if row is None else row.time

    def governance_time(self, index: int) -> int | None:
        row = self.s.get(GovernanceRow, index)
        return None if row is None else row.effective_time


@method("post_batch", PostArgs)
def post_batch(ctx: Ctx, args: PostArgs) -> dict[str, Any]:
    preset = ctx.genesis.preset
    verify_live(ctx.s, "posting a batch")
    # Verify the sender is the registered sequencer with enough free stake
    if ctx.sender != hex0x(ctx.genesis.sequencer):
        raise errors.Forbidden("only the genesis sequencer posts batches", "not_sequencer")
    if not ctx.chain.sequencer_registered or ctx.chain.sequencer_stake < preset.sequencer_stake_min:
        raise errors.Refused(f"free stake {ctx.chain.sequencer_stake} below {preset.sequencer_stake_min}",
                             "insufficient_stake")
    try:
        header = codec.decode_header(args.header)
    except DecodeError as exc:
        raise errors.Malformed(f"bad header: {exc}") from exc
    # Cache the finality the chain has reached: every read of a batch (is_final) then walks back
    # only over the batches since, not over the whole chain once per read
    last_final_batch(ctx.s, ctx.chain, ctx.genesis, ctx.time)
    queues = ChainQueueTimes(ctx.s)
    posting = dispute.verify_batch(preset, header, args.data, args.globals_proof,
                                   get_parent(ctx.s, ctx.chain, ctx.genesis), ctx.time,
                                   queues.deposit_time, queues.forced_time, queues.governance_time)
    data_hash = hex0x(header.data_hash)
    if ctx.s.get(BatchDataRow, data_hash) is None:
        ctx.s.add(BatchDataRow(data_hash=data_hash, data=args.data))
    hh = hex0x(keccak(args.header))
    # Verify the very same header was not posted before (it would be a replay after a rollback)
    if ctx.s.scalar(select(BatchRow.id).where(BatchRow.header_hash == hh)) is not None:
        raise errors.Refused("this header was already posted", "duplicate_header")
    row = BatchRow(
        index=header.index, parent_id=ctx.chain.head_batch_id, header_hash=hh, header=args.header,
        prev_root=hex0x(header.prev_root), post_root=hex0x(header.post_root), tx_count=header.tx_count,
        tx_root=hex0x(header.tx_root), orders_root=hex0x(header.orders_root),
        withdrawal_root=hex0x(header.withdrawal_root), withdrawal_count=posting.globals.withdrawal_count,
        deposits_consumed=header.deposits_consumed, forced_consumed=header.forced_consumed,
        governance_applied=posting.globals.governance_applied, data_hash=data_hash, time=header.time, posted_block=ctx.block, posted_time=ctx.time,
        open_games=0, lost=False, final=False,
    )
    ctx.s.add(row)
    ctx.s.flush()
    canon = ctx.s.get(CanonicalRow, header.index)
    if canon is None:
        ctx.s.add(CanonicalRow(index=header.index, batch_id=row.id))
    else:
        canon.batch_id = row.id
    ctx.chain.head_index = header.index
    ctx.chain.head_batch_id = row.id
    view = batch_view(row, "pending", preset.challenge_window)
    ctx.emit("BatchPosted", **view)
    return view


def header_of(batch: BatchRow) -> BatchHeader:
    return codec.decode_header(batch.header)


def batch_view(batch: BatchRow, status: str, window: int) -> dict[str, Any]:
    return {
        "batch_id": batch.id, "index": batch.index, "parent_id": batch.parent_id, "status": status,
        "header": "0x" + batch.header.hex(), "header_hash": batch.header_hash, "prev_root": batch.prev_root,
        "post_root": batch.post_root, "tx_count": batch.tx_count, "tx_root": batch.tx_root,
        "orders_root": batch.orders_root, "withdrawal_root": batch.withdrawal_root,
        "withdrawal_count": batch.withdrawal_count, "deposits_consumed": batch.deposits_consumed,
        "forced_consumed": batch.forced_consumed, "governance_applied": batch.governance_applied,
        "data_hash": batch.data_hash, "time": batch.time,
        "posted_block": batch.posted_block, "posted_time": batch.posted_time,
        "window_ends": batch.posted_time + window, "open_games": batch.open_games,
    }


# --- reads ------------------------------------------------------------------------------------


def view_batch(s: Session, chain: ChainRow, genesis: Genesis, batch: BatchRow, now: int) -> dict[str, Any]:
    return batch_view(batch, batch_status(s, chain, genesis, batch, now), genesis.preset.challenge_window)


def view_rollup(s: Session, chain: ChainRow, genesis: Genesis, now: int) -> dict[str, Any]:
    parent = get_parent(s, chain, genesis)
    deposits = s.scalar(select(func.max(DepositRow.index)))
    forced = s.scalar(select(func.max(ForcedRow.index)))
    seq = s.get(AccountRow, hex0x(genesis.sequencer))
    return {
        "sequencer": hex0x(genesis.sequencer), "registered": chain.sequencer_registered,
        "stake": chain.sequencer_stake, "sequencer_credit": seq.credit if seq else 0,
        "head_index": parent.index, "head_batch_id": chain.head_batch_id,
        "head_root": hex0x(parent.post_root), "head_time": parent.time,
        "genesis_root": hex0x(genesis_root(genesis)), "burnt": chain.burnt, "bridge_usdc": chain.bridge_usdc,
        "governance_applied": parent.governance_applied, "frozen": get_freeze(s) is not None,
        "deposit_count": 0 if deposits is None else deposits + 1,
        "forced_count": 0 if forced is None else forced + 1,
        "time": now,
    }
