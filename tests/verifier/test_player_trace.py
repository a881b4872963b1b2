"""The player's trace: roots by re-execution in any order equal a straight replay, every
transaction's one-step proof convinces the spec's verdict, rejections and injected faults."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from contracts_spec import codec, dispute
from contracts_spec.crypto import keccak
from contracts_spec.dispute import Game, Seat
from contracts_spec.errors import InvalidTransaction
from contracts_spec.merkle import list_root
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, Env, process_tx
from contracts_spec.types import BatchData, BatchHeader, Root, Seconds, Trade
from sequencer.scenario import BatchBuilder, Keys, dev_genesis
from verifier.trace import REJECTED, Fault, Trace, TraceMismatch

USDC = 1_000_000
T0 = 1_700_000_000
BTC, ETH = 0, 1
NOW = T0 + 20


def _world() -> tuple[State, BatchBuilder]:
    """Funded, priced accounts with open BTC positions; returns the state and a builder for the next batch."""
    keys = Keys()
    genesis = dev_genesis(keys, genesis_time=T0)
    state = State.from_genesis(genesis)
    b = BatchBuilder(genesis, keys)
    for name, amount in (("alice", 100_000), ("bob", 100_000), ("carol", 2_000), ("dave", 1_000_000)):
        b.deposit(name, amount * USDC)
    b.oracle(BTC, 600_000, T0 + 1)
    b.oracle(ETH, 300_000, T0 + 1)
    b.match("alice", "bob", BTC, maker_buys=True, price=600_000, lots=1_000)
    b.apply(state, T0 + 10)
    state.root()
    state.checkpoint()
    b.reset()
    return state, b


def _every_kind(b: BatchBuilder) -> BatchData:
    b.match("dave", "carol", BTC, maker_buys=False, price=600_000, lots=5_000)
    b.match("dave", "carol", ETH, maker_buys=False, price=300_000, lots=100)
    b.oracle(BTC, 570_000, NOW - 5)
    b.liquidate("carol", BTC, 5_000, 570_000)
    b.withdraw("bob", 1_000_000, 0)
    b.deposit("erin", 5_000_000)
    resting = b.order("dave", ETH, True, 290_000, 10)
    b.cancel("dave", resting)
    b.cancel_all("dave", 10)
    b.forced_withdraw("alice", 1_000)
    for lots in (1, 2, 3):
        b.match("alice", "bob", BTC, maker_buys=lots % 2 == 0, price=570_000, lots=lots)
    return b.data()


def _replay(pre: State, body: BatchData, env: Env, fault: Fault | None = None) -> list[Root | None]:
    """Roots by a straight replay, one transaction after the other (None after a rejection)."""
    state = pre.copy()
    roots: list[Root | None] = [state.root()]
    orders = BatchOrders(body.orders, env.preset)
    for i, tx in enumerate(body.txs):
        try:
            process_tx(state, tx, orders, env)
        except InvalidTransaction:
            return roots + [None] * (len(body.txs) - i)
        if fault is not None:
            fault(i, state)
        roots.append(state.root())
    return roots


def _header(pre_root: Root, post_root: Root, body: BatchData) -> BatchHeader:
    return BatchHeader(
        index=1, prev_root=pre_root, post_root=post_root, tx_count=len(body.txs),
        tx_root=list_root([codec.tx_hash(t) for t in body.txs]), data_hash=keccak(b"unused"),
        deposits_consumed=0, forced_consumed=0, withdrawal_root=keccak(b"unused"),
        orders_root=list_root([codec.signed_order_hash(o) for o in body.orders]), time=Seconds(NOW),
    )


def _step_game(header: BatchHeader, index: int, lo_root: Root, hi_root: Root) -> Game:
    return Game(batch=1, challenger=b"\xcc" * 20, tx_count=header.tx_count, lo=index, hi=index + 1, lo_root=lo_root,
                hi_root=hi_root, mid_root=None, turn=Seat.CHALLENGER, clocks=(30, 30), turn_started=Seconds(NOW),
                challenger_bond=0, sequencer_bond=0)


def _setup(fault: Fault | None = None) -> tuple[State, BatchData, Env, list[Root | None], BatchHeader]:
    pre, b = _world()
    body = _every_kind(b)
    env = b.env(NOW)
    roots = _replay(pre, body, env, fault)
    post = roots[-1]
    return pre, body, env, roots, _header(pre.root(), post if post is not None else REJECTED, body)


@pytest.mark.parametrize("seed", range(4))
def test_roots_in_any_order_equal_a_straight_replay(seed: int) -> None:
    pre, body, env, roots, header = _setup()
    trace = Trace(pre.copy(), header, body, env)
    order = list(range(len(roots) + 2)) * 2
    random.Random(seed).shuffle(order)
    for i in order:
        assert trace.root_at(i) == roots[min(i, len(body.txs))], i
    trace.roots.clear()  # the cache aside, walking back and forth gives the same roots
    for i in reversed(order):
        assert trace.root_at(i) == roots[min(i, len(body.txs))], i
    assert trace.executed == len(body.txs)  # the STF ran each once: walking forward again replays
    trace.rewind(0)
    assert trace.state.root() == pre.root()


def test_every_step_proof_convinces_the_spec() -> None:
    pre, body, env, roots, header = _setup()
    trace = Trace(pre.copy(), header, body, env)
    assert trace.step_proof(len(body.txs)) is None  # a padding step needs no proof
    for i, tx in enumerate(body.txs):
        proof = trace.step_proof(random.Random(i).randrange(len(body.txs)))  # move the walk elsewhere first
        proof = trace.step_proof(i)
        assert proof is not None
        assert len(proof.orders) == (2 if isinstance(tx, Trade) else 0)
        game = _step_game(header, i, roots[i], roots[i + 1])  # type: ignore[arg-type]
        assert dispute.compute_step_outcome(game, header, proof, env.bridge, env.preset) == roots[i + 1]


def test_a_rejected_transaction_ends_the_trace() -> None:
    pre, b = _world()
    b.deposit("erin", 5 * USDC)
    b.withdraw("erin", 50 * USDC, 0)  # more than erin has: the rules reject it
    b.deposit("erin", 5 * USDC)
    body, env = b.data(), b.env(NOW)
    header = _header(pre.root(), keccak(b"any claim"), body)
    trace = Trace(pre.copy(), header, body, env)
    assert trace.root_at(3) == trace.root_at(2) == REJECTED and trace.rejected_at == 1
    assert trace.root_at(1) == _replay(pre, body, env)[1]
    proof = trace.step_proof(1)
    game = _step_game(header, 1, trace.root_at(1), keccak(b"claimed valid"))
    assert dispute.compute_step_outcome(game, header, proof, env.bridge, env.preset) is None
    with pytest.raises(TraceMismatch):
        trace.step_proof(2)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_fault_changes_every_root_after_it(where: str) -> None:
    pre, body, env, truth, header = _setup()
    n = len(body.txs)
    at = {"first": 0, "middle": n // 2, "last": n - 1}[where]

    def lie(index: int, state: State) -> None:
        if index == at:
            addr = Keys().addr("mallory")
            state.set_account(addr, replace(state.account(addr), collateral=USDC))

    faulty = Trace(pre.copy(), header, body, env, lie)
    assert [faulty.root_at(i) for i in range(n, -1, -1)][::-1] == _replay(pre, body, env, lie)
    assert all((faulty.root_at(i) == truth[i]) == (i <= at) for i in range(n + 1))
    # The faulty side's own proof of its lie still yields the true root: it cannot win the step
    game = _step_game(header, at, truth[at], faulty.root_at(at + 1))  # type: ignore[arg-type]
    outcome = dispute.compute_step_outcome(game, header, faulty.step_proof(at), env.bridge, env.preset)
    assert outcome == truth[at + 1] != game.hi_root


def test_a_trace_refuses_a_pre_state_that_is_not_the_batch_s() -> None:
    pre, body, env, _, header = _setup()
    with pytest.raises(TraceMismatch):
        Trace(pre.copy(), replace(header, prev_root=keccak(b"other")), body, env)
    with pytest.raises(TraceMismatch):
        Trace(pre.copy(), replace(header, tx_count=header.tx_count + 1), body, env)
