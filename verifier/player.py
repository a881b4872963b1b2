"""The dispute player: one engine for the sequencer's defender and the verifier's challenger.

It plays each game with `contracts_spec.dispute.next_move` through the one base-layer client,
backs every move with its own view of the batch (a `Truth`, usually a `verifier.trace.Trace`),
checks its one-step proof wins before submitting it, resolves, claims, and reports each game's
outcome once. Its progress is in a small SQLAlchemy table, so a restarted player resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    SmallInteger,
    String,
    create_engine,
    event,
    or_,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from contracts_spec import codec, dispute
from contracts_spec.crypto import keccak
from contracts_spec.dispute import Answer, Reveal, Seat, Step, StepProof
from contracts_spec.errors import SpecError
from contracts_spec.state import State
from contracts_spec.stf import BridgeView, Env
from contracts_spec.types import Address, BatchData, BatchHeader, Genesis, Hash32, Root
from l1_mock import db as l1_db
from l1_mock.client import ClientBridge, GameInfo, L1Client, L1Error
from verifier.trace import REJECTED, Fault, Trace, TraceMismatch

log = logging.getLogger("rampart.player")
_SEAT_REJECTED: dict[Seat, Root] = {seat: keccak(REJECTED + bytes([seat])) for seat in Seat}

# Refusals that only mean the chain's game moved on since we read it: the next tick re-reads it.
STALE_CODES = frozenset({"game_over", "not_your_turn", "wrong_move", "clock_expired", "clock_running"})


class Truth(Protocol):
    """One side's view of a batch: its root after i transactions, and the proof of one."""

    def root_at(self, index: int) -> Root: ...

    def step_proof(self, index: int) -> StepProof | None: ...


# batch id -> this player's view of that batch (built when a game against it is first played)
TruthProvider = Callable[[int], Truth]


class Result(StrEnum):
    WON = "won"
    LOST = "lost"
    REFUNDED = "refunded"  # the batch fell with an invalid ancestor: nobody was proven wrong


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a game ended for this player; reported once per game through `on_outcome`."""

    game_id: int
    batch_id: int
    seat: Seat
    result: Result
    credited: int  # to this player's claimable balance: its bond back plus winnings, or a refund
    restaked: int  # the sequencer's escrow returned to its stake (0 for a challenger)
    burnt: int


@dataclass(frozen=True, slots=True)
class Played:
    """One call this player made on the chain."""

    game_id: int
    action: str  # reveal, answer, step, resolve, claim
    detail: str = ""


# --- progress, in the caller's database ---------------------------------------------------------


class _Amount(TypeDecorator[int]):
    """Native-coin amounts (beyond 64 bits) as decimal text: portable and exact."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> int | None:
        return None if value is None else int(value)


class Base(DeclarativeBase):
    pass


class PlayerGameRow(Base):
    """One game a player plays; the chain holds the game itself, this row what the player did."""

    __tablename__ = "player_games"
    player: Mapped[str] = mapped_column(String(42), primary_key=True)  # the player's address
    game_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    seat: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, won, lost, refunded
    moves: Mapped[int] = mapped_column(BigInteger, default=0)  # the game's move count when last seen
    last_move: Mapped[str | None] = mapped_column(String(120), nullable=True)
    credited: Mapped[int] = mapped_column(_Amount, default=0)
    restaked: Mapped[int] = mapped_column(_Amount, default=0)
    burnt: Mapped[int] = mapped_column(_Amount, default=0)
    reported: Mapped[bool] = mapped_column(Boolean, default=False)  # on_outcome returned
    claimed: Mapped[bool] = mapped_column(Boolean, default=False)


class PlayerCursorRow(Base):
    """The last game id a player has looked at: games after it are discovered on the next tick."""

    __tablename__ = "player_cursors"
    player: Mapped[str] = mapped_column(String(42), primary_key=True)
    last_game_id: Mapped[int] = mapped_column(BigInteger)


def make_engine(db_url: str, schema: str | None = None) -> Engine:
    """SQLite (WAL) by default, PostgreSQL by URL, optionally inside `schema` (created)."""
    connect_args: dict[str, Any] = {}
    sqlite = db_url.startswith("sqlite")
    if sqlite:
        connect_args = {"check_same_thread": False, "timeout": 30}
    elif schema:
        connect_args = {"options": f"-csearch_path={schema}"}
    engine = create_engine(db_url, connect_args=connect_args, pool_pre_ping=True)
    if sqlite:

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    elif schema:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return engine


def create_tables(engine: Engine) -> None:
    l1_db.create_tables(Base.metadata, engine)


def drop_tables(engine: Engine) -> None:
    Base.metadata.drop_all(engine)


# --- views of a batch ---------------------------------------------------------------------------


def fetch_batch(client: L1Client, batch_id: int, genesis: Genesis) -> tuple[BatchHeader, BatchData]:
    """A posted batch's header and decoded data, from the chain (data checked against its hash)."""
    header = client.batch_header(batch_id)
    data = client.batch_data(header.data_hash)
    return header, codec.decode_batch_data(data, max_txs=genesis.preset.max_batch_txs)


def chain_trace(client: L1Client, batch_id: int, pre: State, genesis: Genesis, bridge: BridgeView | None = None,
                fault: Fault | None = None, signers: Mapping[int, Address] | None = None,
                ids: Mapping[int, Hash32] | None = None) -> Trace:
    """The trace of a posted batch from its pre-state (owned by the trace from now on), reading
    deposits and forced requests from the chain's bridge unless `bridge` is given. `signers` and
    `ids` (by order index) spare the trace recovering signatures the caller already checked."""
    header, body = fetch_batch(client, batch_id, genesis)
    env = Env(genesis.preset, header.time, bridge if bridge is not None else ClientBridge(client))
    return Trace(pre, header, body, env, fault, signers, ids)


# --- the player ---------------------------------------------------------------------------------


def get_result(status: str, seat: Seat) -> Result:
    if status == "refunded":
        return Result.REFUNDED
    winner = Seat.CHALLENGER if status == "challenger_won" else Seat.SEQUENCER
    return Result.WON if winner == seat else Result.LOST


def describe(move: dispute.Move, game: dispute.Game) -> tuple[str, str]:
    if isinstance(move, Reveal):
        return "reveal", f"root at {dispute.bisection_point(game.lo, game.hi)} 0x{move.root.hex()[:16]}"
    if isinstance(move, Answer):
        return "answer", f"{'agree' if move.agree else 'disagree'} at {dispute.bisection_point(game.lo, game.hi)}"
    return "step", f"transaction {move.index}"


class Player:
    """Plays every game of one seat: the sequencer's (all games) or a challenger's (its own).

    Call `tick()` (or `play_once(now)` with the chain's time) from a node's loop; each call
    discovers new games, makes every move that is due, resolves games whose clock ran out or
    whose batch fell, reports outcomes and claims what was credited. Not thread-safe: one
    thread ticks it.

    `truth(batch_id)` is called once per disputed batch (again after a restart) and returns this
    side's view of it, e.g. `chain_trace(client, batch_id, state_before_it, genesis)`.
    `on_outcome` is called at least once per ended game (again next tick if it raised); the
    sequencer rolls back on `Result.LOST` (once per batch: every game on a lost batch reports
    LOST) and finds nothing to do on `REFUNDED` (the batch fell with an ancestor already lost).
    """

    def __init__(self, client: L1Client, db_url: str, seat: Seat, truth: TruthProvider, *,
                 on_outcome: Callable[[Outcome], None] | None = None, schema: str | None = None,
                 start_after: int = 0) -> None:
        if client.address is None:
            raise ValueError("a player signs its moves: its client needs a key")
        self.client, self.seat, self.truth_of, self.on_outcome = client, seat, truth, on_outcome
        self.address = client.address
        self.start_after = start_after  # on a first start, games up to this id are not ours to play
        self.engine = make_engine(db_url, schema)
        create_tables(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.bridge = ClientBridge(client)
        self._genesis: Genesis | None = None
        self._truths: dict[int, Truth] = {}
        self._headers: dict[int, BatchHeader] = {}

    def close(self) -> None:
        self._truths.clear()
        self.engine.dispose()

    @property
    def genesis(self) -> Genesis:
        if self._genesis is None:
            genesis = self.client.genesis()
            # Verify the key fits the seat: only the sequencer defends, the sequencer never challenges
            if (self.address == "0x" + genesis.sequencer.hex()) != (self.seat == Seat.SEQUENCER):
                raise ValueError(f"{self.address} cannot play the {self.seat.name.lower()}'s seat")
            self._genesis = genesis
        return self._genesis

    # --- entry points -------------------------------------------------------------------------

    def challenge(self, batch_id: int) -> int:
        """Open a game against a batch (the challenger's bond is taken) and play it from now on."""
        if self.seat != Seat.CHALLENGER:
            raise ValueError("only a challenger opens games")
        self.genesis  # noqa: B018 - the seat check
        info = self.client.open_game(batch_id)
        self._add(info)
        log.info("game %d: opened against batch %d", info.game_id, batch_id)
        return info.game_id

    def track(self, game_id: int) -> None:
        """Play a game this player did not open or discover itself (e.g. opened by an operator)."""
        with self.sessions() as s:
            if s.get(PlayerGameRow, (self.address, game_id)) is not None:
                return
        info = self.client.game(game_id)
        if self.seat == Seat.CHALLENGER and "0x" + info.game.challenger.hex() != self.address:
            raise ValueError(f"game {game_id} is not {self.address}'s")
        self._add(info)

    def tick(self) -> list[Played]:
        return self.play_once(self.client.now())

    def play_once(self, now: int) -> list[Played]:
        """One pass over every game not done yet, at chain time `now`; returns what was sent."""
        self.genesis  # noqa: B018 - the seat check, before anything is sent
        played: list[Played] = []
        try:
            self._discover()
        except L1Error as exc:
            log.warning("discovering games: %s", exc)
        infos = []
        for game_id in self._pending():
            try:
                infos.append(self.client.game(game_id))
            except L1Error as exc:
                log.warning("game %d: %s", game_id, exc)
        # Several games on one batch share its trace: visiting them in the order of the index
        # each needs keeps one forward walk per tick, however their intervals diverge.
        infos.sort(key=lambda i: (i.batch_id, _needed_index(i.game), i.game_id))
        for info in infos:
            try:
                played += self._play(info, now)
            except L1Error as exc:
                log.warning("game %d: %s", info.game_id, exc)
            except Exception:  # one game's failure (no trace for its batch, ...) must not stop the others
                log.exception("game %d: cannot play", info.game_id)
        return played

    def run_until_done(self, game_id: int, idle: Callable[[], object] | None = None,
                       timeout: float | None = None, poll: float = 0.2) -> Outcome:
        """Play (every game, as `tick` does) until `game_id` is over, reported and claimed.

        `idle` runs between ticks when the game is not done (default: sleep `poll` seconds);
        tests pass the opponent's tick or a time advance there."""
        self.track(game_id)
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            self.tick()
            outcome = self.outcome(game_id)
            if outcome is not None and self.is_done(game_id):
                return outcome
            if give_up is not None and time.monotonic() > give_up:
                raise TimeoutError(f"game {game_id} not done after {timeout} s")
            if idle is None:
                time.sleep(poll)
            else:
                idle()

    # --- reads --------------------------------------------------------------------------------

    def outcome(self, game_id: int) -> Outcome | None:
        with self.sessions() as s:
            row = s.get(PlayerGameRow, (self.address, game_id))
            return None if row is None or row.status == "open" else _outcome(row)

    def is_done(self, game_id: int) -> bool:
        """Over, its outcome reported, and anything credited to this player claimed."""
        with self.sessions() as s:
            row = s.get(PlayerGameRow, (self.address, game_id))
            return row is not None and not _is_pending(row)

    def progress(self) -> list[PlayerGameRow]:
        """Every game of this player, for status displays (detached rows)."""
        with self.sessions() as s:
            q = select(PlayerGameRow).where(PlayerGameRow.player == self.address).order_by(PlayerGameRow.game_id)
            return list(s.scalars(q))

    # --- one game -----------------------------------------------------------------------------

    def _play(self, info: GameInfo, now: int) -> list[Played]:
        game_id = info.game_id
        if info.status != "open":
            return self._settle(info)
        # Verify the side to move still has time: otherwise the game can only be resolved
        if info.deadline is not None and now > info.deadline:
            return self._resolve(game_id)
        g = info.game
        try:
            truth = self._truth(info.batch_id)
            # Verify my trace holds the root both sides agree on: otherwise nothing I play is backed
            if truth.root_at(g.lo) != g.lo_root:
                raise TraceMismatch(f"my root at {g.lo} is not the agreed one")
        except Exception:
            if self._batch_fell(info.batch_id):  # unplayable, but moot: close it
                return self._resolve(game_id)
            raise
        seat_rejected = _SEAT_REJECTED[self.seat]

        def mine(index: int) -> Root:
            # Past a transaction the rules reject there is no state: both sides' traces hold the
            # same REJECTED marker there, and agreeing on it would move the game past the rejected
            # transaction, where no one-step proof exists. Each seat's marker is its own, so no
            # claim past a rejection is ever agreed with.
            root = truth.root_at(index)
            return seat_rejected if root == REJECTED else root

        move = dispute.next_move(g, self.seat, mine)
        if move is None:
            return []
        proof = None
        if isinstance(move, Step):
            proof = truth.step_proof(g.lo)
            if not self._is_winning_step(info, proof):
                return []
        kind, detail = describe(move, g)
        try:
            after = self.client.move(game_id, move, proof)
        except L1Error as exc:
            if exc.code == "batch_invalidated":
                return self._resolve(game_id)
            if exc.code in STALE_CODES:
                log.info("game %d: %s refused as stale (%s); re-reading next tick", game_id, kind, exc.code)
                return []
            raise
        self._update(game_id, moves=after.game.moves, last_move=f"{kind}: {detail}")
        log.info("game %d: %s %s", game_id, kind, detail)
        return [Played(game_id, kind, detail), *self._settle(after)]

    def _is_winning_step(self, info: GameInfo, proof: StepProof | None) -> bool:
        """Run the one-step proof as the chain will: submit it only if it wins for this seat."""
        g = info.game
        try:
            outcome = dispute.compute_step_outcome(g, self._header(info.batch_id), proof, self.bridge,
                                                   self.genesis.preset)
        except SpecError as exc:
            log.error("game %d: my step proof at %d does not hold (%s): not stepping", info.game_id, g.lo, exc)
            return False
        holds = outcome is not None and outcome == g.hi_root
        if holds != (self.seat == Seat.SEQUENCER):
            log.warning("game %d: the step at %d would not win for me: not stepping", info.game_id, g.lo)
            return False
        return True

    def _batch_fell(self, batch_id: int) -> bool:
        """Lost in another game, or invalid through an ancestor: every game on it can be resolved."""
        return self.client.batch(batch_id)["status"] in ("lost", "invalid")

    def _resolve(self, game_id: int) -> list[Played]:
        try:
            info = self.client.resolve(game_id)
        except L1Error as exc:
            if exc.code in STALE_CODES:
                return []
            raise
        self._update(game_id, last_move=f"resolve: {info.status}")
        return [Played(game_id, "resolve", info.status), *self._settle(info)]

    def _settle(self, info: GameInfo) -> list[Played]:
        """Record how an ended game paid, report it once, claim what it credited."""
        if info.status == "open":
            return []
        payout = info.payout or {}
        sequencer = self.seat == Seat.SEQUENCER
        with self.sessions.begin() as s:
            row = s.get(PlayerGameRow, (self.address, info.game_id))
            if row is None:
                return []
            if row.status == "open":
                row.status = get_result(info.status, self.seat).value
                row.moves = info.game.moves
                row.credited = payout.get("sequencer_credit" if sequencer else "challenger", 0)
                row.restaked = payout.get("sequencer_stake", 0) if sequencer else 0
                row.burnt = payout.get("burnt", 0)
                row.claimed = row.credited == 0  # nothing of this game's to claim
            outcome, reported, claim = _outcome(row), row.reported, row.credited > 0 and not row.claimed
        if not reported:
            self._report(outcome)
        played = [self._claim(info.game_id)] if claim else []
        self._forget_if_done(info.batch_id)
        return played

    def _report(self, outcome: Outcome) -> None:
        log.info("game %d: %s (batch %d, credited %d)", outcome.game_id, outcome.result.value, outcome.batch_id,
                 outcome.credited)
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # the hook's failure must not stop the other games: retried next tick
                log.exception("game %d: on_outcome failed; reporting again next tick", outcome.game_id)
                return
        self._update(outcome.game_id, reported=True)

    def _claim(self, game_id: int) -> Played:
        """Claim every credit of this address; it covers each settled game credited so far."""
        try:
            amount = self.client.claim()
        except L1Error as exc:
            if exc.code != "nothing_to_claim":
                raise
            amount = 0  # already claimed (a claim before a restart, or another game's)
        with self.sessions.begin() as s:
            q = select(PlayerGameRow).where(PlayerGameRow.player == self.address, PlayerGameRow.status != "open",
                                            PlayerGameRow.claimed.is_(False))
            for row in s.scalars(q):
                row.claimed = True
        log.info("claimed %d", amount)
        return Played(game_id, "claim", str(amount))

    # --- bookkeeping --------------------------------------------------------------------------

    def _truth(self, batch_id: int) -> Truth:
        truth = self._truths.get(batch_id)
        if truth is None:
            truth = self._truths[batch_id] = self.truth_of(batch_id)
        return truth

    def _header(self, batch_id: int) -> BatchHeader:
        header = self._headers.get(batch_id)
        if header is None:
            header = self._headers[batch_id] = self.client.batch_header(batch_id)
        return header

    def _forget_if_done(self, batch_id: int) -> None:
        """Drop a batch's trace (and its working state) once no game of ours against it is open."""
        with self.sessions() as s:
            q = select(PlayerGameRow.game_id).where(PlayerGameRow.player == self.address,
                                                    PlayerGameRow.batch_id == batch_id, PlayerGameRow.status == "open")
            if s.scalars(q).first() is None:
                self._truths.pop(batch_id, None)
                self._headers.pop(batch_id, None)

    def _discover(self) -> None:
        """Start playing games opened since the last look: all of them for the sequencer, its own
        for a challenger. Games that already ended are settled (and reported) too."""
        with self.sessions.begin() as s:
            cursor = s.get(PlayerCursorRow, self.address)
            if cursor is None:
                cursor = PlayerCursorRow(player=self.address, last_game_id=self.start_after)
                s.add(cursor)
            after = cursor.last_game_id
        mine = self.address if self.seat == Seat.CHALLENGER else None
        while True:
            page = self.client.games(challenger=mine, after=after, limit=100)
            if not page:
                return
            for info in page:
                self._add(info)
            after = page[-1].game_id
            with self.sessions.begin() as s:
                row = s.get(PlayerCursorRow, self.address)
                assert row is not None
                row.last_game_id = max(row.last_game_id, after)

    def _add(self, info: GameInfo) -> None:
        with self.sessions.begin() as s:
            if s.get(PlayerGameRow, (self.address, info.game_id)) is None:
                s.add(PlayerGameRow(player=self.address, game_id=info.game_id, batch_id=info.batch_id,
                                    seat=int(self.seat), status="open", moves=info.game.moves, credited=0,
                                    restaked=0, burnt=0, reported=False, claimed=False))

    def _pending(self) -> Sequence[int]:
        with self.sessions() as s:
            q = select(PlayerGameRow.game_id).where(
                PlayerGameRow.player == self.address,
                or_(PlayerGameRow.status == "open", PlayerGameRow.reported.is_(False), PlayerGameRow.claimed.is_(False)),
            ).order_by(PlayerGameRow.game_id)
            return list(s.scalars(q))

    def _update(self, game_id: int, **fields: Any) -> None:
        with self.sessions.begin() as s:
            row = s.get(PlayerGameRow, (self.address, game_id))
            if row is not None:
                for name, value in fields.items():
                    setattr(row, name, value)


def _needed_index(g: dispute.Game) -> int:
    """The trace index a game's next move reads: its bisection point, or lo at the step."""
    return g.lo if g.hi - g.lo < 2 else dispute.bisection_point(g.lo, g.hi)


def _is_pending(row: PlayerGameRow) -> bool:
    return row.status == "open" or not row.reported or not row.claimed


def _outcome(row: PlayerGameRow) -> Outcome:
    return Outcome(row.game_id, row.batch_id, Seat(row.seat), Result(row.status), row.credited, row.restaked,
                   row.burnt)
