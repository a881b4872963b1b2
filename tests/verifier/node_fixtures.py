"""Fixtures for the verifier node and CLI tests: a base layer over HTTP on 127.0.0.1, a test
sequencer that posts honest and lying batches built with the spec, a scripted lying defender,
and verifier nodes with their own keys and databases (SQLite, and PostgreSQL in a fresh schema
per test when RAMPART_TEST_PG is set). Clocks move only by the chain's dev time advance.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from contracts_spec import dispute
from contracts_spec.dispute import Phase, Seat, Status
from contracts_spec.state import State
from contracts_spec.types import FEE_ACCOUNT, INSURANCE_FUND, Genesis
from l1_mock.client import L1Client, L1Error
from sequencer.scenario import Keys, dev_genesis
from tests.l1.conftest import NATIVE, T0, Node, make_settings
from tests.l1.rollup import Built, Sequencer
from verifier.keys import write_key
from verifier.node import Node as Verifier
from verifier.settings import Settings

PG_URL = os.environ.get("RAMPART_TEST_PG")
USDC = 1_000_000
BTC, ETH = 0, 1
BTC_PRICE, ETH_PRICE = 600_000, 300_000

Tamper = Callable[[State], None]


# --- databases ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def vdb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], tuple[str, str | None]]]:
    """A factory of verifier databases: (url, schema), one per name (the same again for the same
    name, as a restarted node reopens its own), dropped afterwards."""
    schemas: dict[str, str] = {}

    def make(name: str) -> tuple[str, str | None]:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}", None
        if name not in schemas:
            schemas[name] = f"vtest_{name}_{uuid.uuid4().hex[:10]}"
        return PG_URL, schemas[name]  # type: ignore[return-value]

    yield make
    if schemas:
        engine = create_engine(PG_URL)  # type: ignore[arg-type]
        with engine.begin() as conn:
            for schema in schemas.values():
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


# --- the world: a chain, a test sequencer, users and verifiers -----------------------------------


class World:
    def __init__(self, l1: Node, keys: Keys, vdb: Callable[[str], tuple[str, str | None]], tmp: Path) -> None:
        self.l1, self.keys, self.vdb, self.tmp = l1, keys, vdb, tmp
        self.genesis: Genesis = l1.genesis  # type: ignore[assignment]
        self.seq_client = l1.client(keys["sequencer"])
        self.seq = Sequencer(self.genesis, keys, self.seq_client)
        self.seq.stake()
        self.users: dict[str, L1Client] = {}
        self.verifiers: list[Verifier] = []

    def c(self, name: str) -> L1Client:
        if name not in self.users:
            self.users[name] = self.l1.client(self.keys[name])
        return self.users[name]

    @property
    def now(self) -> int:
        return self.seq_client.now()

    def advance(self, seconds: int) -> None:
        self.seq_client.increase_time(seconds)

    # --- verifiers ---

    def settings(self, name: str, **kw: Any) -> Settings:
        url, schema = self.vdb(name)
        key_file = self.tmp / f"{name}.key"
        if not key_file.exists():
            write_key(key_file, self.keys[name])
        return Settings(l1_url=self.l1.url, db=url, db_schema=schema, key_file=key_file, **{"workers": 1, **kw})

    def verifier(self, name: str = "vera", fund: bool = True, **kw: Any) -> Verifier:
        if fund and int(self.c(name).account(self.keys.addr(name))["native"]) == 0:
            self.c(name).faucet(native=10 * NATIVE)
        v = Verifier(self.settings(name, **kw), self.keys[name])
        self.verifiers.append(v)
        return v

    def close(self) -> None:
        for v in self.verifiers:
            v.close()
        self.verifiers.clear()

    # --- batches ---

    def post(self, built: Built) -> int:
        return self.seq.post(built)

    def repost_from(self, lost: Built) -> None:
        """After `lost` lost its game: top the stake up and build again on the batch's parent."""
        stake = int(self.seq_client.rollup()["stake"])
        need = self.genesis.preset.sequencer_stake_min - stake
        if need > 0:
            self.seq_client.register_sequencer(need)
        self.seq.rollback(lost.pre_states[0], lost.header.index)

    def post_honest(self, count: int) -> list[int]:
        """The setup batch, then `count` honest batches, posted: their base-layer batch ids."""
        ids = [self.post(self.setup_batch())]
        ids.extend(self.post(self.honest_batch(i)) for i in range(count))
        return ids

    def setup_batch(self) -> Built:
        """Deposits for five traders, both oracle prices, one open BTC position each for alice/bob."""
        b, t = self.seq.b, self.now
        for name, amount in (("alice", 100_000), ("bob", 100_000), ("carol", 2_000), ("dave", 1_000_000),
                             ("erin", 50_000)):
            self.seq.deposit(self.c(name), name, amount * USDC)
        b.oracle(BTC, BTC_PRICE, t - 1)
        b.oracle(ETH, ETH_PRICE, t - 1)
        b.match("alice", "bob", BTC, maker_buys=True, price=BTC_PRICE, lots=1_000)
        return self.seq.build(t)

    def honest_batch(self, i: int, funding: bool = False) -> Built:
        """An ordinary batch, a second later: fresh oracle prices, trades, a cancel, a withdrawal,
        and a funding tick if asked (the dev interval must have passed)."""
        self.advance(1)
        b, t = self.seq.b, self.now
        b.oracle(BTC, BTC_PRICE + (i % 7) * 10, t)
        b.oracle(ETH, ETH_PRICE, t)
        if funding:
            b.funding(BTC)
            b.funding(ETH)
        for j in range(3):
            b.match("dave", "erin", ETH, maker_buys=bool((i + j) % 2), price=ETH_PRICE, lots=1 + (i + j) % 9)
        resting = b.order("alice", ETH, True, ETH_PRICE - 1_000, 5)
        b.cancel("alice", resting)
        if i % 3 == 0:
            b.withdraw("erin", USDC, nonce=self.seq.state.account(self.keys.addr("erin")).withdraw_nonce)
        return self.seq.build(t)


# --- one batch per transaction kind, each with its own lie ----------------------------------------


def _bump_collateral(who: bytes, delta: int = 1) -> Tamper:
    def tamper(state: State) -> None:
        acct = state.account(who)
        state.set_account(who, replace(acct, collateral=acct.collateral + delta))

    return tamper


def _market(fn: Callable[[Any], dict[str, int]], market: int = BTC) -> Tamper:
    def tamper(state: State) -> None:
        m = state.market(market)
        state.set_market(market, replace(m, **fn(m)))

    return tamper


def _uncancel(owner: bytes, order_id: bytes) -> Tamper:
    def tamper(state: State) -> None:
        st = state.order_status(owner, order_id)
        state.set_order_status(owner, order_id, replace(st, cancelled=False))

    return tamper


def _floor(owner: bytes, floor: int) -> Tamper:
    def tamper(state: State) -> None:
        acct = state.account(owner)
        state.set_account(owner, replace(acct, order_nonce_floor=floor))

    return tamper


KINDS = ["deposit", "forced_withdraw", "trade", "cancel", "cancel_all", "oracle", "funding", "liquidate",
         "withdraw"]
REJECTIONS = ["margin", "healthy_liquidation", "forged_order", "overdrawn_withdrawal"]


def lying_batch(w: World, kind: str) -> Built:
    """After the setup batch: a batch whose transaction of `kind` is followed by a lie in a leaf it
    wrote (a wrong amount, fee, price, index, flag), with honest transactions around it. Anything
    the kind needs first (time, a forced request, an underwater account) is set up honestly."""
    b, k = w.seq.b, w.keys
    from contracts_spec import eip712

    w.advance(61 if kind == "funding" else 2)  # 61: the dev funding interval
    if kind == "liquidate":
        t = w.now
        b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE, lots=5_000)
        w.post(w.seq.build(t))
        w.advance(2)
    if kind == "forced_withdraw":
        w.c("erin").request_withdrawal(1_000 * USDC)
    t = w.now
    b.oracle(ETH, ETH_PRICE + 10, t - 1)  # an honest transaction before
    if kind == "deposit":
        w.seq.deposit(w.c("alice"), "alice", 5 * USDC)
        tamper = _bump_collateral(k.addr("alice"))
    elif kind == "forced_withdraw":
        b.forced_withdraw("erin", 1_000 * USDC)
        tamper = _bump_collateral(k.addr("erin"), 1_000 * USDC)  # pays nothing out
    elif kind == "trade":
        b.match("dave", "erin", ETH, maker_buys=True, price=ETH_PRICE + 10, lots=7)
        tamper = _bump_collateral(FEE_ACCOUNT, -1)
    elif kind == "cancel":
        resting = b.order("alice", ETH, True, ETH_PRICE - 1_000, 5)
        b.cancel("alice", resting)
        tamper = _uncancel(k.addr("alice"), eip712.order_digest(w.genesis.preset, b.orders[resting].order))
    elif kind == "cancel_all":
        b.cancel_all("bob", 9)
        b.nonces[k.addr("bob")] = 9  # bob's later orders sign above the floor
        tamper = _floor(k.addr("bob"), 8)
    elif kind == "oracle":
        b.oracle(BTC, BTC_PRICE + 50, t)
        tamper = _market(lambda m: {"oracle_price": m.oracle_price + 1})
    elif kind == "funding":
        b.oracle(BTC, BTC_PRICE, t)
        b.funding(BTC)
        tamper = _market(lambda m: {"funding_index": m.funding_index + 7})
    elif kind == "liquidate":
        b.oracle(BTC, 570_000, t)
        b.liquidate("carol", BTC, 5_000, 570_000)
        tamper = _bump_collateral(INSURANCE_FUND, 1)
    elif kind == "withdraw":
        b.withdraw("erin", 10 * USDC, 0)
        tamper = _bump_collateral(k.addr("erin"), 10 * USDC)
    else:
        raise ValueError(kind)
    lie_at = len(b.txs) - 1
    b.match("alice", "bob", BTC, maker_buys=False, price=BTC_PRICE + (50 if kind == "oracle" else 0), lots=3)
    return w.seq.build(t, lie_at=lie_at, tamper=tamper)


def rejected_batch(w: World, kind: str) -> Built:
    """A batch claiming valid a transaction the rules reject; the author skips it in its state."""
    w.advance(2)
    b, t = w.seq.b, w.now
    b.oracle(ETH, ETH_PRICE + 10, t - 1)
    if kind == "margin":  # carol (2,000 USDC) buys 3 BTC: far beyond 20x
        b.match("dave", "carol", BTC, maker_buys=False, price=BTC_PRICE, lots=30_000)
    elif kind == "healthy_liquidation":
        b.liquidate("alice", BTC, 1_000, BTC_PRICE)
    elif kind == "forged_order":  # mallory signs an order in erin's name
        maker = b.order("dave", ETH, True, ETH_PRICE, 4)
        taker = b.order("erin", ETH, False, ETH_PRICE, 4, signer="mallory")
        b.trade(maker, taker, 4)
    elif kind == "overdrawn_withdrawal":
        b.withdraw("carol", 5_000 * USDC, 0)
    else:
        raise ValueError(kind)
    b.match("alice", "bob", BTC, maker_buys=False, price=BTC_PRICE, lots=3)
    return w.seq.build(t, skip_invalid=True)


# --- the lying sequencer's side of a game ----------------------------------------------------------


def defend(w: World, game_id: int, built: Built) -> bool:
    """The author of `built` plays its own trace: reveals when due, steps when its claim holds
    at the last transaction. Returns True if it moved."""
    info = w.seq_client.game(game_id)
    g = info.game
    if g.status != Status.OPEN:
        return False
    try:
        move = dispute.next_move(g, Seat.SEQUENCER, built.trace())
    except dispute.GameError:
        return False
    if move is None or dispute.get_phase(g) == Phase.ANSWER:
        return False
    try:
        if isinstance(move, dispute.Step):
            w.seq_client.step(game_id, built.step_proof(g.lo))
        else:
            w.seq_client.move(game_id, move)
    except L1Error as exc:
        if exc.code == "batch_invalidated":  # another game proved the batch wrong: nothing to defend
            return False
        raise
    return True


def play_out(w: World, built: Built, verifiers: list[Verifier], rounds: int = 200,
             defender: bool = True) -> None:
    """Alternate the lying defender and the verifiers until every game the verifiers play is over."""
    ours = {v.address for v in verifiers}
    for _ in range(rounds):
        for v in verifiers:
            v.sync()
        games = [g for g in w.seq_client.games(status="open") if "0x" + g.game.challenger.hex() in ours]
        if not games:
            for v in verifiers:
                v.sync()
            return
        if defender:
            moved = any(defend(w, g.game_id, built) for g in games)
        else:
            moved = False
        if not moved:
            # nobody moved in the defender's turn: let the clock run out so someone can resolve
            w.advance(w.genesis.preset.game_clock + 1)
    raise AssertionError("the games did not end")


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def genesis(keys: Keys) -> Genesis:
    return dev_genesis(keys, genesis_time=T0)


@pytest.fixture
def l1(tmp_path: Path, genesis: Genesis) -> Iterator[Node]:
    node = Node(make_settings((f"sqlite:///{tmp_path / 'l1.db'}", None)), genesis).start()
    yield node
    node.stop()


@pytest.fixture
def world(l1: Node, keys: Keys, vdb: Callable[[str], tuple[str, str | None]], tmp_path: Path) -> Iterator[World]:
    w = World(l1, keys, vdb, tmp_path)
    yield w
    w.close()


__all__ = ["BTC", "ETH", "KINDS", "NATIVE", "REJECTIONS", "USDC", "World", "defend", "genesis", "keys", "l1",
           "lying_batch", "play_out", "rejected_batch", "vdb", "world"]
