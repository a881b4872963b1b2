"""Drive the engine and the spec side by side: every emitted transaction is applied with
contracts_spec.stf.process_tx, and the engine's live state is compared with the spec's.

Orders are really signed (EIP-712, dev keys), so a Trade the engine emits is checked exactly
as a verifier would check it; fills are turned into Trades by order index, as the batcher does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts_spec import eip712
from contracts_spec.margin import account_value, initial_requirement, maintenance_requirement
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, Env, MemoryBridge, holdings, process_tx
from contracts_spec.types import (
    FEE_ACCOUNT,
    INSURANCE_FUND,
    DepositEntry,
    Order,
    SignedOrder,
    TimeInForce,
    Trade,
)
from sequencer.engine import Engine, Fill, Stp
from sequencer.scenario import ORACLE_NAMES, Keys, dev_genesis

T0 = 1_700_000_000
USDC = 1_000_000


@dataclass
class Mirror:
    """An engine, the spec state it must agree with, and the signed orders both have seen."""

    keys: Keys = field(default_factory=lambda: Keys("engine-"))
    genesis: Any = None
    engine: Engine = field(init=False)
    state: State = field(init=False)
    bridge: MemoryBridge = field(default_factory=MemoryBridge)
    orders: list[SignedOrder] = field(default_factory=list)
    index: dict[bytes, int] = field(default_factory=dict)
    nonces: dict[bytes, int] = field(default_factory=dict)
    now: int = T0
    applied: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.genesis is None:
            self.genesis = dev_genesis(self.keys, genesis_time=T0)
        self.engine = Engine.from_genesis(self.genesis)
        self.state = State.from_genesis(self.genesis)

    @property
    def preset(self) -> Any:
        return self.genesis.preset

    def addr(self, name: str) -> bytes:
        return self.keys.addr(name)

    # --- inputs -------------------------------------------------------------------------------

    def deposit(self, name: str, amount: int) -> Any:
        self.bridge.deposits.append(DepositEntry(self.addr(name), amount))  # type: ignore[arg-type]
        return self.sync(self.engine.deposit(self.addr(name), amount))

    def oracle(self, market: int, price: int, time: int | None = None) -> Any:
        time = self.now if time is None else time
        reports = tuple(
            eip712.sign_oracle_report(self.preset, self.keys[s], market, price, time) for s in ORACLE_NAMES[:2]
        )
        return self.sync(self.engine.set_oracle(market, price, time, reports))

    def sign(
        self, name: str, market: int, is_buy: bool, price: int, lots: int, tif: TimeInForce = TimeInForce.GTC,
        reduce_only: bool = False, expiry: int = 0, client_id: int = 0, nonce: int | None = None,
    ) -> tuple[SignedOrder, bytes]:
        account = self.addr(name)
        if nonce is None:
            nonce = self.nonces.get(account, 0)
            self.nonces[account] = nonce + 1
        order = Order(account, market, is_buy, price, lots, tif, reduce_only, expiry, nonce, client_id)  # type: ignore[arg-type]
        signed = eip712.sign_order(self.preset, order, self.keys[name])
        oid = eip712.order_digest(self.preset, order)
        if oid not in self.index:
            self.index[oid] = len(self.orders)
            self.orders.append(signed)
        return signed, oid

    def place(self, name: str, market: int, is_buy: bool, price: int, lots: int, stp: Stp = Stp.EXPIRE_MAKER,
              market_order: bool = False, **kw: Any) -> tuple[Any, bytes]:
        signed, oid = self.sign(name, market, is_buy, price, lots, **kw)
        return self.sync(self.engine.place(signed, oid, stp, self.now, market_order)), oid

    def cancel(self, name: str, oid: bytes) -> Any:
        tx = eip712.sign_cancel(self.preset, self.keys[name], oid)
        return self.sync(self.engine.cancel(self.addr(name), oid, tx))

    def cancel_all(self, name: str, nonce_floor: int | None = None, market: int | None = None) -> Any:
        tx = None if nonce_floor is None else eip712.sign_cancel_all(self.preset, self.keys[name], nonce_floor)
        return self.sync(self.engine.cancel_all(self.addr(name), market, tx))

    def replace(self, name: str, old: bytes, market: int, is_buy: bool, price: int, lots: int, **kw: Any) -> Any:
        signed, oid = self.sign(name, market, is_buy, price, lots, **kw)
        tx = eip712.sign_cancel(self.preset, self.keys[name], old)
        return self.sync(self.engine.replace(self.addr(name), old, signed, oid, Stp.EXPIRE_MAKER, self.now, tx)), oid

    def funding(self, market: int) -> Any:
        return self.sync(self.engine.funding_tick(market, self.now))

    def liquidations(self) -> Any:
        return self.sync(self.engine.liquidations(self.now))

    # --- the spec side ------------------------------------------------------------------------

    def to_tx(self, event: Any) -> Any:
        if type(event) is Fill:
            return Trade(self.index[event.maker], self.index[event.taker], event.lots, event.price)  # type: ignore[arg-type]
        return event

    def sync(self, result: Any = None) -> Any:
        """Apply everything the engine emitted to the spec state (raises if the spec refuses)."""
        events = self.engine.take()
        if events:
            batch = BatchOrders(self.orders, self.preset)
            env = Env(self.preset, self.now, self.bridge)  # type: ignore[arg-type]
            for event in events:
                tx = self.to_tx(event)
                process_tx(self.state, tx, batch, env)
                self.applied.append(tx)
        return result

    # --- comparison ---------------------------------------------------------------------------

    def check(self) -> None:
        """The engine's live risk state equals the spec's records and margin functions."""
        risk = self.engine.risk
        state = self.state
        for mid in risk.markets:
            spec = state.market(mid)
            mine = self.engine.market_record(mid)
            assert mine == spec, (mine, spec)
        for address, acct in risk.accounts.items():
            spec_acct = state.account(address)
            assert acct.collateral == spec_acct.collateral, (address.hex(), acct.collateral, spec_acct.collateral)
            if address not in (INSURANCE_FUND, FEE_ACCOUNT):
                assert acct.nonce_floor == spec_acct.order_nonce_floor
            held = sorted(m for m, p in acct.positions.items() if p.lots)
            assert tuple(held) == spec_acct.markets, (held, spec_acct.markets)
            for mid in held:
                pos = acct.positions[mid]
                spec_pos = state.position(address, mid)
                assert (pos.lots, pos.funding_index, pos.loss_index) == (
                    spec_pos.lots, spec_pos.funding_index, spec_pos.loss_index)
            spec_held = holdings(state, address, spec_acct)
            assert risk.value(acct) == account_value(spec_acct.collateral, spec_held)
            assert risk.requirement(acct, False) == initial_requirement(spec_held)
            assert risk.requirement(acct, True) == maintenance_requirement(spec_held)
            # what the engine rests is what the spec has left of each order
            for oid, order in acct.orders.items():
                status = state.order_status(address, oid)
                assert not status.cancelled
                assert order.signed.order.lots - status.filled == order.remaining
            # counted exposure is the resting orders' sum
            for pos in acct.positions.values():
                buys = sum(o.remaining for o in acct.orders.values() if o.is_buy and o.pos is pos)
                sells = sum(o.remaining for o in acct.orders.values() if not o.is_buy and o.pos is pos)
                assert (pos.open_buy, pos.open_sell) == (buys, sells)
            # a boxed account's slack is a lower bound of its worst-case excess
            if acct.slack >= 0:
                assert risk.excess(acct) >= acct.slack >= 0
