"""Snapshots of the sequencer: the core as a replay up to journal record S leaves it, and the
spec state after the batches that were final then. A restart loads the newest snapshot that fits
this genesis and code, replays only the records after S and re-executes only the later batches.

Taking one pauses the event loop only for a fork (copy-on-write, as Redis's BGSAVE): the child
serialises the frozen picture into a pipe and the journal stores it, in parts, once every record
up to S is committed. Without fork (not POSIX) it is serialised on the loop (bench/restart.py).
"""

from __future__ import annotations

import asyncio
import copyreg
import dataclasses
import gc
import io
import logging
import operator
import os
import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from contracts_spec import codec
from contracts_spec import types as spec_types
from contracts_spec.crypto import keccak
from contracts_spec.params import genesis_to_json
from contracts_spec.state import State
from contracts_spec.types import Genesis
from sequencer import core as core_module
from sequencer import rollback as rollback_module
from sequencer.batcher import Batcher, Built
from sequencer.core import BatchInfo, Core, final_count
from sequencer.journal import BatchRow, Journal, SnapshotRow

log = logging.getLogger("rampart.snapshot")

# Bump when what a snapshot holds changes meaning (a field kept in another form, an engine class
# reshaped): older snapshots are then skipped and the journal is replayed in full once.
VERSION = 1
POLL_SECONDS = 0.5  # how often the node checks whether `snapshot_every` records have passed
_ROOT_MISMATCH = 3  # the child's exit status when a batch build was in flight (taken later)


class SnapshotMismatch(Exception):
    """A snapshot that does not fit this genesis, this code or the journal: restart without it."""


@dataclass(slots=True)
class Snapshot:
    seq: int  # the last journal record it includes
    core: Core  # as a replay up to `seq` leaves it, with no batches
    batches: list[BatchInfo]  # the batches that were final, in order
    state: State  # the spec state after them


def genesis_hash(genesis: Genesis) -> str:
    return keccak(genesis_to_json(genesis).encode()).hex()


# --- serialising -----------------------------------------------------------------------------------
# Slotted dataclasses pickle through dataclasses' Python __getstate__, one call per object (orders,
# fills: most of a core). A reduce to (class, field tuple) built by attrgetter in C is twice as fast.


def _dataclass_reducer(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    get = operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))
    if len(dataclasses.fields(cls)) == 1:
        return lambda obj: (cls, (get(obj),))
    return lambda obj: (cls, get(obj))


def _dispatch_table() -> dict[type, Any]:
    table: dict[type, Any] = dict(copyreg.dispatch_table)
    for module in (spec_types, core_module, rollback_module):
        for obj in vars(module).values():
            if (isinstance(obj, type) and dataclasses.is_dataclass(obj) and "__slots__" in vars(obj)
                    and not hasattr(obj, "__post_init__") and all(f.init for f in dataclasses.fields(obj))):
                table[obj] = _dataclass_reducer(obj)
    return table


_DISPATCH = _dispatch_table()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Millions of objects: generation-0 collections would walk them again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def dump(picture: dict[str, Any], out: Any) -> None:
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    with _no_gc():
        pickler.dump(picture)


def dumps(picture: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    dump(picture, out)
    return out.getvalue()


# --- taking ----------------------------------------------------------------------------------------


def _final_mark(batcher: Batcher, final: int) -> int:
    """The undo-log position of the state after the first `final` batches."""
    if final < len(batcher.core.batches):
        return int(batcher.marks[final] - batcher.undo_base)
    if batcher.pending is not None:
        return int(batcher.pending.mark)
    return len(batcher.state.undo)


def picture(core: Core, batcher: Batcher, now: int, own_state: bool) -> dict[str, Any]:
    """What a snapshot stores, from the live core and batcher (call it with batcher.lock held, or in
    a forked child). `own_state`: the batcher's state may be rolled back in place (a child's copy)."""
    fields = core.snapshot_fields()
    final = final_count(core.batches)
    fields["batches"] = core.batches[:final]
    fields["lost_batches"] = []  # the node reloads them from the journal
    fields["now"] = now  # the newest record's time, as a replay leaves it (not the follower's clock)
    mark = _final_mark(batcher, final)
    if own_state:
        state = batcher.state
        state.rollback_to(mark)
    else:
        state = State()
        state.records = dict(batcher.state.records)
        state.undo = batcher.state.undo[mark:]
        state.rollback_to(0)
    return {"seq": core.seq, "fields": fields, "records": state.records}


class Snapshotter:
    """Takes the node's snapshots: every `every` records (polled), and on a clean shutdown."""

    def __init__(self, core: Core, batcher: Batcher, journal: Journal, every: int, taken: int = 0) -> None:
        self.core = core
        self.batcher = batcher
        self.journal = journal
        self.every = every
        self.taken = taken  # the newest snapshot's record (stored or on its way)
        self.genesis = genesis_hash(core.genesis)
        self.busy = False
        self.fork = hasattr(os, "fork")
        self.last_pause = 0.0  # seconds the event loop stood still for the newest snapshot

    def due(self) -> bool:
        return self.every > 0 and self.core.seq - self.taken >= self.every and not self.busy

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if self.due():
                try:
                    await self.take()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("snapshot failed")

    async def take(self, wait: bool = False) -> bool:
        """Snapshot the core at its newest record; False if it was not taken (a build held the
        state and `wait` is False, or the child failed)."""
        if self.every <= 0 or self.busy or self.core.seq <= self.taken:
            return False
        lock = self.batcher.lock
        while not lock.acquire(blocking=False):  # a batch build holds the state: never block the loop
            if not wait:
                return False
            await asyncio.sleep(0.01)
        self.busy = True
        try:
            started = time.perf_counter()
            seq = self.core.seq
            now = max(int(self.core.genesis.genesis_time), self.journal.last_now or 0)
            if self.fork:
                pid, fd = _fork_dump(self.core, self.batcher, now)
                body = None
            else:
                body = dumps(picture(self.core, self.batcher, now, own_state=False))
            self.last_pause = time.perf_counter() - started
        except BaseException:
            self.busy = False
            raise
        finally:
            lock.release()
        try:
            if body is None:
                body = await asyncio.to_thread(_collect, pid, fd)
            if body is None:
                return False
            self.journal.write_snapshot(SnapshotRow(seq, int(time.time()), self.genesis, VERSION, body))
            self.taken = seq
            log.info("snapshot at record %d: %.1f MB, the loop paused %.1f ms, done in %.2f s", seq,
                     len(body) / 1e6, self.last_pause * 1e3, time.perf_counter() - started)
            return True
        finally:
            self.busy = False


def _fork_dump(core: Core, batcher: Batcher, now: int) -> tuple[int, int]:
    """Fork a child that writes the picture into a pipe and exits; (its pid, the read end)."""
    r, w = os.pipe()
    top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024
    pid = os.fork()
    if pid == 0:  # the child: touch nothing shared (no logging, no database, no locks), then _exit
        status = 1
        try:
            gc.disable()
            os.close(r)
            os.closerange(3, w)  # listening sockets and database files stay the parent's alone
            os.closerange(w + 1, top)
            status = _child(core, batcher, now, w)
        finally:
            os._exit(status)
    os.close(w)
    return pid, r


def _child(core: Core, batcher: Batcher, now: int, fd: int) -> int:
    final = final_count(core.batches)
    shot = picture(core, batcher, now, own_state=True)
    # Verify the state is the one after the final batches (a build just done but not yet accepted
    # on the loop would be in it too): taken again later if not
    expected = core.batches[final - 1].header.post_root if final else State.from_genesis(core.genesis).root()
    if batcher.state.root() != expected:
        return _ROOT_MISMATCH
    with os.fdopen(fd, "wb", buffering=1 << 20) as out:
        dump(shot, out)
    return 0


def _collect(pid: int, fd: int) -> bytes | None:
    with os.fdopen(fd, "rb") as f:
        body = f.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return body
    if code != _ROOT_MISMATCH:
        log.warning("snapshot child exited with %d: no snapshot this time", code)
    return None


# --- restoring -------------------------------------------------------------------------------------


def load(genesis: Genesis, journal: Journal) -> Snapshot | None:
    """The newest stored snapshot that fits; each one that does not is skipped with a warning."""
    for seq in journal.snapshot_seqs():
        try:
            row = journal.load_snapshot(seq)
            if row is None:
                continue
            return decode(row, genesis, journal)
        except Exception as exc:  # unreadable, foreign or stale: an older one, or the full replay
            log.warning("snapshot at record %d skipped: %s", seq, exc)
    return None


def decode(row: SnapshotRow, genesis: Genesis, journal: Journal | None) -> Snapshot:
    # Verify it was written for this genesis and this code, and the journal holds its records
    if row.genesis != genesis_hash(genesis):
        raise SnapshotMismatch("written under another genesis")
    if row.version != VERSION:
        raise SnapshotMismatch(f"version {row.version}, this code reads {VERSION}")
    if journal is not None and row.seq >= journal.next_seq:
        raise SnapshotMismatch(f"ahead of the journal (which ends at {journal.next_seq - 1})")
    with _no_gc():  # pickle: the journal's database is trusted as much as its records are
        shot = pickle.loads(row.body)
    fields = shot["fields"]
    # Verify it holds exactly the fields this code's core has
    expected = set(Core(genesis).snapshot_fields())
    if shot["seq"] != row.seq or set(fields) != expected:
        raise SnapshotMismatch(f"core fields differ: {sorted(set(fields) ^ expected)}")
    core = Core.from_snapshot(fields, journal)
    batches, core.batches = core.batches, []
    for w in core.withdrawals.values():  # leaves of later batches are set again when those are re-executed
        if w.batch is not None and w.batch >= len(batches):
            w.leaf_index = w.batch = None
    state = State()
    state.records = shot["records"]
    state.dirty = set(state.records)
    # Verify the spec state is the one the final batches committed to
    expected_root = batches[-1].header.post_root if batches else State.from_genesis(genesis).root()
    if state.root() != expected_root:
        raise SnapshotMismatch("its spec state is not the last final batch's post-state")
    return Snapshot(row.seq, core, batches, state)


def fits(snapshot: Snapshot, rows: list[BatchRow]) -> bool:
    """The journal's batches begin with the snapshot's final ones, and the outputs of the rest
    are in its core."""
    batches = snapshot.batches
    if len(rows) < len(batches):
        return False
    for info, row in zip(batches, rows, strict=False):
        if (row.idx, row.first_out, row.end_out, frozenset(row.dropped), row.header) != (
                info.index, info.first_out, info.end_out, info.dropped, codec.encode_header(info.header)):
            return False
    return len(rows) == len(batches) or rows[len(batches)].first_out >= snapshot.core.out_base


def resume(batcher: Batcher, snapshot: Snapshot, rows: list[BatchRow]) -> list[BatchRow]:
    """Put the batcher on the snapshot's state and final batches (checked by `fits`); the rows
    left for `batcher.recover`. A row the journal had not yet marked final is marked now."""
    batcher.state = snapshot.state
    for info, row in zip(snapshot.batches, rows, strict=False):
        if row.status != "final" and batcher.journal is not None:
            batcher.journal.set_batch_status(row.idx, "final")
        batcher.accept(Built(info, b"", b"", len(batcher.state.undo), []))
    return rows[len(snapshot.batches):]
