"""The escape hatch on the base layer: anyone freezes the rollup once contracts_spec.escape allows
it; the escape root is then the last batch final at that moment; each account claims its value
there with a proof (once), and deposits that root never consumed go back to their accounts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts_spec import escape
from contracts_spec.types import Genesis
from l1_mock import errors
from l1_mock.chain import Ctx, credit, method
from l1_mock.contracts.args import AddressHex, Args, HexBytes, NoArgs, Uint
from l1_mock.contracts.rollup import genesis_root, get_freeze, last_final_batch
from l1_mock.envelope import hex0x, unhex
from l1_mock.models import (
    BatchRow,
    BlockRow,
    ChainRow,
    DepositRow,
    EscapeClaimRow,
    ForcedRow,
    FreezeRow,
    RefundedDepositRow,
)

# --- liveness ---------------------------------------------------------------------------------


def get_liveness(s: Session, chain: ChainRow, now: int) -> escape.Liveness:
    """What the spec's freeze rule reads: the last posting, and the oldest request the valid head
    has not consumed (one consumed only by a lost batch is unserved again)."""
    last_post = s.scalar(select(func.max(BatchRow.posted_time)))
    if last_post is None:
        deployed = s.get(BlockRow, 0)
        last_post = deployed.timestamp if deployed is not None else chain.head_time
    head = s.get(BatchRow, chain.head_batch_id) if chain.head_batch_id is not None else None
    forced = s.get(ForcedRow, head.forced_consumed if head is not None else 0)
    return escape.Liveness(now=now, last_batch_time=last_post,
                           oldest_unserved_forced_time=None if forced is None else forced.time)


def freeze_reason(liveness: escape.Liveness, genesis: Genesis) -> str | None:
    forced = liveness.oldest_unserved_forced_time
    if forced is not None and liveness.now > forced + genesis.preset.forced_inclusion_delay:
        return "forced_request_overdue"
    if escape.is_freeze_allowed(liveness, genesis.preset):
        return "no_batch"
    return None


# --- methods ----------------------------------------------------------------------------------


@method("freeze", NoArgs)
def freeze(ctx: Ctx, args: NoArgs) -> dict[str, Any]:
    """Freeze the rollup for good: no batch or game after this; the escape root is fixed now."""
    # Verify the rollup is not frozen already
    if get_freeze(ctx.s) is not None:
        raise errors.Refused("the rollup is already frozen", "already_frozen")
    liveness = get_liveness(ctx.s, ctx.chain, ctx.time)
    escape.verify_freeze(liveness, ctx.genesis.preset)
    batch = last_final_batch(ctx.s, ctx.chain, ctx.genesis, ctx.time)
    consumed = batch.deposits_consumed if batch is not None else 0
    reserved = sum(r.amount for r in ctx.s.scalars(select(DepositRow).where(DepositRow.index >= consumed)))
    row = FreezeRow(
        id=1, frozen_time=ctx.time, frozen_by=ctx.sender, reason=freeze_reason(liveness, ctx.genesis) or "",
        batch_id=batch.id if batch is not None else None, index=batch.index if batch is not None else -1,
        root=batch.post_root if batch is not None else hex0x(genesis_root(ctx.genesis)),
        deposits_consumed=consumed, reserved_deposits=reserved, refunded_deposits=0, escaped_total=0,
    )
    ctx.s.add(row)
    view = freeze_view(row, ctx.chain)
    ctx.emit("Frozen", **view)
    return view


def require_freeze(s: Session) -> FreezeRow:
    row = get_freeze(s)
    # Verify the rollup is frozen: escape claims and refunds exist only after a freeze
    if row is None:
        raise errors.Refused("the rollup is not frozen", "not_frozen")
    return row


class EscapeArgs(Args):
    account: AddressHex | None = None  # the account claimed for (paid to it); the sender by default
    proof: HexBytes  # contracts_spec.witness.prove_account against the escape root


@method("escape", EscapeArgs)
def claim_escape(ctx: Ctx, args: EscapeArgs) -> dict[str, Any]:
    """Pay an account its value at the escape root, proven by a multiproof of its leaves; once."""
    frozen = require_freeze(ctx.s)
    account = args.account or ctx.sender
    # Verify the account has not escaped before
    if ctx.s.get(EscapeClaimRow, account) is not None:
        raise errors.Refused(f"{account} has already escaped", "already_escaped")
    value = escape.compute_escape_value(unhex(frozen.root), args.proof, unhex(account))
    available = escape.compute_escape_available(ctx.chain.bridge_usdc,
                                                frozen.reserved_deposits - frozen.refunded_deposits)
    payment = escape.compute_escape_payment(value, available)
    escape.verify_escape_payment(payment)
    ctx.chain.bridge_usdc -= payment
    frozen.escaped_total += payment
    credit(ctx.account(account), "usdc", payment)
    ctx.s.add(EscapeClaimRow(account=account, value=value, paid=payment, block_number=ctx.block))
    ctx.emit("Escaped", account=account, value=value, paid=payment, root=frozen.root)
    return {"account": account, "value": value, "paid": payment}


class RefundArgs(Args):
    index: Uint  # the deposit-queue index


@method("refund_deposit", RefundArgs)
def refund_deposit(ctx: Ctx, args: RefundArgs) -> dict[str, Any]:
    """Return a deposit the escape root never consumed to its account (anyone may submit it)."""
    frozen = require_freeze(ctx.s)
    row = ctx.s.get(DepositRow, args.index)
    if row is None:
        raise errors.NotFound(f"no deposit {args.index}")
    escape.verify_deposit_refund(args.index, frozen.deposits_consumed)
    # Verify the deposit was not refunded before
    if ctx.s.get(RefundedDepositRow, args.index) is not None:
        raise errors.Refused(f"deposit {args.index} was already refunded", "already_refunded")
    if ctx.chain.bridge_usdc < row.amount:  # pragma: no cover - reserved at the freeze
        raise errors.Refused("the bridge holds less than the deposit", "bridge_insolvent")
    ctx.chain.bridge_usdc -= row.amount
    frozen.refunded_deposits += row.amount
    credit(ctx.account(row.account), "usdc", row.amount)
    ctx.s.add(RefundedDepositRow(index=args.index, account=row.account, amount=row.amount))
    ctx.emit("DepositRefunded", index=args.index, account=row.account, amount=row.amount)
    return {"index": args.index, "account": row.account, "amount": row.amount}


# --- reads ------------------------------------------------------------------------------------


def freeze_view(row: FreezeRow, chain: ChainRow) -> dict[str, Any]:
    unrefunded = row.reserved_deposits - row.refunded_deposits
    return {
        "frozen_time": row.frozen_time, "frozen_by": row.frozen_by, "reason": row.reason,
        "batch_id": row.batch_id, "index": row.index, "root": row.root,
        "deposits_consumed": row.deposits_consumed, "reserved_deposits": row.reserved_deposits,
        "refunded_deposits": row.refunded_deposits, "escaped_total": row.escaped_total,
        "available": escape.compute_escape_available(chain.bridge_usdc, unrefunded),
        "bridge_usdc": chain.bridge_usdc,
    }


def view_escape(s: Session, chain: ChainRow, genesis: Genesis, now: int) -> dict[str, Any]:
    """Whether the rollup is frozen (and its escape root), or whether it may be frozen now."""
    row = get_freeze(s)
    liveness = get_liveness(s, chain, now)
    view: dict[str, Any] = {
        "frozen": row is not None, "time": now,
        "liveness": {"last_batch_time": liveness.last_batch_time,
                     "oldest_unserved_forced_time": liveness.oldest_unserved_forced_time},
        "freeze_allowed": row is None and escape.is_freeze_allowed(liveness, genesis.preset),
        "freeze_reason": None if row is not None else freeze_reason(liveness, genesis),
        "freeze": None if row is None else freeze_view(row, chain),
    }
    return view


def view_claim(s: Session, address: str) -> dict[str, Any]:
    row = s.get(EscapeClaimRow, address)
    return {"account": address, "escaped": row is not None, "value": row.value if row else None,
            "paid": row.paid if row else None}


def view_refund(s: Session, index: int) -> dict[str, Any]:
    row = s.get(RefundedDepositRow, index)
    return {"index": index, "refunded": row is not None, "amount": row.amount if row else None}
