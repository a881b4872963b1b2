"""A spec-level demo: sign orders, build a batch with trades and a liquidation, execute it, print.

Run with `rampart-demo` (or `python -m sequencer.demo`). Every signature is a real EIP-712
secp256k1 signature and every number comes out of `contracts_spec`.
"""

from __future__ import annotations

import argparse
import sys

from contracts_spec import codec
from contracts_spec.margin import account_value, initial_requirement, maintenance_requirement
from contracts_spec.merkle import list_root
from contracts_spec.state import State
from contracts_spec.stf import holdings
from contracts_spec.types import FEE_ACCOUNT, INSURANCE_FUND
from l1_mock.cli_common import quiet_broken_pipe
from sequencer.scenario import BatchBuilder, Keys, dev_genesis

USDC = 1_000_000  # atoms per USDC


def usd(atoms: int) -> str:
    return f"{atoms / USDC:>14,.2f}"


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    # It takes no option (and talks to no service): --help says what it does, anything else is refused
    argparse.ArgumentParser(prog="rampart-demo", description=(__doc__ or "").split("\n\n")[0]).parse_args(argv)
    keys = Keys()
    genesis = dev_genesis(keys)
    state = State.from_genesis(genesis)
    t0 = genesis.genesis_time
    b = BatchBuilder(genesis, keys)

    # Money in, prices in: BTC at 60,000.0 (ticks of 0.1), ETH at 3,000.00 (ticks of 0.01)
    for name, amount in (("alice", 10_000), ("bob", 10_000), ("carol", 1_000), ("dave", 50_000)):
        b.deposit(name, amount * USDC)
    b.oracle(0, 600_000, t0 + 1)
    b.oracle(1, 300_000, t0 + 1)
    # carol buys 0.3 BTC (3,000 lots) from alice at 60,010: about 18x leverage
    b.match("alice", "carol", 0, maker_buys=False, price=600_100, lots=3_000)
    # bob and dave trade 2 ETH both ways around the oracle
    b.match("dave", "bob", 1, maker_buys=True, price=299_950, lots=2_000)
    b.match("dave", "bob", 1, maker_buys=False, price=300_050, lots=1_000)
    # BTC falls 5%: carol is below maintenance margin and is liquidated at the oracle price
    b.oracle(0, 570_000, t0 + 20)
    b.liquidate("carol", 0, 3_000, 570_000)
    # bob withdraws 1,000 USDC
    b.withdraw("bob", 1_000 * USDC, nonce=0)
    now = t0 + 30
    data = b.data()
    b.apply(state, now)
    root = state.root()

    payload = codec.encode_batch_data(data)
    print("Rampart spec demo: one batch executed by contracts_spec")
    print(f"  transactions      {len(data.txs)} ({len(data.orders)} signed orders)")
    print(f"  compressed data   {len(payload)} bytes")
    print(f"  tx root           0x{list_root([codec.tx_hash(tx) for tx in data.txs]).hex()}")
    print(f"  state root        0x{root.hex()}")
    print()
    print(f"  {'account':<16}{'collateral':>14}{'value':>15}{'initial req':>15}{'maint. req':>15}  positions")
    names = {keys.addr(n): n for n in ("alice", "bob", "carol", "dave")}
    names[INSURANCE_FUND] = "insurance fund"
    names[FEE_ACCOUNT] = "fees"
    for address, name in names.items():
        account = state.account(address)
        held = holdings(state, address, account)
        positions = ", ".join(
            f"{genesis.markets[m].symbol} {state.position(address, m).lots:+d} lots" for m in account.markets
        ) or "-"
        print(
            f"  {name:<16}{usd(account.collateral)}{usd(account_value(account.collateral, held))}"
            f"{usd(initial_requirement(held))}{usd(maintenance_requirement(held))}  {positions}"
        )
    total = sum(state.account(a).collateral for a in names)
    print()
    print(f"  conservation: sum of collateral = {usd(total).strip()} USDC = deposits 71,000.00 - withdrawals 1,000.00")
    return 0


if __name__ == "__main__":
    sys.exit(main())
