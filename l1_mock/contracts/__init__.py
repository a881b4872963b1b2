"""The base layer's contracts: bank (balances, faucet), rollup (stake, batches, finality), games
(dispute games run on contracts_spec.dispute) and bridge (deposits, withdrawals, forced requests).
Importing this package registers their methods with the chain.
"""

from l1_mock.contracts import bank, bridge, games, rollup  # noqa: F401
