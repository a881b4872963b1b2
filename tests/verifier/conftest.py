"""Fixtures for the dispute-player tests: a base layer over real HTTP on 127.0.0.1 (SQLite, manual
time), a sequencer that posts honest or lying batches built with the spec, and players with their
progress in SQLite or, when RAMPART_TEST_PG is set, in a fresh PostgreSQL schema per test.
Clocks move only by the chain's dev time advance; nothing sleeps."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from contracts_spec import codec, witness
from contracts_spec.crypto import keccak
from contracts_spec.dispute import Seat
from contracts_spec.errors import InvalidTransaction
from contracts_spec.merkle import list_root
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, Env, process_tx
from contracts_spec.types import Atoms, BatchData, BatchHeader, Genesis, Seconds
from l1_mock.client import L1Client
from sequencer.scenario import BatchBuilder, Keys, dev_genesis
from tests.l1.conftest import NATIVE, T0, Node, make_settings
from verifier.player import Outcome, Player, TruthProvider, chain_trace
from verifier.trace import Fault, Trace

PG_URL = os.environ.get("RAMPART_TEST_PG")
USDC = 1_000_000
BTC = 0
PRICE = 600_000  # 60,000.0
PLAYERS = ("sequencer", "vera", "victor", "mallory")


def credit_mallory(keys: Keys, at: int) -> Fault:
    """A lie after transaction `at`: one USDC more for mallory than the rules give."""

    def fault(index: int, state: State) -> None:
        if index == at:
            addr = keys.addr("mallory")
            acct = state.account(addr)
            state.set_account(addr, replace(acct, collateral=Atoms(acct.collateral + USDC)))

    return fault


@dataclass
class Posted:
    batch_id: int
    header: BatchHeader
    body: BatchData
    pre: State  # the sequencer's state before the batch: copy it before handing it to a trace
    env: Env
    fault: Fault | None  # the lie the sequencer told in it, if any


class Arena:
    """A chain, a staked sequencer that builds batches on its own state, funded challengers, and
    the players of a test (closed at the end)."""

    def __init__(self, node: Node, db: tuple[str, str | None]) -> None:
        assert node.genesis is not None
        self.node, self.db = node, db
        self.genesis: Genesis = node.genesis
        self.keys = Keys()
        self.clients = {name: node.client(self.keys[name]) for name in (*PLAYERS, "alice", "bob")}
        self.seq.faucet(native=1_000 * NATIVE)
        self.seq.register_sequencer(self.genesis.preset.sequencer_stake_min)
        for name in PLAYERS[1:]:
            self.clients[name].faucet(native=10 * NATIVE)
        self.state = State.from_genesis(self.genesis)  # the head of the valid chain
        self.builder = BatchBuilder(self.genesis, self.keys)
        self.posted: dict[int, Posted] = {}
        self.players: list[Player] = []

    @property
    def seq(self) -> L1Client:
        return self.clients["sequencer"]

    def close(self) -> None:
        for p in self.players:
            p.close()

    # --- batches ----------------------------------------------------------------------------------

    def body(self, n: int) -> BatchData:
        """n transactions: deposits for alice and bob, a BTC price, then one-lot trades between
        two resting orders (so a 10,000-transaction batch holds two signatures)."""
        b = self.builder
        b.reset()
        now = self.seq.now()
        for name in ("alice", "bob")[:n]:
            self.clients[name].faucet(usdc=100_000 * USDC)
            self.clients[name].deposit(100_000 * USDC)
            b.deposit(name, 100_000 * USDC)
        if n >= 3:
            b.oracle(BTC, PRICE, now - 1)
        if n > 3:
            maker = b.order("alice", BTC, True, PRICE, n)
            taker = b.order("bob", BTC, False, PRICE, n)
            for _ in range(n - 3):
                b.trade(maker, taker, 1)
        return b.data()

    def post(self, body: BatchData, fault: Fault | None = None, build_on_lie: bool = False,
             skip_rejected: bool = False) -> int:
        """Execute and post a batch; with a fault the header carries the faulty post root and the
        sequencer's next batch builds on the valid head unless `build_on_lie`. `skip_rejected`
        posts a batch holding transactions the rules reject, as if they changed nothing."""
        preset = self.genesis.preset
        now = self.seq.now()
        env = Env(preset, Seconds(now), self.builder.bridge)
        pre, state = self.state.copy(), self.state.copy()
        prev_root = state.root()
        orders = BatchOrders(body.orders, preset)
        for i, tx in enumerate(body.txs):
            try:
                process_tx(state, tx, orders, env)
            except InvalidTransaction:
                if not skip_rejected:
                    raise
            if fault is not None:
                fault(i, state)
        data = codec.encode_batch_data(body)
        g = state.globals()
        header = BatchHeader(
            index=self.seq.rollup()["head_index"] + 1, prev_root=prev_root, post_root=state.root(),
            tx_count=len(body.txs), tx_root=list_root([codec.tx_hash(t) for t in body.txs]), data_hash=keccak(data),
            deposits_consumed=g.deposits_consumed, forced_consumed=g.forced_consumed,
            withdrawal_root=witness.globals_withdrawal_root(g),
            orders_root=list_root([codec.signed_order_hash(o) for o in body.orders]), time=Seconds(now),
        )
        bid = int(self.seq.post_batch(header, data, witness.prove_globals(state))["result"]["batch_id"])
        self.posted[bid] = Posted(bid, header, body, pre, env, fault)
        if fault is None or build_on_lie:
            self.state = state
        return bid

    # --- players ----------------------------------------------------------------------------------

    def sequencer_truth(self) -> Callable[[int], Trace]:
        """The sequencer's view: each batch as it built it, from its own records (lie included)."""

        def truth(batch_id: int) -> Trace:
            p = self.posted[batch_id]
            return Trace(p.pre.copy(), p.header, p.body, p.env, p.fault)

        return truth

    def verifier_truth(self, name: str, fault: Fault | None = None) -> Callable[[int], Trace]:
        """A verifier's view: the batch as the chain serves it, re-executed from its own pre-state."""

        def truth(batch_id: int) -> Trace:
            return chain_trace(self.clients[name], batch_id, self.posted[batch_id].pre.copy(), self.genesis,
                               fault=fault)

        return truth

    def player(self, name: str, fault: Fault | None = None, on_outcome: Callable[[Outcome], None] | None = None,
               truth: TruthProvider | None = None) -> Player:
        """The sequencer's defender (its view: what it posted) or a challenger (its view: the
        chain's batch re-executed, wrong after `fault` if given)."""
        seat = Seat.SEQUENCER if name == "sequencer" else Seat.CHALLENGER
        if truth is None:
            truth = self.sequencer_truth() if seat == Seat.SEQUENCER else self.verifier_truth(name, fault)
        p = Player(self.clients[name], self.db[0], seat, truth, on_outcome=on_outcome, schema=self.db[1])
        self.players.append(p)
        return p

    def moves(self, game_id: int) -> Counter[str]:
        """What was played in a game, from the chain's events: reveal / answer / step by seat."""
        counts: Counter[str] = Counter()
        for e in self.seq.follow(names=["Moved", "Stepped"]):
            if e.data["game_id"] == game_id:
                counts[e.data["move"] if e.name == "Moved" else f"step:{e.data['seat']}"] += 1
        return counts

    def lie(self, at: int) -> Fault:
        return credit_mallory(self.keys, at)

    @staticmethod
    def drive(*players: Player, until: Callable[[], bool], max_rounds: int = 200) -> int:
        """Tick every player in turn until `until()` holds; returns the rounds it took."""
        for rounds in range(1, max_rounds + 1):
            for p in players:
                p.tick()
            if until():
                return rounds
        raise AssertionError(f"not done after {max_rounds} rounds")

    def native(self, name: str) -> int:
        return int(self.seq.account(self.keys.addr(name))["native"])


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def player_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of the players' database: a fresh SQLite file, or a fresh PostgreSQL schema
    dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'players.db'}", None
        return
    assert PG_URL is not None
    schema = "ptest_" + uuid.uuid4().hex[:12]
    yield PG_URL, schema
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def arena(player_db: tuple[str, str | None], tmp_path: Path) -> Iterator[Arena]:
    chain = (f"sqlite:///{tmp_path / 'l1.db'}", None)
    node = Node(make_settings(chain), dev_genesis(Keys(), genesis_time=T0)).start()
    a = Arena(node, player_db)
    try:
        yield a
    finally:
        a.close()
        node.stop()
