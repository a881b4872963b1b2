"""The honest replay: the valid chain on the base layer, re-executed with contracts_spec from
genesis, incrementally (a batch that leaves the valid chain is walked back with the state's undo
log). What balances are checked against, and where money is counted.
"""

from __future__ import annotations

from typing import Any

from contracts_spec import codec
from contracts_spec.errors import InvalidTransaction
from contracts_spec.state import ACCOUNT, POSITION, State
from contracts_spec.stf import BatchOrders, Env, process_tx
from contracts_spec.types import ForcedWithdraw, Seconds, Withdraw
from l1_mock.client import ClientBridge, L1Client
from l1_mock.envelope import unhex


class Replay:
    def __init__(self, client: L1Client) -> None:
        self.client = client
        self.genesis = client.genesis()
        self.state = State.from_genesis(self.genesis)
        self.bridge = ClientBridge(client)
        self.ids: list[int] = []  # the valid batch id at each replayed index
        self.roots: list[bytes] = []
        self.marks: list[int] = [len(self.state.undo)]
        self.withdrawn: list[int] = [0]  # atoms appended to the withdrawal tree, after each index
        self.kinds: list[dict[str, int]] = []  # transactions of each kind, per replayed index
        self.mismatch: str | None = None  # a valid batch whose claim the spec does not reproduce

    def sync(self) -> int:
        """Follow the valid chain to its head; returns its head index."""
        head = int(self.client.rollup()["head_index"])
        if len(self.ids) > head + 1:
            self.rewind(head + 1)
        # The valid chain below a valid batch is its ancestry: walk down to the newest index where
        # ours is still the chain's, and replay from just above it
        j = len(self.ids) - 1
        while j >= 0 and int(self.client.canonical(j)["batch_id"]) != self.ids[j]:
            j -= 1
        if j < len(self.ids) - 1:
            self.rewind(j + 1)
        self.mismatch = None
        while len(self.ids) <= head:
            if not self.apply(len(self.ids)):
                break
        return head

    def rewind(self, index: int) -> None:
        self.state.rollback_to(self.marks[index])
        del self.ids[index:], self.roots[index:], self.marks[index + 1:], self.withdrawn[index + 1:]
        del self.kinds[index:]

    def apply(self, index: int) -> bool:
        view = self.client.canonical(index)
        header = codec.decode_header(unhex(view["header"]))
        body = codec.decode_batch_data(self.client.batch_data(header.data_hash), max_txs=self.genesis.preset.max_batch_txs)
        env = Env(self.genesis.preset, Seconds(header.time), self.bridge)
        orders = BatchOrders(body.orders, self.genesis.preset)
        state, withdrawn = self.state, self.withdrawn[-1]
        for i, tx in enumerate(body.txs):
            count = state.globals().withdrawal_count
            try:
                process_tx(state, tx, orders, env)
            except InvalidTransaction as exc:
                state.rollback_to(self.marks[-1])
                self.mismatch = f"batch {view['batch_id']} (index {index}): transaction {i} is rejected: {exc!r}"
                return False
            if state.globals().withdrawal_count != count:
                if isinstance(tx, Withdraw):
                    withdrawn += tx.amount
                elif isinstance(tx, ForcedWithdraw):
                    entry = self.bridge.forced(tx.queue_index)
                    withdrawn += entry.amount if entry is not None else 0
        if state.root() != header.post_root:
            state.rollback_to(self.marks[-1])
            self.mismatch = f"batch {view['batch_id']} (index {index}): the spec gives another root than claimed"
            return False
        self.ids.append(int(view["batch_id"]))
        self.roots.append(header.post_root)
        self.marks.append(len(state.undo))
        self.withdrawn.append(withdrawn)
        kinds: dict[str, int] = {}
        for tx in body.txs:
            kinds[type(tx).__name__] = kinds.get(type(tx).__name__, 0) + 1
        self.kinds.append(kinds)
        return True

    # --- reads ------------------------------------------------------------------------------------

    def account(self, address: bytes) -> dict[str, Any]:
        a = self.state.account(address)
        positions = {m: (p.lots, p.funding_index, p.loss_index) for m, p in self.state.positions_of(address).items()}
        return {"collateral": a.collateral, "withdrawNonce": a.withdraw_nonce, "positions": positions}

    def deposited(self) -> int:
        g = self.state.globals()
        total = 0
        for i in range(g.deposits_consumed):
            entry = self.bridge.deposit(i)
            total += entry.amount if entry is not None else 0
        return total

    def money(self) -> dict[str, int]:
        """Collateral of every account against deposits in and withdrawals out: equal, exactly."""
        collateral = sum(r.collateral for (kind, _), r in self.state.records.items() if kind == ACCOUNT)
        return {"collateral": collateral, "deposited": self.deposited(), "withdrawn": self.withdrawn[-1]}

    def conserved(self) -> bool:
        m = self.money()
        return m["collateral"] == m["deposited"] - m["withdrawn"]

    def tx_counts(self) -> dict[str, int]:
        """Transactions of each kind on the valid chain."""
        out: dict[str, int] = {}
        for kinds in self.kinds:
            for k, n in kinds.items():
                out[k] = out.get(k, 0) + n
        return out

    def open_lots(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for (kind, ident), r in self.state.records.items():
            if kind == POSITION and r.lots > 0:
                m = int.from_bytes(ident[20:], "big")
                out[m] = out.get(m, 0) + r.lots
        return out
