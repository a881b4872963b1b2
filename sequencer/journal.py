"""The durable journal: every input the engine saw, in order, and every batch cut from its output.

A request is acknowledged only after its record is committed here. One writer thread groups
whatever arrived while the previous commit was running into the next transaction, so many
requests share one commit (one fsync): durability costs latency, not throughput
(bench/journal.py measures both). Replaying the records through a fresh engine rebuilds the
book, the accounts and the output stream exactly; a snapshot of the core at record S, stored
once the records up to S are, lets a restart replay only the records after S (sequencer/snapshot.py).
SQLite (WAL, synchronous=FULL) by default; PostgreSQL by URL, optionally inside a schema.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    select,
    update,
)

from l1_mock import db as l1_db

log = logging.getLogger("rampart.journal")

metadata = MetaData()

records = Table(
    "journal",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", SmallInteger, nullable=False),
    Column("now", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),  # rollup batch index
    Column("first_out", BigInteger, nullable=False),  # engine outputs [first_out, end_out)
    Column("end_out", BigInteger, nullable=False),
    Column("dropped", Text, nullable=False, default=""),  # comma-separated outputs left out
    Column("header", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),  # built, posted, final, invalid
    Column("l1_batch_id", BigInteger, nullable=True),
    Column("posted_time", BigInteger, nullable=True),
)

# Batches the base layer lost (a game won against them, or an ancestor lost): moved here from
# `batches` by a rollback, whose re-posted batches then take their indices.
lost_batches = Table(
    "lost_batches",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("rollback", BigInteger, nullable=False),  # the journal seq of the ROLLBACK record (0: not yet)
    Column("idx", BigInteger, nullable=False),
    Column("first_out", BigInteger, nullable=False),
    Column("end_out", BigInteger, nullable=False),
    Column("dropped", Text, nullable=False, default=""),
    Column("header", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("l1_batch_id", BigInteger, nullable=True),
    Column("posted_time", BigInteger, nullable=True),
)

# The core at record `seq` (sequencer/snapshot.py); the newest KEEP_SNAPSHOTS are kept. The header
# row is written after the body's parts and after every record up to `seq` committed: a snapshot
# without it is incomplete and never read, and none runs ahead of the records.
snapshots = Table(
    "snapshots",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("created", BigInteger, nullable=False),  # unix time
    Column("genesis", String(64), nullable=False),  # hex keccak of the genesis JSON
    Column("version", Integer, nullable=False),  # sequencer.snapshot.VERSION
    Column("size", BigInteger, nullable=False),  # bytes of the body, over its parts
)

snapshot_parts = Table(
    "snapshot_parts",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("part", Integer, primary_key=True, autoincrement=False),
    Column("body", LargeBinary, nullable=False),
)

KEEP_SNAPSHOTS = 2
# One transaction per part: SQLite has one writer, and the journal's commits wait for the
# snapshot's only this long at a time (a 70 MB body in one piece held them up to 2 s).
PART_BYTES = 4 << 20

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def _store_snapshot(engine: Engine, row: SnapshotRow) -> None:
    """Write one snapshot, its parts first and its header last, then drop all but the newest
    KEEP_SNAPSHOTS and any part left without a header (a write cut short)."""
    body = row.body
    with engine.connect() as conn:
        conn.execute(snapshots.delete().where(snapshots.c.seq == row.seq))
        conn.execute(snapshot_parts.delete().where(snapshot_parts.c.seq == row.seq))
        conn.commit()
        for part, start in enumerate(range(0, len(body), PART_BYTES)):
            conn.execute(snapshot_parts.insert().values(seq=row.seq, part=part, body=body[start:start + PART_BYTES]))
            conn.commit()
        conn.execute(snapshots.insert().values(seq=row.seq, created=row.created, genesis=row.genesis,
                                               version=row.version, size=len(body)))
        keep = select(snapshots.c.seq).order_by(snapshots.c.seq.desc()).limit(KEEP_SNAPSHOTS).subquery()
        conn.execute(snapshots.delete().where(snapshots.c.seq.not_in(select(keep.c.seq))))
        conn.execute(snapshot_parts.delete().where(snapshot_parts.c.seq.not_in(select(snapshots.c.seq))))
        conn.commit()


def make_engine(url: str, schema: str | None = None) -> Engine:
    # FULL: every commit is fsynced before it returns, so an acknowledgement survives power
    # loss too, not only kill -9 (group commit pays for it, see bench/journal.py)
    return l1_db.make_engine(url, schema, synchronous="FULL", foreign_keys=False)


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    kind: int
    now: int
    body: bytes


@dataclass(frozen=True, slots=True)
class BatchRow:
    idx: int
    first_out: int
    end_out: int
    dropped: tuple[int, ...]
    header: bytes
    status: str
    l1_batch_id: int | None
    posted_time: int | None


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    seq: int
    created: int
    genesis: str
    version: int
    body: bytes


class JournalFailed(Exception):
    """The journal could not commit: nothing after the last durable record may be acknowledged."""


_STOP = object()


class Journal:
    """Group-committing append-only log. `append` is called from one thread (the event loop);
    `on_durable(seq)` is called from the writer thread after every commit.

    With `loop` set, the records of one turn of the event loop reach the writer together, at the
    end of the turn: one hand-over and one wake-up of the writer thread per turn instead of per
    record, so the writer contends for the GIL once a commit, not once a record."""

    def __init__(self, engine: Engine, group: int = 8192) -> None:
        self.engine = engine
        self.group = group
        l1_db.create_tables(metadata, engine)
        with self.engine.connect() as conn:
            last = conn.execute(select(records.c.seq, records.c.now).order_by(records.c.seq.desc()).limit(1)).first()
        self.next_seq = 1 + (last.seq if last is not None else 0)
        self.last_now: int | None = last.now if last is not None else None  # of the newest record appended
        self.durable_seq = self.next_seq - 1
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.on_durable: Callable[[int], None] = lambda seq: None
        self.loop: asyncio.AbstractEventLoop | None = None  # set: records are handed over per loop turn
        self._turn: list[tuple[int, int, int, bytes]] = []
        self.failed: BaseException | None = None
        self.commits = 0
        self.committed = 0
        self.thread: threading.Thread | None = None
        self.snapshot_thread: threading.Thread | None = None

    @classmethod
    def open(cls, url: str, schema: str | None = None, group: int = 8192) -> Journal:
        return cls(make_engine(url, schema), group)

    def _scalar(self, stmt: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar()

    # --- reading (recovery) ---

    def replay(self, after: int = 0, chunk: int = 20_000) -> Iterator[Record]:
        """Every record numbered above `after`, in sequence order."""
        with self.engine.connect() as conn:
            while True:
                rows = conn.execute(
                    select(records).where(records.c.seq > after).order_by(records.c.seq).limit(chunk)
                ).all()
                if not rows:
                    return
                for r in rows:
                    yield Record(r.seq, r.kind, r.now, bytes(r.body))
                after = rows[-1].seq

    def batches(self) -> list[BatchRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(batches).order_by(batches.c.idx)).all()
        return [BatchRow(r.idx, r.first_out, r.end_out, tuple(int(x) for x in r.dropped.split(",") if x),
                         bytes(r.header), r.status, r.l1_batch_id, r.posted_time) for r in rows]

    def get_meta(self, key: str) -> str | None:
        value: str | None = self._scalar(select(meta.c.value).where(meta.c.key == key))
        return value

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(select(meta.c.key).where(meta.c.key == key)).first() is None:
                conn.execute(meta.insert().values(key=key, value=value))
            else:
                conn.execute(update(meta).where(meta.c.key == key).values(value=value))

    # --- snapshots ---

    def snapshot_seqs(self) -> list[int]:
        """The stored snapshots' record numbers, newest first."""
        with self.engine.connect() as conn:
            return [r.seq for r in conn.execute(select(snapshots.c.seq).order_by(snapshots.c.seq.desc())).all()]

    def load_snapshot(self, seq: int) -> SnapshotRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(snapshots).where(snapshots.c.seq == seq)).first()
            if r is None:
                return None
            parts = conn.execute(select(snapshot_parts.c.body).where(snapshot_parts.c.seq == seq)
                                 .order_by(snapshot_parts.c.part)).scalars().all()
        body = b"".join(bytes(p) for p in parts)
        # Verify every part is there
        if len(body) != r.size:
            raise ValueError(f"snapshot at record {seq} has {len(body)} of its {r.size} bytes")
        return SnapshotRow(r.seq, r.created, r.genesis, r.version, body)

    def write_snapshot(self, row: SnapshotRow) -> None:
        """Store a snapshot at record `row.seq`, complete only once every record up to it is
        committed: in the background while the journal runs (after the one still being written,
        if any), at once when it does not."""
        if self.thread is not None and self.thread.is_alive():
            self._hand_over()  # the records it includes go first
            previous = self.snapshot_thread
            self.snapshot_thread = threading.Thread(target=self._write_snapshot, args=(row, previous),
                                                    name="journal-snapshot", daemon=True)
            self.snapshot_thread.start()
            return
        # Verify no record the snapshot includes is still uncommitted
        if row.seq > self.durable_seq:
            raise JournalFailed(f"snapshot at {row.seq} is ahead of the journal ({self.durable_seq})")
        _store_snapshot(self.engine, row)

    def _write_snapshot(self, row: SnapshotRow, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()
        # Verify every record it includes is committed (the writer may still be on them)
        while self.durable_seq < row.seq:
            writer = self.thread
            if self.failed is not None or writer is None or not writer.is_alive():
                if self.durable_seq < row.seq:
                    log.warning("snapshot at record %d dropped: the journal stopped at %d", row.seq, self.durable_seq)
                    return
            time.sleep(0.005)
        try:
            _store_snapshot(self.engine, row)
        except Exception:  # a snapshot not stored costs a longer restart, nothing else
            log.exception("snapshot at record %d not stored", row.seq)

    # --- batches (written by the batcher, synchronously) ---

    def save_batch(self, row: BatchRow) -> None:
        values = {"first_out": row.first_out, "end_out": row.end_out, "dropped": ",".join(map(str, row.dropped)),
                  "header": row.header, "status": row.status, "l1_batch_id": row.l1_batch_id,
                  "posted_time": row.posted_time}
        with self.engine.begin() as conn:
            if conn.execute(select(batches.c.idx).where(batches.c.idx == row.idx)).first() is None:
                conn.execute(batches.insert().values(idx=row.idx, **values))
            else:
                conn.execute(update(batches).where(batches.c.idx == row.idx).values(**values))

    def set_batch_status(self, idx: int, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(batches).where(batches.c.idx == idx).values(status=status))

    def delete_batches_from(self, idx: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(batches.delete().where(batches.c.idx >= idx))

    def replace_batches_from(self, idx: int, lost: list[BatchRow], rows: list[BatchRow], rollback: int) -> None:
        """One transaction: rows from `idx` on leave `batches`, those in `lost` (the ones the base
        layer lost) are kept in `lost_batches`, and `rows` (the rebuilt batches) take their place."""
        with self.engine.begin() as conn:
            conn.execute(batches.delete().where(batches.c.idx >= idx))
            for row in lost:
                conn.execute(lost_batches.insert().values(
                    rollback=rollback, idx=row.idx, first_out=row.first_out, end_out=row.end_out,
                    dropped=",".join(map(str, row.dropped)), header=row.header, status=row.status,
                    l1_batch_id=row.l1_batch_id, posted_time=row.posted_time))
            for row in rows:
                conn.execute(batches.insert().values(
                    idx=row.idx, first_out=row.first_out, end_out=row.end_out, dropped=",".join(map(str, row.dropped)),
                    header=row.header, status=row.status, l1_batch_id=row.l1_batch_id, posted_time=row.posted_time))

    def lost(self) -> list[tuple[int, BatchRow]]:
        """(rollback seq, row) of every lost batch, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(lost_batches).order_by(lost_batches.c.id)).all()
        return [(r.rollback, BatchRow(r.idx, r.first_out, r.end_out, tuple(int(x) for x in r.dropped.split(",") if x),
                                      bytes(r.header), r.status, r.l1_batch_id, r.posted_time)) for r in rows]

    # --- appending (hot path) ---

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self.thread.start()

    def append(self, kind: int, now: int, body: bytes) -> int:
        """Queue one record; returns its sequence number. Durable once on_durable(>= seq) ran."""
        if self.failed is not None:
            raise JournalFailed(str(self.failed))
        seq = self.next_seq
        self.next_seq = seq + 1
        self.last_now = now
        if self.loop is None:
            self.queue.put((seq, kind, now, body))
            return seq
        if not self._turn:
            self.loop.call_soon(self._hand_over)
        self._turn.append((seq, kind, now, body))
        return seq

    def _hand_over(self) -> None:
        """The records appended this loop turn, to the writer as one item."""
        if self._turn:
            rows, self._turn = self._turn, []
            self.queue.put(rows)

    def _run(self) -> None:
        q, group = self.queue, self.group
        # the driver's executemany with plain tuples: the writer shares the GIL with the event
        # loop, so its per-record Python cost is intake's cost too (bench/journal.py)
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        insert = f"INSERT INTO journal (seq, kind, now, body) VALUES ({mark}, {mark}, {mark}, {mark})"
        with self.engine.connect() as conn:
            while True:
                item = q.get()
                if item is _STOP:
                    return
                rows = item if type(item) is list else [item]
                stop = False
                while len(rows) < group:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    if type(item) is list:
                        rows += item
                    else:
                        rows.append(item)
                try:
                    conn.exec_driver_sql(insert, rows)
                    conn.commit()
                except BaseException as exc:  # the disk or the database is gone: stop acknowledging
                    log.exception("journal commit failed")
                    self.failed = exc
                    self.on_durable(-1)
                    return
                self.commits += 1
                self.committed += len(rows)
                self.durable_seq = rows[-1][0]
                self.on_durable(self.durable_seq)
                if stop:
                    return

    def close(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self._hand_over()
            self.queue.put(_STOP)
            self.thread.join(30)
        self.thread = None
        if self.snapshot_thread is not None:  # once the records it waits for are in, or never will be
            self.snapshot_thread.join(300)
            self.snapshot_thread = None
        self.engine.dispose()
