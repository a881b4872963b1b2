"""Building signed batches by hand: named dev keys, a bridge mirror, orders and transactions.

Used by the demo, the tests, the benchmarks and the fault harness; never by the live
sequencer's matching path. Keys come from `private_key_from_seed` and are for dev only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from contracts_spec import eip712
from contracts_spec.crypto import address_of_private_key, private_key_from_seed
from contracts_spec.params import DEV, make_genesis
from contracts_spec.state import State
from contracts_spec.stf import Env, MemoryBridge, apply_batch
from contracts_spec.types import (
    Address,
    BatchData,
    Cancel,
    CancelAll,
    Deposit,
    DepositEntry,
    ForcedEntry,
    ForcedWithdraw,
    FundingTick,
    Genesis,
    Liquidate,
    OraclePrice,
    Order,
    Preset,
    SignedOrder,
    TimeInForce,
    Trade,
    Tx,
    Withdraw,
)

_T = TypeVar("_T", bound=Tx)


class Keys:
    """Deterministic dev keys by name: `keys["alice"]` is a private key, `keys.addr("alice")` its address."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self._cache: dict[str, bytes] = {}

    def __getitem__(self, name: str) -> bytes:
        key = self._cache.get(name)
        if key is None:
            key = self._cache[name] = private_key_from_seed((self.namespace + name).encode())
        return key

    def addr(self, name: str) -> Address:
        return address_of_private_key(self[name])


ORACLE_NAMES = ("oracle-0", "oracle-1", "oracle-2")


def dev_genesis(keys: Keys, preset: Preset = DEV, genesis_time: int = 1_700_000_000) -> Genesis:
    return make_genesis(
        preset,
        oracle_signers=tuple(keys.addr(n) for n in ORACLE_NAMES),
        oracle_quorum=2,
        sequencer=keys.addr("sequencer"),
        governance=keys.addr("governance"),
        genesis_time=genesis_time,
    )


@dataclass
class BatchBuilder:
    """Accumulates one batch's signed orders and transactions; mirrors the bridge's queues."""

    genesis: Genesis
    keys: Keys
    bridge: MemoryBridge = field(default_factory=MemoryBridge)
    orders: list[SignedOrder] = field(default_factory=list)
    txs: list[Tx] = field(default_factory=list)
    nonces: dict[Address, int] = field(default_factory=dict)

    @property
    def preset(self) -> Preset:
        return self.genesis.preset

    # --- bridge ---

    def deposit(self, name: str, amount: int) -> Deposit:
        self.bridge.deposits.append(DepositEntry(self.keys.addr(name), amount))  # type: ignore[arg-type]
        return self._add(Deposit(len(self.bridge.deposits) - 1))

    def forced_withdraw(self, name: str, amount: int) -> ForcedWithdraw:
        self.bridge.forced_requests.append(ForcedEntry(self.keys.addr(name), amount))  # type: ignore[arg-type]
        return self._add(ForcedWithdraw(len(self.bridge.forced_requests) - 1))

    # --- oracle and funding ---

    def oracle(self, market: int, price: int, time: int, signers: tuple[str, ...] = ORACLE_NAMES[:2]) -> OraclePrice:
        reports = tuple(eip712.sign_oracle_report(self.preset, self.keys[s], market, price, time) for s in signers)
        return self._add(OraclePrice(market, time, reports))  # type: ignore[arg-type]

    def funding(self, market: int) -> FundingTick:
        return self._add(FundingTick(market))

    # --- orders and trades ---

    def order(
        self,
        name: str,
        market: int,
        is_buy: bool,
        price: int,
        lots: int,
        tif: TimeInForce = TimeInForce.GTC,
        reduce_only: bool = False,
        expiry: int = 0,
        nonce: int | None = None,
        signer: str | None = None,
    ) -> int:
        """Sign an order (by `signer`, default its owner) and add it to the batch; returns its index."""
        account = self.keys.addr(name)
        if nonce is None:
            nonce = self.nonces.get(account, 0)
            self.nonces[account] = nonce + 1
        order = Order(account, market, is_buy, price, lots, tif, reduce_only, expiry, nonce, 0)  # type: ignore[arg-type]
        self.orders.append(eip712.sign_order(self.preset, order, self.keys[signer or name]))
        return len(self.orders) - 1

    def trade(self, maker: int, taker: int, lots: int, price: int | None = None) -> Trade:
        price = self.orders[maker].order.price if price is None else price
        return self._add(Trade(maker, taker, lots, price))  # type: ignore[arg-type]

    def match(self, maker_name: str, taker_name: str, market: int, maker_buys: bool, price: int, lots: int) -> Trade:
        """Two fresh orders that cross exactly, and the trade between them."""
        m = self.order(maker_name, market, maker_buys, price, lots)
        t = self.order(taker_name, market, not maker_buys, price, lots)
        return self.trade(m, t, lots)

    def cancel(self, name: str, order_index: int) -> Cancel:
        oid = eip712.order_digest(self.preset, self.orders[order_index].order)
        return self._add(eip712.sign_cancel(self.preset, self.keys[name], oid))

    def cancel_all(self, name: str, nonce_floor: int) -> CancelAll:
        return self._add(eip712.sign_cancel_all(self.preset, self.keys[name], nonce_floor))

    def liquidate(self, name: str, market: int, lots: int, price: int) -> Liquidate:
        return self._add(Liquidate(self.keys.addr(name), market, lots, price))  # type: ignore[arg-type]

    def withdraw(self, name: str, amount: int, nonce: int) -> Withdraw:
        return self._add(eip712.sign_withdraw(self.preset, self.keys[name], amount, nonce))

    # --- result ---

    def _add(self, tx: _T) -> _T:
        self.txs.append(tx)
        return tx

    def data(self) -> BatchData:
        return BatchData(tuple(self.orders), tuple(self.txs))

    def reset(self) -> None:
        """Start the next batch (the bridge mirror and nonces carry over)."""
        self.orders = []
        self.txs = []

    def env(self, now: int) -> Env:
        return Env(self.preset, now, self.bridge)  # type: ignore[arg-type]

    def apply(self, state: State, now: int) -> None:
        apply_batch(state, self.data(), self.env(now))
