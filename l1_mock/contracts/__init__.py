"""The base layer's contracts: bank (balances, faucet), rollup (stake, batches, finality), games
(dispute games run on contracts_spec.dispute), bridge (deposits, withdrawals, forced requests),
governance (time-locked changes) and escape (freeze, escape claims, deposit refunds).
Importing this package registers their methods with the chain.
"""

from l1_mock.contracts import bank, bridge, escape, games, governance, rollup  # noqa: F401
