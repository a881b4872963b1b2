"""The chain's storage as SQLAlchemy 2 models: blocks, accounts, receipts, events, batches and
their data, games, credits and the bridge queues. Rows stop here: services convert them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class BigUint(TypeDecorator[int]):
    """Unbounded non-negative integers (wei-like balances) stored as decimal text: portable and exact."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> int | None:
        return None if value is None else int(value)


class Base(DeclarativeBase):
    pass


class ChainRow(Base):
    """The singleton holding chain-wide state (id = 1)."""

    __tablename__ = "chain"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    genesis_json: Mapped[str] = mapped_column(Text)
    base_time: Mapped[int] = mapped_column(BigInteger)  # chain time at first start (manual mode)
    time_offset: Mapped[int] = mapped_column(BigInteger, default=0)  # added by the admin call
    head_block: Mapped[int] = mapped_column(BigInteger, default=0)
    head_time: Mapped[int] = mapped_column(BigInteger)
    # rollup
    sequencer_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    sequencer_stake: Mapped[int] = mapped_column(BigUint, default=0)  # free stake (escrows removed)
    head_index: Mapped[int] = mapped_column(BigInteger, default=-1)  # last valid batch's index
    head_batch_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    burnt: Mapped[int] = mapped_column(BigUint, default=0)
    bridge_usdc: Mapped[int] = mapped_column(BigUint, default=0)  # USDC locked in the bridge


class BlockRow(Base):
    __tablename__ = "blocks"
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_count: Mapped[int] = mapped_column(Integer, default=0)


class AccountRow(Base):
    __tablename__ = "accounts"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[int] = mapped_column(BigInteger, default=0)
    native: Mapped[int] = mapped_column(BigUint, default=0)
    usdc: Mapped[int] = mapped_column(BigUint, default=0)
    credit: Mapped[int] = mapped_column(BigUint, default=0)  # claimable bonds and winnings (native)


class TxRow(Base):
    __tablename__ = "txs"
    hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    sender: Mapped[str] = mapped_column(String(42), index=True)
    nonce: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(64))
    result_json: Mapped[str] = mapped_column(Text)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    data_json: Mapped[str] = mapped_column(Text)


class BatchDataRow(Base):
    """Batch data by hash, kept forever (data availability)."""

    __tablename__ = "batch_data"
    data_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class BatchRow(Base):
    """A posted batch. `id` is the posting order; `index` is its place in the rollup's chain
    (an index is posted again after a rollback, so it is not unique)."""

    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    index: Mapped[int] = mapped_column(BigInteger, index=True)
    parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    header_hash: Mapped[str] = mapped_column(String(66), unique=True)
    header: Mapped[bytes] = mapped_column(LargeBinary)  # the canonical encoding
    prev_root: Mapped[str] = mapped_column(String(66))
    post_root: Mapped[str] = mapped_column(String(66))
    tx_count: Mapped[int] = mapped_column(Integer)
    tx_root: Mapped[str] = mapped_column(String(66))
    orders_root: Mapped[str] = mapped_column(String(66))
    withdrawal_root: Mapped[str] = mapped_column(String(66))
    withdrawal_count: Mapped[int] = mapped_column(BigInteger)  # leaves in the tree after the batch
    deposits_consumed: Mapped[int] = mapped_column(BigInteger)
    forced_consumed: Mapped[int] = mapped_column(BigInteger)
    governance_applied: Mapped[int] = mapped_column(BigInteger, default=0)  # the post-state's governance position
    data_hash: Mapped[str] = mapped_column(String(66), ForeignKey("batch_data.data_hash"))
    time: Mapped[int] = mapped_column(BigInteger)  # the header's time
    posted_block: Mapped[int] = mapped_column(BigInteger)
    posted_time: Mapped[int] = mapped_column(BigInteger)  # block time of posting: the window starts here
    open_games: Mapped[int] = mapped_column(Integer, default=0)
    lost: Mapped[bool] = mapped_column(Boolean, default=False)
    final: Mapped[bool] = mapped_column(Boolean, default=False)  # cached once proven final


class CanonicalRow(Base):
    """index -> the batch id holding that index in the valid chain (stale above head_index)."""

    __tablename__ = "canonical"
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger)


class GameRow(Base):
    __tablename__ = "games"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("batches.id"), index=True)
    challenger: Mapped[str] = mapped_column(String(42), index=True)
    state_json: Mapped[str] = mapped_column(Text)  # the spec's Game, O(1) in size whatever the moves
    status: Mapped[str] = mapped_column(String(24), index=True)
    moves: Mapped[int] = mapped_column(Integer, default=0)
    payout_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class DepositRow(Base):
    __tablename__ = "deposits"
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BigUint)
    time: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)


class ForcedRow(Base):
    __tablename__ = "forced"
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BigUint)
    time: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)


class PaidWithdrawalRow(Base):
    """Withdrawal-tree leaves already paid: the tree is global and append-only, so a leaf index is unique."""

    __tablename__ = "paid_withdrawals"
    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    account: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BigUint)


class GovernanceRow(Base):
    """An announced governance change: the queue ApplyGovernance reads (never changes once queued)."""

    __tablename__ = "governance"
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    change: Mapped[bytes] = mapped_column(LargeBinary)  # codec.encode_governance_change
    announced_time: Mapped[int] = mapped_column(BigInteger)
    effective_time: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)


class FreezeRow(Base):
    """The escape hatch, once pulled (id = 1): the escape root is fixed here for good."""

    __tablename__ = "freeze"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    frozen_time: Mapped[int] = mapped_column(BigInteger)
    frozen_by: Mapped[str] = mapped_column(String(42))
    reason: Mapped[str] = mapped_column(String(32))  # forced_request_overdue | no_batch
    batch_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the last final batch; None: genesis
    index: Mapped[int] = mapped_column(BigInteger)  # its rollup index (-1: genesis)
    root: Mapped[str] = mapped_column(String(66))  # the escape root
    deposits_consumed: Mapped[int] = mapped_column(BigInteger)
    reserved_deposits: Mapped[int] = mapped_column(BigUint)  # deposits the root never consumed, at the freeze
    refunded_deposits: Mapped[int] = mapped_column(BigUint, default=0)
    escaped_total: Mapped[int] = mapped_column(BigUint, default=0)  # paid to escape claims


class EscapeClaimRow(Base):
    """One escape claim per account."""

    __tablename__ = "escape_claims"
    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    value: Mapped[int] = mapped_column(BigUint)  # the account's value at the escape root
    paid: Mapped[int] = mapped_column(BigUint)  # capped by what the bridge could pay
    block_number: Mapped[int] = mapped_column(BigInteger)


class RefundedDepositRow(Base):
    """Deposits returned after a freeze because the escape root never consumed them."""

    __tablename__ = "refunded_deposits"
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BigUint)


Index("ix_games_batch_status", GameRow.batch_id, GameRow.status)
