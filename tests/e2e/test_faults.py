"""sequencer/faults.py, without processes: every fault kind turns an honest batch into a lie the
one-step proof catches. The liar's trace agrees with the truth up to the lie and not after it;
a transaction the rules reject is rejected by the spec; and the base layer's step verdict
(contracts_spec.dispute.compute_step_outcome, fed the honest side's proof) goes against the liar.
And fault injection is refused at startup outside the dev preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts_spec import codec, dispute, eip712
from contracts_spec.dispute import Game, Seat
from contracts_spec.errors import InvalidTransaction
from contracts_spec.params import MAINNET
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, apply_batch, process_tx
from contracts_spec.types import BatchData, OraclePrice
from sequencer import faults
from sequencer.scenario import BatchBuilder, Keys, dev_genesis
from verifier.trace import Trace

T0 = 1_700_000_000
USDC = 10**6
BTC, ETH = 0, 1
P_BTC, P_ETH = 600_000, 300_000


class World:
    """A state after a setup batch: funded accounts, prices, positions (dave ~18x long BTC,
    vic ~18x short ETH), and a builder for the next batch."""

    def __init__(self) -> None:
        self.keys = Keys()
        self.genesis = dev_genesis(Keys(), genesis_time=T0)
        self.b = BatchBuilder(self.genesis, self.keys)
        self.state = State.from_genesis(self.genesis)
        b = self.b
        for name, usdc in (("alice", 1_000_000), ("bob", 1_000_000), ("carol", 10_000), ("erin", 10_000),
                           ("dave", 2_000), ("vic", 10_000), ("cp", 5_000_000)):
            b.deposit(name, usdc * USDC)
        self.setup_oracle = b.oracle(BTC, P_BTC, T0)
        b.oracle(ETH, P_ETH, T0)
        b.match("bob", "alice", BTC, maker_buys=False, price=P_BTC, lots=1_000)  # alice long, bob short
        b.match("cp", "dave", BTC, maker_buys=False, price=P_BTC, lots=6_000)  # dave ~18x long
        b.match("cp", "vic", ETH, maker_buys=True, price=P_ETH, lots=60_000)  # vic ~18x short
        b.apply(self.state, T0)
        self.state.checkpoint()
        self.orders = {eip712.order_digest(self.genesis.preset, o.order): o for o in b.orders}
        b.reset()

    def addr(self, name: str) -> str:
        return "0x" + self.keys.addr(name).hex()

    def signed(self, name: str, market: int, is_buy: bool, price: int, lots: int) -> str:
        index = self.b.order(name, market, is_buy, price, lots)
        so = self.b.orders.pop(index)
        return codec.encode_signed_order(so).hex()

    def oracle_pair(self, market: int, price: int, t: int) -> OraclePrice:
        """Two reports a few ticks apart: the lower median is `price`."""
        reports = tuple(eip712.sign_oracle_report(self.genesis.preset, Keys()[f"oracle-{i}"], market, price + 3 * i, t)
                        for i in range(2))
        return self.b._add(OraclePrice(market, t, reports))  # type: ignore[arg-type, return-value]


def ingredients(w: World, kind: str) -> tuple[int, dict[str, Any]]:
    """The honest batch a fault kind needs (in w.b) and its params; returns the batch time."""
    b, t = w.b, T0 + 5
    if kind.startswith("funding"):
        t = T0 + 61
    params: dict[str, Any] = {}
    if kind in ("liquidation_outside_band", "wrong_penalty"):
        w.oracle_pair(BTC, P_BTC * 96 // 100, t)
        b.liquidate("dave", BTC, 6_000, P_BTC * 96 // 100)
    elif kind in ("deficit_booked_wrong", "socialised_wrong"):
        w.oracle_pair(BTC, P_BTC * 90 // 100, t)
        b.liquidate("dave", BTC, 6_000, P_BTC * 90 // 100)
    elif kind == "socialised_when_fund_could_pay":
        w.oracle_pair(ETH, P_ETH * 110 // 100, t)
        b.liquidate("vic", ETH, 60_000, P_ETH * 110 // 100)
    else:
        w.oracle_pair(BTC, P_BTC, t)
        w.oracle_pair(ETH, P_ETH, t)
    if kind.startswith("funding"):
        b.funding(BTC)
    b.match("alice", "bob", BTC, maker_buys=True, price=P_BTC + 5, lots=7)
    b.match("erin", "carol", ETH, maker_buys=False, price=P_ETH, lots=3)
    if kind == "margin":
        params = {"maker": w.signed("cp", BTC, False, P_BTC, 60_000), "taker": w.signed("carol", BTC, True, P_BTC, 60_000),
                  "lots": 60_000}  # 360,000 USDC of BTC on 10,000
    elif kind == "healthy_liquidation":
        params = {"account": w.addr("alice"), "market": BTC}
    elif kind == "forged_signature":
        params = {"buyer": w.addr("carol"), "seller": w.addr("erin"), "market": BTC, "lots": 10}
    elif kind == "fill_after_cancel":
        resting = b.order("alice", ETH, False, P_ETH + 500, 5)
        w.orders[eip712.order_digest(w.genesis.preset, b.orders[resting].order)] = b.orders[resting]
        b.cancel("alice", resting)
        params = {"taker": w.signed("erin", ETH, True, P_ETH + 500, 5)}
    elif kind == "withdraw_beyond_free":
        params = {"withdraw": codec.encode_tx(eip712.sign_withdraw(w.genesis.preset, w.keys["carol"], 50_000 * USDC, 0)).hex()}
    elif kind == "inflated_balance":
        params = {"account": w.addr("carol")}
    return t, params


@pytest.mark.parametrize("kind", sorted(faults.KINDS))
def test_each_fault_is_a_lie_the_one_step_proof_catches(kind: str) -> None:
    w = World()
    t, params = ingredients(w, kind)
    honest = w.b.data()
    env = w.b.env(t)
    pre = w.state.copy()
    ctx = faults.Ctx(pre.copy(), honest, env, params, w.orders.get, {BTC: w.setup_oracle, ETH: w.setup_oracle})
    lie = faults.KINDS[kind](ctx)
    assert lie.writes, "a lie writes something"
    # The liar's own trace, and its post root: not what the spec gives
    posted = pre.copy()
    faults.execute_lie(posted, lie, env)
    data = codec.encode_batch_data(lie.body)
    header = faults.header_for(0, pre.root(), posted, lie.body, data, t)
    liar = faults.LieTrace(pre.copy(), header, lie.body, env, lie)
    assert liar.root_at(len(lie.body.txs)) == header.post_root
    truth = Trace(pre.copy(), header, lie.body, env)
    # Verify the two agree up to the lie and not after it
    assert liar.root_at(lie.at) == truth.root_at(lie.at)
    assert liar.root_at(lie.at + 1) != truth.root_at(lie.at + 1)
    if lie.rejected:  # the rules reject the transaction the lie is told with
        state = truth.seek(lie.at).copy()
        with pytest.raises(InvalidTransaction):
            process_tx(state, lie.body.txs[lie.at], BatchOrders(lie.body.orders, env.preset), env)
    # The base layer's verdict on the one step, from the honest side's proof: against the liar
    game = Game(batch=1, challenger=bytes(20), tx_count=header.tx_count, lo=lie.at, hi=lie.at + 1,
                lo_root=liar.root_at(lie.at), hi_root=liar.root_at(lie.at + 1), mid_root=None, turn=Seat.CHALLENGER,
                clocks=(30, 30), turn_started=T0, challenger_bond=1, sequencer_bond=1)  # type: ignore[arg-type]
    outcome = dispute.compute_step_outcome(game, header, truth.step_proof(lie.at), w.b.bridge, env.preset)
    assert outcome is None or outcome != game.hi_root
    won = dispute.apply_step(game, Seat.CHALLENGER, outcome, T0)
    assert won.status == dispute.Status.CHALLENGER_WON
    # ...while the liar's own proof of that step cannot win it either
    mine = liar.step_proof(lie.at)
    assert dispute.compute_step_outcome(game, header, mine, w.b.bridge, env.preset) != game.hi_root


def test_a_skipped_deposit_leaves_out_every_deposit_and_what_needed_it() -> None:
    w = World()
    w.b.deposit("newcomer", 500 * USDC)
    w.oracle_pair(BTC, P_BTC, T0 + 5)
    w.b.match("alice", "bob", BTC, maker_buys=True, price=P_BTC, lots=3)
    honest = w.b.data()
    ctx = faults.Ctx(w.state.copy(), honest, w.b.env(T0 + 5), {}, w.orders.get, {})
    body = faults.skip_deposits(ctx)
    assert len(body.txs) == len(honest.txs) - 1
    state = w.state.copy()
    apply_batch(state, body, w.b.env(T0 + 5))  # valid: the base layer, not a game, refuses it once overdue
    assert state.globals().deposits_consumed == w.state.globals().deposits_consumed


def test_a_batch_without_the_ingredients_is_not_corrupted() -> None:
    w = World()
    w.oracle_pair(BTC, P_BTC, T0 + 5)
    ctx = faults.Ctx(w.state.copy(), w.b.data(), w.b.env(T0 + 5), {}, w.orders.get, {})
    for kind in ("wrong_penalty", "funding_wrong_rate", "overfill", "fill_after_cancel"):
        with pytest.raises(faults.NotApplicable):
            faults.KINDS[kind](ctx)
    assert isinstance(ctx.body, BatchData)


def test_a_lie_a_later_transaction_writes_over_is_not_told() -> None:
    """A second oracle update of the market after the one the lie follows: the lie's write is
    overwritten, the batch would be honest, and the injector waits for another batch (the matrix
    once hung on such a batch: posted as a fault, judged valid by every verifier, made final)."""
    w = World()
    t = T0 + 5
    w.oracle_pair(BTC, P_BTC, t - 1)
    w.oracle_pair(BTC, P_BTC + 1, t)
    w.b.match("alice", "bob", BTC, maker_buys=True, price=P_BTC + 5, lots=7)
    honest, env = w.b.data(), w.b.env(t)
    ctx = faults.Ctx(w.state.copy(), honest, env, {}, w.orders.get, {})
    lie = faults.fault_oracle_not_median(ctx)
    told, true = w.state.copy(), w.state.copy()
    faults.execute_lie(told, lie, env)
    apply_batch(true, honest, env)
    assert told.root() == true.root()
    with pytest.raises(faults.NotApplicable):
        faults.check_told(lie.body, honest, told.root(), true.root())
    faults.check_told(lie.body, honest, told.root(), bytes(32))  # a root that differs: a lie


class _Batcher:
    def __init__(self, preset: Any) -> None:
        self.preset = preset
        self.post = lambda built: None


def test_fault_injection_is_refused_outside_the_dev_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sequencer.settings import UnsafeSettings

    monkeypatch.setenv(faults.FAULT_FILE_ENV, str(tmp_path / "faults.json"))
    with pytest.raises(UnsafeSettings, match="dev-only"):
        faults.install(_Batcher(MAINNET))
    dev = _Batcher(dev_genesis(Keys()).preset)
    before = dev.post
    faults.install(dev)
    assert dev.post is not before  # armed on dev
    monkeypatch.delenv(faults.FAULT_FILE_ENV)
    plain = _Batcher(MAINNET)
    faults.install(plain)  # without the setting: nothing happens, on any preset
    assert plain.post is not None and not hasattr(plain, "faults")


def test_the_sequencer_refuses_to_start_with_a_fault_file_on_a_mainnet_genesis(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from contracts_spec.params import genesis_to_json

    genesis = dev_genesis(Keys(), preset=MAINNET, genesis_time=T0)
    gfile = tmp_path / "genesis.json"
    gfile.write_text(genesis_to_json(genesis))
    env = {**os.environ, faults.FAULT_FILE_ENV: str(tmp_path / "faults.json"), "RAMPART_AUTO_STAKE": "false"}
    done = subprocess.run([sys.executable, "-m", "sequencer.cli", "--genesis", str(gfile), "--db",
                           f"sqlite:///{tmp_path / 'seq.db'}", "--l1", "http://127.0.0.1:9"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "dev-only" in done.stderr
