"""The verifier's own database: the event cursor, every batch with its verdict, checkpoints of the
state, the bridge queues, the games it plays or watches with their moves, and its alerts.

SQLAlchemy 2 on SQLite (WAL) by default, PostgreSQL by URL, optionally inside a schema. Rows
stop here: `verifier.node` converts them to spec values before calling `contracts_spec`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from l1_mock import db as l1_db
from verifier.snapshot import SnapshotError, delta_base


class Base(DeclarativeBase):
    pass


class NodeRow(Base):
    """One row: what this database belongs to and how far the node has followed."""

    __tablename__ = "node"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    genesis_hash: Mapped[str] = mapped_column(String(66))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str | None] = mapped_column(String(42))  # the operator key this database plays for
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)  # last base-layer event id handled
    head_batch_id: Mapped[int | None] = mapped_column(BigInteger)  # our verified head (None: genesis)
    head_index: Mapped[int] = mapped_column(BigInteger, default=-1)
    head_root: Mapped[str] = mapped_column(String(66))
    l1_head_block: Mapped[int] = mapped_column(BigInteger, default=0)
    l1_time: Mapped[int] = mapped_column(BigInteger, default=0)  # the chain's time at the last sync


class BatchRow(Base):
    """A batch posted on the base layer, with what the node concluded about it."""

    __tablename__ = "batches"
    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger)
    parent_id: Mapped[int | None] = mapped_column(BigInteger)
    header: Mapped[bytes] = mapped_column(LargeBinary)
    prev_root: Mapped[str] = mapped_column(String(66))
    post_root: Mapped[str] = mapped_column(String(66))  # claimed
    data_hash: Mapped[str] = mapped_column(String(66))
    tx_count: Mapped[int] = mapped_column(Integer)
    time: Mapped[int] = mapped_column(BigInteger)  # the header's time: the STF's `now`
    posted_time: Mapped[int] = mapped_column(BigInteger)
    posted_block: Mapped[int] = mapped_column(BigInteger)
    window_ends: Mapped[int] = mapped_column(BigInteger)
    l1_status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, lost, invalid
    # None until verified; valid, invalid (our root differs), skipped (built on a wrong batch)
    verdict: Mapped[str | None] = mapped_column(String(16))
    computed_root: Mapped[str | None] = mapped_column(String(66))
    mismatch_json: Mapped[str | None] = mapped_column(Text)  # {field: [expected, claimed]}
    rejected_index: Mapped[int | None] = mapped_column(Integer)
    rejected_error: Mapped[str | None] = mapped_column(Text)
    trades: Mapped[int] = mapped_column(Integer, default=0)
    verify_seconds: Mapped[float | None] = mapped_column(Float)
    verified_l1_time: Mapped[int | None] = mapped_column(BigInteger)


Index("ix_batches_parent", BatchRow.parent_id)


class CheckpointRow(Base):
    """The state after a verified batch (verifier.snapshot), so a restart replays little: all of
    it, or a delta over an older checkpoint of the same chain that the blob names."""

    __tablename__ = "checkpoints"
    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(66))
    blob: Mapped[bytes] = mapped_column(LargeBinary)


class QueueRow(Base):
    """A bridge queue entry (deposit or forced withdrawal), as the chain's events announced it."""

    __tablename__ = "queue"
    forced: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BigInteger)  # USDC atoms


class GameRow(Base):
    """A game on the base layer: one of ours, or one the node watches."""

    __tablename__ = "games"
    game_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    challenger: Mapped[str] = mapped_column(String(42))
    mine: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="open")
    game_json: Mapped[str] = mapped_column(Text)  # the latest contracts_spec.dispute.Game we saw
    payout_json: Mapped[str | None] = mapped_column(Text)
    opened_block: Mapped[int] = mapped_column(BigInteger)
    opened_time: Mapped[int] = mapped_column(BigInteger)
    resolved_block: Mapped[int | None] = mapped_column(BigInteger)
    warned: Mapped[str | None] = mapped_column(String(32))  # the last warning kind raised, once each


class MoveRow(Base):
    """A move in a game, from the chain's events: open, reveal, answer, step, resolve."""

    __tablename__ = "moves"
    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    game_id: Mapped[int] = mapped_column(BigInteger)
    block: Mapped[int] = mapped_column(BigInteger)
    seat: Mapped[str | None] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    data_json: Mapped[str] = mapped_column(Text)


Index("ix_moves_game", MoveRow.game_id)


class AlertRow(Base):
    """Something an operator should know: a game heading the wrong way, a bond we could not post."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    l1_time: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    game_id: Mapped[int | None] = mapped_column(BigInteger)
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text)


# --- engine -------------------------------------------------------------------------------------


def make_engine(url: str, schema: str | None = None) -> Engine:
    engine = l1_db.make_engine(url, schema, foreign_keys=False)
    l1_db.create_tables(Base.metadata, engine)
    return engine


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# --- small repository helpers ---------------------------------------------------------------------


def get_node(s: Session) -> NodeRow | None:
    return s.get(NodeRow, 1)


def checkpoint_chain(s: Session, ck: CheckpointRow) -> list[CheckpointRow]:
    """The checkpoints that together hold the state at `ck`: a full one, then deltas, ending at `ck`."""
    chain = [ck]
    while (base := delta_base(chain[-1].blob)) is not None:
        row = s.get(CheckpointRow, base)
        if row is None:
            raise SnapshotError(f"checkpoint at batch {chain[-1].batch_id} builds on a missing one at {base}")
        chain.append(row)
    chain.reverse()
    return chain


def latest_checkpoint_on(s: Session, chain: list[int]) -> CheckpointRow | None:
    """The newest checkpoint among the batch ids of `chain` (newest first)."""
    if not chain:
        return None
    found = set(s.scalars(select(CheckpointRow.batch_id).where(CheckpointRow.batch_id.in_(chain))))
    for batch_id in chain:
        if batch_id in found:
            return s.get(CheckpointRow, batch_id)
    return None
