"""The bridge: USDC deposits queued for the rollup, forced withdrawal requests, and withdrawals
paid from final batches against their withdrawal root, each leaf once. `ChainBridge` is the
STF's BridgeView over this storage: queue entries come from here, never from a prover.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts_spec import dispute
from contracts_spec.types import Atoms, DepositEntry, ForcedEntry, GovernanceEntry, WithdrawalLeaf
from l1_mock import errors
from l1_mock.chain import Ctx, credit, debit, method
from l1_mock.contracts.args import AddressHex, Args, Hash, Uint
from l1_mock.contracts.governance import entry_of
from l1_mock.envelope import unhex
from l1_mock.models import BatchRow, DepositRow, ForcedRow, GovernanceRow, PaidWithdrawalRow


class ChainBridge:
    """contracts_spec.stf.BridgeView over the chain's queues."""

    def __init__(self, s: Session) -> None:
        self.s = s

    def deposit(self, index: int) -> DepositEntry | None:
        row = self.s.get(DepositRow, index)
        return None if row is None else DepositEntry(unhex(row.account), Atoms(row.amount))

    def forced(self, index: int) -> ForcedEntry | None:
        row = self.s.get(ForcedRow, index)
        return None if row is None else ForcedEntry(unhex(row.account), Atoms(row.amount))

    def governance(self, index: int) -> GovernanceEntry | None:
        row = self.s.get(GovernanceRow, index)
        return None if row is None else entry_of(row)


def _next_index(s: Session, column: Any) -> int:
    last = s.scalar(select(func.max(column)))
    return 0 if last is None else last + 1


class DepositArgs(Args):
    account: AddressHex | None = None  # the rollup account credited; the sender by default
    amount: Uint


@method("deposit", DepositArgs)
def deposit(ctx: Ctx, args: DepositArgs) -> dict[str, Any]:
    """Lock USDC in the bridge and queue it for the rollup."""
    from l1_mock.contracts.rollup import verify_live

    verify_live(ctx.s, "a deposit")
    # Verify the amount is positive
    if args.amount == 0:
        raise errors.Malformed("a deposit must be positive")
    debit(ctx.account(ctx.sender), "usdc", args.amount)
    ctx.chain.bridge_usdc += args.amount
    account = args.account or ctx.sender
    index = _next_index(ctx.s, DepositRow.index)
    ctx.s.add(DepositRow(index=index, account=account, amount=args.amount, time=ctx.time, block_number=ctx.block))
    ctx.emit("Deposited", index=index, account=account, amount=args.amount, time=ctx.time)
    return {"index": index}


class ForcedArgs(Args):
    amount: Uint


@method("request_withdrawal", ForcedArgs)
def request_withdrawal(ctx: Ctx, args: ForcedArgs) -> dict[str, Any]:
    """A forced withdrawal request: the sequencer must consume it within the delay."""
    from l1_mock.contracts.rollup import verify_live

    verify_live(ctx.s, "a forced withdrawal request")
    if args.amount == 0:
        raise errors.Malformed("a withdrawal request must be positive")
    index = _next_index(ctx.s, ForcedRow.index)
    ctx.s.add(ForcedRow(index=index, account=ctx.sender, amount=args.amount, time=ctx.time, block_number=ctx.block))
    ctx.emit("WithdrawalRequested", index=index, account=ctx.sender, amount=args.amount, time=ctx.time)
    return {"index": index}


class WithdrawArgs(Args):
    batch_id: Uint
    leaf_index: Uint
    account: AddressHex
    amount: Uint
    proof: list[Hash]


@method("withdraw", WithdrawArgs)
def withdraw(ctx: Ctx, args: WithdrawArgs) -> dict[str, Any]:
    """Pay a withdrawal leaf of a final batch's tree to its account (anyone may submit it)."""
    from l1_mock.contracts.rollup import mark_final

    batch = ctx.s.get(BatchRow, args.batch_id)
    if batch is None:
        raise errors.NotFound(f"no batch {args.batch_id}")
    # Verify the batch is final
    if not mark_final(ctx.s, ctx.chain, ctx.genesis, batch, ctx.time):
        raise errors.Refused("the batch is not final", "not_final")
    # Verify the leaf is in the batch's withdrawal tree and was never paid
    leaf = WithdrawalLeaf(args.leaf_index, unhex(args.account), Atoms(args.amount))
    dispute.verify_withdrawal(unhex(batch.withdrawal_root), batch.withdrawal_count, leaf, args.proof)
    if ctx.s.get(PaidWithdrawalRow, args.leaf_index) is not None:
        raise errors.Refused(f"withdrawal {args.leaf_index} was already paid", "already_paid")
    if ctx.chain.bridge_usdc < args.amount:  # pragma: no cover - conservation in the STF excludes it
        raise errors.Refused("the bridge holds less than the withdrawal", "bridge_insolvent")
    ctx.chain.bridge_usdc -= args.amount
    credit(ctx.account(args.account), "usdc", args.amount)
    ctx.s.add(PaidWithdrawalRow(leaf_index=args.leaf_index, batch_id=batch.id, account=args.account,
                                amount=args.amount))
    ctx.emit("WithdrawalPaid", leaf_index=args.leaf_index, account=args.account, amount=args.amount,
             batch_id=batch.id)
    return {"paid": args.amount}


def view_queue_entry(s: Session, forced: bool, index: int) -> dict[str, Any]:
    row: DepositRow | ForcedRow | None = s.get(ForcedRow, index) if forced else s.get(DepositRow, index)
    if row is None:
        raise errors.NotFound(f"no {'forced request' if forced else 'deposit'} {index}")
    return {"index": row.index, "account": row.account, "amount": row.amount, "time": row.time,
            "block": row.block_number}


def view_paid(s: Session, leaf_index: int) -> dict[str, Any]:
    row = s.get(PaidWithdrawalRow, leaf_index)
    return {"leaf_index": leaf_index, "paid": row is not None, "batch_id": row.batch_id if row else None}



