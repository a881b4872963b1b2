"""The verifier node: follows the base layer, re-executes every batch from the base layer's data
with `contracts_spec`, judges its header, challenges a wrong one and plays the game to the end,
watches the games of others, and follows invalidations. Progress lives in `verifier.db`.

One `sync()` does everything that can be done now: ingest new events, verify the batches that
build on our head, then act on games. `run()` repeats it; tests call `sync()` directly and
drive the chain's clock themselves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from contracts_spec import codec, dispute
from contracts_spec.crypto import address_of_private_key, keccak
from contracts_spec.dispute import Phase, Seat
from contracts_spec.errors import DecodeError
from contracts_spec.params import genesis_to_json
from contracts_spec.state import State
from contracts_spec.stf import Env, apply_batch
from contracts_spec.types import (
    Address,
    Atoms,
    BatchData,
    BatchHeader,
    DepositEntry,
    ForcedEntry,
    Genesis,
    GovernanceEntry,
    Hash32,
    Seconds,
)
from l1_mock.client import Event, L1Client, L1Error
from l1_mock.envelope import hex0x, unhex
from l1_mock.wire import game_from_json, game_to_json
from verifier import db
from verifier.db import (
    AlertRow,
    BatchRow,
    CheckpointRow,
    GameRow,
    MoveRow,
    NodeRow,
    QueueRow,
    checkpoint_chain,
)
from verifier.player import Outcome, Played, Player, Result
from verifier.replay import StateMismatch, Verdict, decode_body, decode_body_and_orders, judge_batch
from verifier.settings import Settings
from verifier.signers import Pending, Signers
from verifier.snapshot import decode_state, encode_delta, encode_state
from verifier.trace import Trace

log = logging.getLogger("rampart.verifier")

Progress = Callable[[str, int, int], None]  # (what, done, total)
# Batches downloaded, decoded and queued for signer recovery behind the one executing: with two,
# the pool is never idle while the node downloads the next (bench/sustained.py)
PREPARE_AHEAD = 2


# --- errors an operator sees ------------------------------------------------------------------


class VerifierError(Exception):
    """A problem the operator must fix; `exit_code` is what the CLI exits with."""

    exit_code = 1


class WrongKey(VerifierError):
    exit_code = 2


class WrongChain(VerifierError):
    exit_code = 2


class UnknownBatch(VerifierError):
    pass


class UnknownGame(VerifierError):
    pass


class NotChallengeable(VerifierError):
    pass


# --- the bridge queues, as the events announced them -------------------------------------------


class NodeBridge:
    """contracts_spec.stf.BridgeView over the queue entries the node ingested; a miss (an event
    not yet read) asks the base layer. Entries never change once queued."""

    def __init__(self, client: L1Client) -> None:
        self.client = client
        self.deposits: dict[int, DepositEntry] = {}
        self.forced_requests: dict[int, ForcedEntry] = {}
        self.changes: dict[int, GovernanceEntry] = {}

    def add(self, forced: bool, index: int, account: bytes, amount: int) -> None:
        if forced:
            self.forced_requests[index] = ForcedEntry(account, Atoms(amount))
        else:
            self.deposits[index] = DepositEntry(account, Atoms(amount))

    def deposit(self, index: int) -> DepositEntry | None:
        entry = self.deposits.get(index)
        if entry is None:
            entry = self.client.deposit_entry(index)
            if entry is not None:
                self.deposits[index] = entry
        return entry

    def forced(self, index: int) -> ForcedEntry | None:
        entry = self.forced_requests.get(index)
        if entry is None:
            entry = self.client.forced_entry(index)
            if entry is not None:
                self.forced_requests[index] = entry
        return entry

    def governance(self, index: int) -> GovernanceEntry | None:
        """The time-locked change ApplyGovernance(index) reads, from the base layer's queue."""
        entry = self.changes.get(index)
        if entry is None:
            entry = self.client.governance_entry(index)
            if entry is not None:
                self.changes[index] = entry
        return entry


# --- what one sync did --------------------------------------------------------------------------


@dataclass
class SyncReport:
    events: int = 0
    verified: int = 0
    invalid: int = 0
    trades: int = 0
    opened: list[int] | None = None
    moves: int = 0
    resolved: int = 0
    claimed: int = 0
    rolled_back: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.events or self.verified or self.opened or self.moves or self.resolved or self.claimed)


@dataclass
class Prepared:
    """A batch downloaded and decoded (or its decoding error), its signers on their way."""

    batch_id: int
    header: BatchHeader | None
    body: BatchData | None
    error: DecodeError | None
    signers: Pending | None

    def result(self) -> tuple[dict[int, Hash32], dict[int, Address]]:
        return self.signers.result() if self.signers is not None else ({}, {})

    def leaves(self) -> list[Hash32] | None:
        return self.signers.leaves() if self.signers is not None else None

    def recovered(self) -> dict[tuple[bytes, bytes], Address]:
        return self.signers.recovered() if self.signers is not None else {}

    def cancel(self) -> None:
        if self.signers is not None:
            self.signers.cancel()


def genesis_hash(genesis: Genesis) -> str:
    return hex0x(keccak(genesis_to_json(genesis).encode()))


class Node:
    """One verifier: its key, its database, its view of the rollup and the games it plays."""

    def __init__(self, settings: Settings, key: bytes | None = None, client: L1Client | None = None) -> None:
        self.settings = settings
        self.key = key
        self.address = hex0x(address_of_private_key(key)) if key else None
        self.client = client or L1Client(settings.l1_url, key, timeout=settings.l1_timeout)
        try:
            self.genesis = self.client.genesis()  # L1Error("unreachable") when the base layer does not answer
        except BaseException:
            if client is None:
                self.client.close()
            raise
        self.preset = self.genesis.preset
        self.engine = db.make_engine(settings.db, settings.db_schema)
        self.sessions = db.make_sessions(self.engine)
        self._bind()
        self.bridge = NodeBridge(self.client)
        with self.sessions() as s:
            for q in s.scalars(select(QueueRow)):
                self.bridge.add(q.forced, q.index, unhex(q.account), q.amount)
        self.signers = Signers(self.preset, settings.workers, settings.parallel_orders)
        self.state: State | None = None  # after our head; loaded on first need
        self._since_checkpoint = 0
        # What the next checkpoint writes (verifier.snapshot): the slots written since the newest
        # checkpoint on our head's chain (`_base`; None: none, so the next one is full), and the
        # records of the last full checkpoint and of the deltas written over it since
        self._base: int | None = None
        self._changed: set[tuple[int, bytes]] = set()
        self._full_records = self._delta_records = 0
        self.progress: Progress | None = None
        # The shared dispute player, in our seat, with its progress in our database
        self.player = None if key is None else Player(
            self.client, settings.db, Seat.CHALLENGER, self.truth, on_outcome=self._on_outcome,
            schema=settings.db_schema)

    def close(self) -> None:
        if self.player is not None:
            self.player.close()
        self.signers.close()
        self.engine.dispose()
        self.client.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- binding: one database per chain and per key -------------------------------------------

    def _bind(self) -> None:
        gh = genesis_hash(self.genesis)
        with self.sessions.begin() as s:
            row = db.get_node(s)
            if row is None:
                root = hex0x(State.from_genesis(self.genesis).root())
                s.add(NodeRow(id=1, genesis_hash=gh, chain_id=self.preset.chain_id, address=self.address,
                              cursor=0, head_batch_id=None, head_index=-1, head_root=root))
                return
            # Verify the database follows this chain
            if row.genesis_hash != gh:
                raise WrongChain("this database follows another chain (its genesis differs from the base layer's)")
            # Verify the key is the one this database plays with
            if self.address is not None:
                if row.address is None:
                    row.address = self.address
                elif row.address != self.address:
                    raise WrongKey(f"this database plays for {row.address}, but the key is {self.address}'s")
            elif row.address is not None:
                self.address = row.address

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as s:
            yield s

    def node_row(self, s: Session) -> NodeRow:
        row = db.get_node(s)
        assert row is not None
        return row

    # --- the loop -------------------------------------------------------------------------------

    def sync(self) -> SyncReport:
        """Ingest what the base layer has, verify what builds on our head, act on games."""
        report = SyncReport(opened=[])
        report.events = self.ingest(report)
        self.verify_pending(report)
        self.act(report)
        return report

    def run(self, stop: Callable[[], bool], wait: Callable[[float], Any]) -> None:
        """Sync until `stop()`; when idle (or the base layer is away) wait poll_interval."""
        while not stop():
            try:
                report = self.sync()
            except L1Error as exc:
                log.warning("base layer: %s", exc)
                wait(self.settings.poll_interval)
                continue
            except (VerifierError, KeyboardInterrupt):
                raise
            except Exception:  # a bug or a database hiccup: say so loudly, keep watching
                log.exception("sync failed; retrying")
                wait(self.settings.poll_interval)
                continue
            if not report.busy:
                wait(self.settings.poll_interval)
        self.save_checkpoint(force=False)

    # --- following the base layer ------------------------------------------------------------------

    def ingest(self, report: SyncReport) -> int:
        """Every event after our cursor, a page per database transaction."""
        count = 0
        while True:
            with self.session() as s:
                node = self.node_row(s)
                events, nxt = self.client.events(after=node.cursor, limit=1000)
                if not events:
                    info = self.client.info()
                    node.l1_head_block, node.l1_time = int(info["head_block"]), int(info["time"])
                    return count
                for e in events:
                    self._handle(s, node, e, report)
                node.cursor = nxt
                count += len(events)

    def _handle(self, s: Session, node: NodeRow, e: Event, report: SyncReport) -> None:
        d = e.data
        if e.name == "BatchPosted":
            if s.get(BatchRow, d["batch_id"]) is None:
                parent = s.get(BatchRow, d["parent_id"]) if d["parent_id"] is not None else None
                skipped = parent is not None and parent.verdict in ("invalid", "skipped")
                s.add(BatchRow(
                    batch_id=d["batch_id"], index=d["index"], parent_id=d["parent_id"], header=unhex(d["header"]),
                    prev_root=d["prev_root"], post_root=d["post_root"], data_hash=d["data_hash"],
                    tx_count=d["tx_count"], time=d["time"], posted_time=d["posted_time"],
                    posted_block=d["posted_block"], window_ends=d["window_ends"], l1_status="pending",
                    verdict="skipped" if skipped else None, trades=0,
                ))
        elif e.name == "BatchInvalidated":
            report.rolled_back += self._invalidate(s, node, d["batch_id"])
        elif e.name in ("Deposited", "WithdrawalRequested"):
            forced = e.name == "WithdrawalRequested"
            if s.get(QueueRow, (forced, d["index"])) is None:
                s.add(QueueRow(forced=forced, index=d["index"], account=d["account"], amount=d["amount"]))
            self.bridge.add(forced, d["index"], unhex(d["account"]), d["amount"])
        elif e.name == "GameOpened":
            known = s.get(GameRow, d["game_id"])
            if known is not None:
                known.opened_block = e.block
            else:
                g = game_from_json(d["game"])
                s.add(GameRow(game_id=d["game_id"], batch_id=d["batch_id"], challenger=d["challenger"],
                              mine=d["challenger"] == self.address, status="open", game_json=json.dumps(d["game"]),
                              opened_block=e.block, opened_time=g.turn_started))
            self._move(s, e, "open", "challenger", {"challenger": d["challenger"]})
        elif e.name == "Moved":
            game = s.get(GameRow, d["game_id"])
            if game is not None:
                game.game_json = json.dumps(d["game"])
            data: dict[str, Any] = {k: d[k] for k in ("root", "agree") if k in d}
            data["lo"], data["hi"] = d["game"]["lo"], d["game"]["hi"]
            data["time"] = d["game"]["turn_started"]
            self._move(s, e, d["move"], d["seat"], data)
        elif e.name == "Stepped":
            self._move(s, e, "step", d["seat"], {"index": d["index"], "outcome": d["outcome"],
                                                  "rejected": d["rejected"]})
        elif e.name == "GameResolved":
            game = s.get(GameRow, d["game_id"])
            if game is not None:
                game.status = d["status"]
                game.payout_json = json.dumps(d["payout"])
                game.resolved_block = e.block
                g = json.loads(game.game_json)
                g["status"] = int(dispute.Status[d["status"].upper()])
                game.game_json = json.dumps(g)
            self._move(s, e, "resolve", None, {"status": d["status"], "payout": d["payout"]})

    @staticmethod
    def _move(s: Session, e: Event, kind: str, seat: str | None, data: dict[str, Any]) -> None:
        if s.get(MoveRow, e.id) is None:
            s.add(MoveRow(event_id=e.id, game_id=e.data["game_id"], block=e.block, seat=seat, kind=kind,
                          data_json=json.dumps(data)))

    def _invalidate(self, s: Session, node: NodeRow, batch_id: int) -> int:
        """A batch lost its game: it and every batch built on it leave the chain. If our head
        was among them, fall back to the lost batch's parent. Returns how many batches fell."""
        lost = s.get(BatchRow, batch_id)
        if lost is None:
            return 0
        lost.l1_status = "lost"
        fallen = {lost.batch_id}
        for row in s.scalars(select(BatchRow).where(BatchRow.batch_id > batch_id).order_by(BatchRow.batch_id)):
            if row.parent_id in fallen:
                fallen.add(row.batch_id)
                row.l1_status = "invalid"
        s.execute(delete(CheckpointRow).where(CheckpointRow.batch_id.in_(fallen)))
        if node.head_batch_id in fallen:
            node.head_batch_id = lost.parent_id
            node.head_index = lost.index - 1
            node.head_root = lost.prev_root
            self.state = None  # reloaded from a checkpoint below the lost batch
            log.warning("batch %d lost its game: %d batches fall, back to index %d", batch_id, len(fallen),
                        lost.index - 1)
        else:
            log.info("batch %d lost its game: %d batches fall", batch_id, len(fallen))
        return len(fallen)

    # --- verifying ------------------------------------------------------------------------------

    def verify_pending(self, report: SyncReport) -> None:
        """Verify, in order, every batch that builds on our head. The next `PREPARE_AHEAD` batches
        are downloaded, decoded and their signatures handed to the pool before this one executes,
        so the pool always has work while the STF runs (derived from the base layer's data alone,
        as always); what the pool has not started when a batch's turn comes, the node recovers."""
        with self.sessions() as s:
            total = s.scalar(select(func.count()).select_from(BatchRow).where(
                BatchRow.verdict.is_(None), BatchRow.l1_status == "pending")) or 0
        done = 0
        ahead: list[Prepared] = []
        try:
            while True:
                with self.session() as s:
                    node = self.node_row(s)
                    row = self._next_pending(s, node.head_batch_id)
                if row is None:
                    return
                if ahead and ahead[0].batch_id == row.batch_id:
                    job = ahead.pop(0)
                else:  # the chain changed under us (a wrong batch, an invalidation): start again
                    for stale in ahead:
                        stale.cancel()
                    ahead, job = [], self.prepare(row)
                last = ahead[-1].batch_id if ahead else row.batch_id
                while len(ahead) < PREPARE_AHEAD:
                    with self.sessions() as s:
                        nxt = self._next_pending(s, last)
                    if nxt is None:
                        break
                    ahead.append(self.prepare(nxt))
                    last = nxt.batch_id
                verdict = self.verify_one(row, job)
                done += 1
                report.verified += 1
                report.trades += verdict.trades
                if not verdict.valid:
                    report.invalid += 1
                if self.progress is not None:
                    self.progress("verify", done, max(total, done))
        finally:
            for stale in ahead:
                stale.cancel()

    @staticmethod
    def _next_pending(s: Session, parent_id: int | None) -> BatchRow | None:
        """The first unverified pending batch built on `parent_id` (None: on genesis)."""
        return s.scalars(select(BatchRow).where(
            BatchRow.parent_id.is_(None) if parent_id is None else BatchRow.parent_id == parent_id,
            BatchRow.l1_status == "pending", BatchRow.verdict.is_(None),
        ).order_by(BatchRow.batch_id).limit(1)).first()

    def prepare(self, row: BatchRow) -> Prepared:
        """Download and decode a batch, and start deriving its order ids and signers."""
        try:
            header = codec.decode_header(row.header)
            body, encodings = decode_body_and_orders(self.client.batch_data(row.data_hash), self.preset.max_batch_txs)
        except DecodeError as exc:  # the base layer refuses such data: a wrong batch all the same
            return Prepared(row.batch_id, None, None, exc, None)
        return Prepared(row.batch_id, header, body, None, self.signers.submit(body.orders, encodings, body.txs))

    def load_body(self, row: BatchRow) -> tuple[BatchHeader, BatchData]:
        """The batch's header and its data, from the base layer's data availability only."""
        header = codec.decode_header(row.header)
        data = self.client.batch_data(row.data_hash)
        return header, decode_body(data, self.preset.max_batch_txs)

    def env(self, header: BatchHeader) -> Env:
        return Env(self.preset, Seconds(header.time), self.bridge)

    def state_records(self) -> int | None:
        """Leaves of the head state held in memory, None before it is loaded (read from any thread)."""
        state = self.state
        return None if state is None else len(state.records)

    def head_state(self) -> State:
        if self.state is None:
            with self.sessions() as s:
                node = self.node_row(s)
                head, root = node.head_batch_id, node.head_root
            self.state, self._base, self._changed = self._restore(head)
            self._full_records = 0  # unknown after a restart: the next checkpoint is a full one
            # Verify what we restored is what we had verified
            if hex0x(self.state.root()) != root:
                raise RuntimeError(f"restored state root {hex0x(self.state.root())} is not the head's {root}")
        return self.state

    def verify_one(self, row: BatchRow, job: Prepared | None = None) -> Verdict:
        state = self.head_state()
        job = job if job is not None else self.prepare(row)
        if job.error is not None or job.header is None or job.body is None:
            verdict = Verdict(False, None, {"data": ("decodable", str(job.error))})
        else:
            ids, signers = job.result()
            try:
                verdict = judge_batch(state, job.header, job.body, self.env(job.header), ids, signers, job.leaves(),
                                      job.recovered())
            except StateMismatch:
                self.state = None  # never judge from a state we cannot trust: reload it, try again
                raise
        with self.session() as s:
            node = self.node_row(s)
            b = s.get(BatchRow, row.batch_id)
            assert b is not None
            b.verdict = "valid" if verdict.valid else "invalid"
            b.computed_root = hex0x(verdict.computed_root) if verdict.computed_root else None
            b.mismatch_json = json.dumps(verdict.mismatch) if verdict.mismatch else None
            b.rejected_index, b.rejected_error = verdict.rejected_index, verdict.rejected_error
            b.trades, b.verify_seconds, b.verified_l1_time = verdict.trades, verdict.seconds, node.l1_time
            if verdict.valid:
                node.head_batch_id, node.head_index, node.head_root = b.batch_id, b.index, b.post_root
            else:
                self._skip_descendants(s, b.batch_id)
                what = (f"transaction {verdict.rejected_index} is rejected ({verdict.rejected_error})"
                        if verdict.rejected_error else f"{', '.join(verdict.mismatch)} differ")
                self._alert(s, "invalid_batch", f"batch {b.batch_id} (index {b.index}) is wrong: {what}",
                            batch_id=b.batch_id)
                log.warning("batch %d (index %d) is WRONG: %s", b.batch_id, b.index, what)
        if verdict.valid:
            self._changed |= verdict.written
            log.info("batch %d (index %d) valid: %d txs, %d trades in %.3f s", row.batch_id, row.index,
                     row.tx_count, verdict.trades, verdict.seconds)
            self._since_checkpoint += 1
            if self._since_checkpoint >= self.settings.checkpoint_every:
                self.save_checkpoint(force=True)
        return verdict

    @staticmethod
    def _skip_descendants(s: Session, batch_id: int) -> None:
        wrong = {batch_id}
        for row in s.scalars(select(BatchRow).where(BatchRow.batch_id > batch_id).order_by(BatchRow.batch_id)):
            if row.parent_id in wrong and row.verdict is None:
                row.verdict = "skipped"
                wrong.add(row.batch_id)

    # --- state at any verified batch ----------------------------------------------------------------

    def save_checkpoint(self, force: bool = True) -> None:
        """Store the head state; drop checkpoints no rollback can need any more."""
        if self.state is None:
            return
        with self.session() as s:
            node = self.node_row(s)
            head = node.head_batch_id
            if head is None or s.get(CheckpointRow, head) is not None:
                return
            if not force and self._since_checkpoint == 0:
                return
            full = self._base is None or self._delta_records + len(self._changed) > self._full_records
            if full:
                blob = encode_state(self.state)
            else:
                assert self._base is not None
                blob = encode_delta(self.state, self._changed, self._base)
            s.add(CheckpointRow(batch_id=head, index=node.head_index, root=node.head_root, blob=blob))
            self._prune_checkpoints(s, node)
        # Committed: only now is it the base of the next delta (a failed commit leaves the delta
        # chain as it was, and the next checkpoint covers these changes too)
        if full:
            self._full_records, self._delta_records = len(self.state.records), 0
        else:
            self._delta_records += len(self._changed)
        self._base, self._changed = head, set()
        self._since_checkpoint = 0

    @staticmethod
    def _prune_checkpoints(s: Session, node: NodeRow) -> None:
        # A rollback goes back at most to the parent of a batch that is not final, so the newest
        # checkpoint at a final batch (window over, no open game) and everything newer suffice
        final_at = None
        for ck in s.scalars(select(CheckpointRow).order_by(CheckpointRow.index.desc())):
            b = s.get(BatchRow, ck.batch_id)
            if b is None:
                continue
            open_games = s.scalar(select(GameRow.game_id).where(GameRow.batch_id == b.batch_id,
                                                                 GameRow.status == "open").limit(1))
            if b.window_ends <= node.l1_time and b.l1_status == "pending" and open_games is None:
                final_at = checkpoint_chain(s, ck)[0].index  # and the full checkpoint it builds on
                break
        if final_at is not None:
            s.execute(delete(CheckpointRow).where(CheckpointRow.index < final_at))

    def chain_to(self, s: Session, batch_id: int | None) -> list[BatchRow]:
        """The batches from (excluding) the newest checkpoint on the way to `batch_id`, oldest
        first, with that checkpoint (None: genesis)."""
        out: list[BatchRow] = []
        cur = batch_id
        while cur is not None:
            if s.get(CheckpointRow, cur) is not None:
                break
            row = s.get(BatchRow, cur)
            if row is None:
                raise UnknownBatch(f"no batch {cur} in this verifier's database")
            out.append(row)
            cur = row.parent_id
        out.reverse()
        return out

    def state_after(self, batch_id: int | None) -> State:
        """The state after a batch we verified valid (None: genesis): the newest checkpoint on its
        way, then its batches replayed from the base layer's data."""
        return self._restore(batch_id)[0]

    def _restore(self, batch_id: int | None) -> tuple[State, int | None, set[tuple[int, bytes]]]:
        """`state_after`, with the checkpoint it started from (None: genesis) and the slots the
        batches replayed after it wrote: what a delta over that checkpoint would hold."""
        with self.sessions() as s:
            rows = self.chain_to(s, batch_id)
            start = rows[0].parent_id if rows else batch_id
            ck = s.get(CheckpointRow, start) if start is not None else None
            chain = checkpoint_chain(s, ck) if ck is not None else []
        if ck is not None:
            state = decode_state([c.blob for c in chain], unhex(ck.root))
        elif start is None:
            state = State.from_genesis(self.genesis)
        else:  # pragma: no cover - chain_to stops only at a checkpoint or genesis
            raise RuntimeError("no checkpoint on the way")
        written: set[tuple[int, bytes]] = set()
        for i, row in enumerate(rows):
            # Verify we only replay batches we judged valid: a wrong batch has no true post-state
            if row.verdict != "valid":
                raise NotChallengeable(f"batch {row.batch_id} is {row.verdict or 'not verified'}: "
                                       "no true state follows it")
            header, body = self.load_body(row)
            ids, signers = self.signers.for_batch(body.orders)
            apply_batch(state, body, self.env(header), signers, ids)
            written |= state.dirty  # what the batch wrote: the root below flushes it
            state.checkpoint()
            if hex0x(state.root()) != row.post_root:
                raise RuntimeError(f"replaying batch {row.batch_id} gave another root than when it was verified")
            if self.progress is not None:
                self.progress("restore", i + 1, len(rows))
        self._since_checkpoint = len(rows)
        return state, start if ck is not None else None, written

    def pre_state(self, batch_id: int) -> tuple[State, BatchHeader, BatchData, Env]:
        """Everything needed to re-execute a batch: the state before it, its header, data and env."""
        with self.sessions() as s:
            row = s.get(BatchRow, batch_id)
            if row is None:
                raise UnknownBatch(f"no batch {batch_id} in this verifier's database")
            node = self.node_row(s)
            head = node.head_batch_id
        if row.parent_id == head:
            state = self.head_state().copy()
        else:
            state = self.state_after(row.parent_id)
        header, body = self.load_body(row)
        return state, header, body, self.env(header)

    # --- alerts ---------------------------------------------------------------------------------

    def _alert(self, s: Session, kind: str, message: str, game_id: int | None = None,
               batch_id: int | None = None) -> bool:
        """Record an alert once per (kind, game, batch); True if it is new."""
        q = select(AlertRow.id).where(AlertRow.kind == kind, AlertRow.game_id.is_(game_id) if game_id is None
                                      else AlertRow.game_id == game_id,
                                      AlertRow.batch_id.is_(batch_id) if batch_id is None
                                      else AlertRow.batch_id == batch_id)
        if s.scalar(q.limit(1)) is not None:
            return False
        node = self.node_row(s)
        s.add(AlertRow(l1_time=node.l1_time, kind=kind, game_id=game_id, batch_id=batch_id, message=message))
        return True

    # --- games ----------------------------------------------------------------------------------

    def act(self, report: SyncReport) -> None:
        """Challenge wrong batches, play our games, resolve, claim; watch everyone else's."""
        if self.settings.challenge:
            self._challenge_wrong(report)
        self._alert_missed_windows()
        self._play_ours(report)
        self._watch_others(report)
        if self.settings.claim and self.key is not None:
            self._claim(report)

    def wrong_batches(self) -> tuple[list[BatchRow], set[int], set[int]]:
        """Wrong batches still inside their window; the batches we play against; those anyone does."""
        with self.sessions() as s:
            node = self.node_row(s)
            wrong = list(s.scalars(select(BatchRow).where(BatchRow.verdict == "invalid",
                                                          BatchRow.l1_status == "pending",
                                                          BatchRow.window_ends > node.l1_time)))
            games = list(s.scalars(select(GameRow)))
        return wrong, {g.batch_id for g in games if g.mine}, {g.batch_id for g in games}

    def _challenge_wrong(self, report: SyncReport) -> None:
        wrong, mine, _ = self.wrong_batches()
        for row in wrong:
            if row.batch_id in mine:
                continue
            game_id = self.open_game(row.batch_id, why="its root is wrong")
            if game_id is not None and report.opened is not None:
                report.opened.append(game_id)

    def _alert_missed_windows(self) -> None:
        """A wrong batch whose window closed with no game left to decide it will become final."""
        with self.session() as s:
            node = self.node_row(s)
            late = s.scalars(select(BatchRow).where(BatchRow.verdict == "invalid", BatchRow.l1_status == "pending",
                                                    BatchRow.window_ends <= node.l1_time))
            for row in late:
                if s.scalar(select(GameRow.game_id).where(GameRow.batch_id == row.batch_id,
                                                          GameRow.status == "open").limit(1)) is not None:
                    continue  # a game still decides it
                if self._alert(s, "window_missed", f"batch {row.batch_id} is wrong and its challenge window "
                               f"closed at {row.window_ends} without a game won against it", batch_id=row.batch_id):
                    log.critical("batch %d is wrong and its window closed without a winning game", row.batch_id)

    def open_game(self, batch_id: int, why: str) -> int | None:
        """Open a game against a batch with our bond; None (and an alert) when it cannot be opened."""
        if self.key is None:
            raise WrongKey("a key is needed to open a game (rampart-verifier keys create)")
        balance = int(self.client.account(self.address)["native"])  # type: ignore[arg-type]
        if balance < self.preset.challenger_bond:
            with self.session() as s:
                if self._alert(s, "cannot_bond", f"batch {batch_id} is wrong but the bond "
                               f"{self.preset.challenger_bond} exceeds our balance {balance}", batch_id=batch_id):
                    log.error("cannot challenge batch %d: balance %d below the bond %d", batch_id, balance,
                              self.preset.challenger_bond)
            return None
        assert self.player is not None
        try:
            game_id = self.player.challenge(batch_id)
        except L1Error as exc:
            if exc.code == "unreachable":
                raise
            with self.session() as s:
                self._alert(s, "open_refused", f"opening a game on batch {batch_id} was refused: {exc}",
                            batch_id=batch_id)
            log.error("opening a game on batch %d refused: %s", batch_id, exc)
            return None
        info = self.client.game(game_id)
        with self.session() as s:
            if s.get(GameRow, game_id) is None:
                s.add(GameRow(game_id=game_id, batch_id=batch_id, challenger=self.address, mine=True,
                              status="open", game_json=json.dumps(game_to_json(info.game)), opened_block=0,
                              opened_time=info.game.turn_started))
        log.warning("opened game %d against batch %d: %s", game_id, batch_id, why)
        return game_id

    def truth(self, batch_id: int) -> Trace:
        """Our view of a batch for the player: its trace from the state we verified before it."""
        return Trace(*self.pre_state(batch_id))

    def _play_ours(self, report: SyncReport) -> None:
        """Every move due in our games (opened by us, by hand, or before a restart), by the player."""
        if self.player is None:
            return
        played: list[Played] = self.player.tick()
        for p in played:
            if p.action in ("reveal", "answer", "step"):
                report.moves += 1
            elif p.action == "resolve":
                report.resolved += 1
            elif p.action == "claim":
                report.claimed += int(p.detail or 0)

    def _on_outcome(self, outcome: Outcome) -> None:
        if outcome.result == Result.WON:
            log.warning("game %d against batch %d WON: %d credited", outcome.game_id, outcome.batch_id,
                        outcome.credited)
            return
        with self.session() as s:
            self._alert(s, f"game_{outcome.result.value}", f"game {outcome.game_id} against batch "
                        f"{outcome.batch_id} ended {outcome.result.value}", outcome.game_id, outcome.batch_id)
        log.error("game %d against batch %d %s", outcome.game_id, outcome.batch_id, outcome.result.value.upper())

    def _watch_others(self, report: SyncReport) -> None:
        if not self.settings.challenge:
            wrong, _, disputed = self.wrong_batches()
            for row in wrong:
                if row.batch_id not in disputed:
                    with self.session() as s:
                        if self._alert(s, "unchallenged", f"batch {row.batch_id} is wrong and nobody challenges it "
                                       f"(its window ends at {row.window_ends})", batch_id=row.batch_id):
                            log.error("batch %d is wrong and unchallenged; challenging is off", row.batch_id)
        with self.sessions() as s:
            node = self.node_row(s)
            now = node.l1_time
            rows = list(s.scalars(select(GameRow).where(GameRow.mine.is_(False), GameRow.status == "open")))
            verdicts = {r.batch_id: r for r in s.scalars(select(BatchRow).where(
                BatchRow.batch_id.in_([g.batch_id for g in rows])))}
            mine = {g.batch_id for g in s.scalars(select(GameRow).where(GameRow.mine.is_(True)))}
        for g in rows:
            batch = verdicts.get(g.batch_id)
            if batch is None or batch.verdict is None or batch.l1_status != "pending":
                continue
            game = game_from_json(json.loads(g.game_json))
            phase = dispute.get_phase(game)
            if phase == Phase.OVER:
                continue
            left = dispute.get_remaining(game, game.turn, now)
            slow = left < self.settings.warn_clock_share * self.preset.game_clock
            if batch.verdict == "valid" and game.turn == Seat.SEQUENCER and slow:
                with self.session() as s:
                    if self._alert(s, "defender_slow", f"game {g.game_id} attacks batch {g.batch_id}, which is "
                                   f"valid, and the sequencer has {left} s left to reveal", g.game_id, g.batch_id):
                        log.warning("game %d: honest batch %d attacked, the defender has %d s left",
                                    g.game_id, g.batch_id, left)
            elif batch.verdict == "invalid" and game.turn == Seat.CHALLENGER and slow:
                with self.session() as s:
                    new = self._alert(s, "challenger_slow", f"game {g.game_id} against wrong batch {g.batch_id}: "
                                      f"the challenger has {left} s left", g.game_id, g.batch_id)
                if new:
                    log.warning("game %d: wrong batch %d, its challenger has %d s left", g.game_id, g.batch_id, left)
                if self.settings.join and self.key is not None and g.batch_id not in mine:
                    gid = self.open_game(g.batch_id, why=f"game {g.game_id} against it heads the wrong way")
                    if gid is not None and report.opened is not None:
                        report.opened.append(gid)
                        mine.add(g.batch_id)

    def _claim(self, report: SyncReport) -> None:
        bonds = self.client.bonds(self.address)  # type: ignore[arg-type]
        if int(bonds["claimable"]) > 0:
            report.claimed += self.client.claim()
            log.info("claimed %d", report.claimed)

