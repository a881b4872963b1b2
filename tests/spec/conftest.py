"""Small fixtures for the spec tests: named keys, a dev genesis, a funded and priced world."""

from __future__ import annotations

import pytest

from contracts_spec.state import State
from sequencer.scenario import BatchBuilder, Keys, dev_genesis

USDC = 1_000_000
T0 = 1_700_000_000
BTC, ETH = 0, 1
BTC_PRICE, ETH_PRICE = 600_000, 300_000  # 60,000.0 and 3,000.00


class World:
    """A state after a setup batch (deposits, prices, one open BTC position each for alice/bob)."""

    def __init__(self) -> None:
        self.keys = Keys()
        self.genesis = dev_genesis(self.keys, genesis_time=T0)
        self.state = State.from_genesis(self.genesis)
        self.b = BatchBuilder(self.genesis, self.keys)
        self.now = T0 + 10
        for name, amount in (("alice", 100_000), ("bob", 100_000), ("carol", 2_000), ("dave", 1_000_000)):
            self.b.deposit(name, amount * USDC)
        self.b.oracle(BTC, BTC_PRICE, T0 + 1)
        self.b.oracle(ETH, ETH_PRICE, T0 + 1)
        self.b.match("alice", "bob", BTC, maker_buys=True, price=BTC_PRICE, lots=1_000)
        self.b.apply(self.state, self.now)
        self.state.root()
        self.state.checkpoint()
        self.b.reset()

    def apply(self) -> None:
        self.b.apply(self.state, self.now)


@pytest.fixture
def world() -> World:
    return World()
