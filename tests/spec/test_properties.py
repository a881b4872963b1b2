"""Invariants over random batches, and witness execution equal to full execution.

Random operations are drawn by hypothesis and turned into transactions against a running
state; the ones the spec accepts form the batch, the ones it rejects are checked too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts_spec import errors
from contracts_spec.codec import encode_record
from contracts_spec.margin import account_value, maintenance_requirement
from contracts_spec.merkle import SparseMerkleTree
from contracts_spec.state import State, state_key
from contracts_spec.stf import BatchOrders, apply_batch, holdings, process_tx
from contracts_spec.types import BatchData, Deposit, ForcedWithdraw, Tx, Withdraw
from contracts_spec.witness import execute_one_step, make_witness
from sequencer.scenario import BatchBuilder, Keys, dev_genesis

USDC = 1_000_000
T0 = 1_700_000_000
NOW = T0 + 10_000
NAMES = ("alice", "bob", "carol", "dave", "erin")
KEYS = Keys("props-")
GENESIS = dev_genesis(KEYS, genesis_time=T0)

op = st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from(NAMES), st.integers(1, 50_000)),
    st.tuples(st.just("oracle"), st.integers(0, 1), st.integers(-100, 100)),
    st.tuples(
        st.just("trade"), st.sampled_from(NAMES), st.sampled_from(NAMES), st.integers(0, 1),
        st.booleans(), st.integers(-30, 30), st.integers(1, 60_000),
    ),
    st.tuples(st.just("lever"), st.sampled_from(NAMES), st.sampled_from(NAMES), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("oracle"), st.integers(0, 1), st.integers(-190, 190)),
    st.tuples(st.just("liquidate"), st.sampled_from(NAMES), st.integers(0, 1)),
    st.tuples(st.just("withdraw"), st.sampled_from(NAMES), st.integers(1, 60_000)),
    st.tuples(st.just("forced"), st.sampled_from(NAMES), st.integers(1, 60_000)),
    st.tuples(st.just("funding"), st.integers(0, 1)),
)


@dataclass
class Run:
    """The accepted batch, the rejected attempts (pre-root, tx, error) and the money that moved."""

    state: State
    builder: BatchBuilder
    accepted: list[Tx] = field(default_factory=list)
    rejected: list[tuple[State, Tx, type[errors.InvalidTransaction]]] = field(default_factory=list)
    deposited: int = 0
    withdrawn: int = 0


def run_ops(ops: list[tuple]) -> Run:
    b = BatchBuilder(GENESIS, KEYS)
    state = State.from_genesis(GENESIS)
    run = Run(state, b)
    prices = {0: 600_000, 1: 300_000}
    clock = NOW - 55
    for market in (0, 1):
        b.oracle(market, prices[market], clock)
    for name in NAMES:
        b.deposit(name, 20_000 * USDC)
    orders = BatchOrders(b.orders, GENESIS.preset)
    env = b.env(NOW)
    for tx in list(b.txs):
        process_tx(state, tx, orders, env)
        run.deposited += 20_000 * USDC if isinstance(tx, Deposit) else 0
    run.accepted = list(b.txs)
    withdraw_nonce = {n: 0 for n in NAMES}

    for o in ops:
        kind = o[0]
        if kind == "deposit":
            tx = b.deposit(o[1], o[2] * USDC)
        elif kind == "oracle":
            clock = min(clock + 1, NOW)
            prices[o[1]] = prices[o[1]] * (1000 + o[2]) // 1000
            tx = b.oracle(o[1], prices[o[1]], clock)
        elif kind == "trade":
            _, maker, taker, market, maker_buys, offset, lots = o
            price = prices[market] + offset * 10
            m = b.order(maker, market, maker_buys, price, lots)
            t = b.order(taker, market, not maker_buys, price, lots)
            tx = b.trade(m, t, lots)
        elif kind == "lever":  # the taker goes ~18x into the market: one move from liquidation
            _, maker, taker, market, maker_buys = o
            price = prices[market]
            value = max(state.account(KEYS.addr(taker)).collateral, 0)
            lots = max(1, value * 18 // (price * GENESIS.markets[market].atoms_per_lot_tick))
            m = b.order(maker, market, maker_buys, price, lots)
            t = b.order(taker, market, not maker_buys, price, lots)
            tx = b.trade(m, t, lots)
        elif kind == "liquidate":  # prefer an account that is actually below maintenance
            name, market = o[1], o[2]
            for cand in NAMES:
                acct = state.account(KEYS.addr(cand))
                held = holdings(state, KEYS.addr(cand), acct)
                if acct.markets and account_value(acct.collateral, held) < maintenance_requirement(held):
                    name, market = cand, acct.markets[0]
                    break
            lots = abs(state.position(KEYS.addr(name), market).lots) or 1
            tx = b.liquidate(name, market, lots, state.market(market).oracle_price)
        elif kind == "withdraw":
            tx = b.withdraw(o[1], o[2] * USDC, withdraw_nonce[o[1]])
        elif kind == "forced":
            tx = b.forced_withdraw(o[1], o[2] * USDC)
        else:
            tx = b.funding(o[1])
        orders = BatchOrders(b.orders, GENESIS.preset)
        pre = state.copy()
        g_before = state.globals().withdrawal_count
        try:
            process_tx(state, tx, orders, env)
        except errors.InvalidTransaction as exc:
            b.txs.pop()
            run.rejected.append((pre, tx, type(exc)))
            continue
        run.accepted.append(tx)
        if isinstance(tx, Deposit):
            run.deposited += b.bridge.deposits[tx.queue_index].amount
        elif isinstance(tx, Withdraw):
            run.withdrawn += tx.amount
            withdraw_nonce[o[1]] += 1
        elif isinstance(tx, ForcedWithdraw) and state.globals().withdrawal_count > g_before:
            run.withdrawn += b.bridge.forced_requests[tx.queue_index].amount
    return run


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(op, min_size=1, max_size=40))
def test_collateral_is_conserved_exactly(ops: list[tuple]) -> None:
    run = run_ops(ops)
    total = sum(a.collateral for a in run.state.accounts().values())
    assert total == run.deposited - run.withdrawn


@SETTINGS
@given(st.lists(op, min_size=1, max_size=40))
def test_no_flat_account_is_left_negative(ops: list[tuple]) -> None:
    run = run_ops(ops)
    for address in (KEYS.addr(n) for n in NAMES):
        account = run.state.account(address)
        if not account.markets:
            assert account.collateral >= 0


@SETTINGS
@given(st.lists(op, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_execution_is_deterministic_and_root_order_independent(ops: list[tuple], rnd: object) -> None:
    run = run_ops(ops)
    root = run.state.root()
    data = BatchData(tuple(run.builder.orders), tuple(run.accepted))
    for _ in range(2):
        fresh = State.from_genesis(GENESIS)
        apply_batch(fresh, data, run.builder.env(NOW))
        assert fresh.root() == root
    leaves = [(state_key(kind, ident), encode_record(rec)) for (kind, ident), rec in run.state.records.items()
              if not (kind in (1, 2, 3) and rec == type(rec)()) and not (kind == 2 and rec.lots == 0)]
    rnd.shuffle(leaves)  # type: ignore[attr-defined]
    tree = SparseMerkleTree()
    for key, value in leaves:
        tree.set(key, value)
    assert tree.root() == root


@SETTINGS
@given(st.lists(op, min_size=1, max_size=25))
def test_witness_execution_equals_full_execution(ops: list[tuple]) -> None:
    run = run_ops(ops)
    b = run.builder
    orders = BatchOrders(b.orders, GENESIS.preset)
    env = b.env(NOW)
    state = State.from_genesis(GENESIS)
    for tx in run.accepted:
        pre_root = state.root()
        step = make_witness(state, tx, orders, env)
        assert step.error is None
        needed = _orders_of(tx, b)
        post = execute_one_step(GENESIS.preset, pre_root, step.witness, tx, needed, b.bridge, NOW)
        process_tx(state, tx, orders, env)
        assert post == state.root()
    for pre, tx, error in run.rejected:
        step = make_witness(pre, tx, orders, env)
        assert isinstance(step.error, error)
        with pytest.raises(error):
            execute_one_step(GENESIS.preset, pre.root(), step.witness, tx, _orders_of(tx, b), b.bridge, NOW)


@SETTINGS
@given(st.lists(op, min_size=1, max_size=15), st.data())
def test_dropping_a_leaf_never_gives_a_rejection(ops: list[tuple], data: st.DataObject) -> None:
    run = run_ops(ops)
    b = run.builder
    orders = BatchOrders(b.orders, GENESIS.preset)
    env = b.env(NOW)
    state = State.from_genesis(GENESIS)
    k = data.draw(st.integers(0, len(run.accepted) - 1))
    for tx in run.accepted[:k]:
        process_tx(state, tx, orders, env)
    tx = run.accepted[k]
    pre_root = state.root()
    step = make_witness(state, tx, orders, env)
    full_post = execute_one_step(GENESIS.preset, pre_root, step.witness, tx, _orders_of(tx, b), b.bridge, NOW)
    for dropped in step.keys:
        partial = state.tree.multiproof([key for key in step.keys if key != dropped])
        try:
            post = execute_one_step(GENESIS.preset, pre_root, partial, tx, _orders_of(tx, b), b.bridge, NOW)
        except errors.WitnessIncomplete:
            continue
        # the rest of the proof still covered the leaf (e.g. an empty neighbour): same answer
        assert post == full_post


def _orders_of(tx: Tx, b: BatchBuilder) -> dict:
    maker, taker = getattr(tx, "maker", None), getattr(tx, "taker", None)
    return {i: b.orders[i] for i in (maker, taker) if i is not None}
