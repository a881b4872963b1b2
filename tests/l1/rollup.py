"""Building real batches with the spec for base-layer tests: a sequencer that can lie, the
per-transaction trace a dispute needs, step proofs, and a loop playing a game to its end with
`contracts_spec.dispute.next_move` on both sides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from contracts_spec import codec, dispute, witness
from contracts_spec.crypto import keccak
from contracts_spec.dispute import Seat, Status
from contracts_spec.errors import InvalidTransaction
from contracts_spec.merkle import list_proof, list_root
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, Env, process_tx
from contracts_spec.types import BatchData, BatchHeader, Genesis, Seconds, Trade
from l1_mock.client import GameInfo, L1Client
from sequencer.scenario import BatchBuilder, Keys

from .conftest import NATIVE

Tamper = Callable[[State], None]


def credit_mallory(keys: Keys) -> Tamper:
    """A lie: the sequencer quietly credits an account."""

    def tamper(state: State) -> None:
        addr = keys.addr("mallory")
        acct = state.account(addr)
        state.set_account(addr, replace(acct, collateral=acct.collateral + 10**6))

    return tamper


@dataclass
class Built:
    header: BatchHeader
    data: bytes
    globals_proof: bytes
    body: BatchData
    roots: list[bytes]  # the author's trace: root before tx 0 .. after tx n-1
    pre_states: list[State]
    env: Env
    post: State
    true_roots: list[bytes] = field(default_factory=list)

    def step_proof(self, index: int, drop_leaf: bool = False) -> dispute.StepProof | None:
        """The one-step proof of transaction `index` from the author's pre-state (None past the end)."""
        if index >= len(self.body.txs):
            return None
        tx, pre = self.body.txs[index], self.pre_states[index]
        orders = BatchOrders(self.body.orders, self.env.preset)
        result = witness.make_witness(pre.copy(), tx, orders, self.env)
        proof = pre.copy().tree.multiproof(list(result.keys[:-1])) if drop_leaf else result.witness
        order_hashes = [codec.signed_order_hash(o) for o in self.body.orders]
        named = (tx.maker, tx.taker) if isinstance(tx, Trade) else ()
        return dispute.StepProof(
            tx=codec.encode_tx(tx),
            tx_proof=tuple(list_proof([codec.tx_hash(t) for t in self.body.txs], index)),
            order_count=len(self.body.orders),
            orders=tuple(dispute.OrderProof(i, codec.encode_signed_order(self.body.orders[i]),
                                            tuple(list_proof(order_hashes, i))) for i in named),
            witness=proof,
        )

    def trace(self) -> Callable[[int], bytes]:
        return self.roots.__getitem__

    def truth(self) -> Callable[[int], bytes]:
        return (self.true_roots or self.roots).__getitem__


class Sequencer:
    """Builds batches on its own copy of the state, mirroring the chain's bridge queues."""

    def __init__(self, genesis: Genesis, keys: Keys, client: L1Client) -> None:
        self.genesis, self.keys, self.client = genesis, keys, client
        self.state = State.from_genesis(genesis)
        self.b = BatchBuilder(genesis, keys)
        self.index = 0
        self.time = genesis.genesis_time

    def stake(self) -> None:
        self.client.faucet(native=1_000 * NATIVE)
        self.client.register_sequencer(self.genesis.preset.sequencer_stake_min)

    def deposit(self, user: L1Client, name: str, amount: int) -> None:
        """A deposit on the chain, and its Deposit transaction in the next batch."""
        user.faucet(usdc=amount)
        user.deposit(amount)
        self.b.deposit(name, amount)

    def build(self, now: int | None = None, lie_at: int | None = None, tamper: Tamper | None = None,
              skip_invalid: bool = False, **override: Any) -> Built:
        preset = self.genesis.preset
        now = self.client.now() if now is None else now
        body = self.b.data()
        orders = BatchOrders(body.orders, preset)
        env = Env(preset, Seconds(now), self.b.bridge)
        state, truth = self.state.copy(), self.state.copy()
        roots, true_roots, pres = [state.root()], [truth.root()], []
        for i, tx in enumerate(body.txs):
            pres.append(state.copy())
            try:
                process_tx(state, tx, orders, env)
            except InvalidTransaction:
                if not skip_invalid:
                    raise
            if lie_at == i and tamper is not None:
                tamper(state)
            roots.append(state.root())
            if lie_at is not None or skip_invalid:
                try:
                    process_tx(truth, tx, orders, env)
                except InvalidTransaction:
                    pass
                true_roots.append(truth.root())
        data = codec.encode_batch_data(body)
        g = state.globals()
        header = BatchHeader(
            index=self.index, prev_root=roots[0], post_root=roots[-1], tx_count=len(body.txs),
            tx_root=list_root([codec.tx_hash(t) for t in body.txs]), data_hash=keccak(data),
            deposits_consumed=g.deposits_consumed, forced_consumed=g.forced_consumed,
            withdrawal_root=witness.globals_withdrawal_root(g),
            orders_root=list_root([codec.signed_order_hash(o) for o in body.orders]), time=Seconds(now),
        )
        header = replace(header, **override)
        return Built(header, data, witness.prove_globals(state), body, roots, pres, env, state,
                     true_roots if (lie_at is not None or skip_invalid) else [])

    def post(self, built: Built) -> int:
        receipt = self.client.post_batch(built.header, built.data, built.globals_proof)
        self.accept(built)
        return int(receipt["result"]["batch_id"])

    def accept(self, built: Built) -> None:
        self.state = built.post
        self.index += 1
        self.b.reset()

    def rollback(self, to: State, index: int) -> None:
        self.state = to
        self.index = index
        self.b.reset()


def play(game_id: int, seq: L1Client, chal: L1Client, built: Built, seq_trace: Callable[[int], bytes],
         chal_trace: Callable[[int], bytes], chal_answers: Callable[[dispute.Game], bool] | None = None,
         ) -> tuple[GameInfo, dict[str, int]]:
    """Both sides play with dispute.next_move until the game ends; returns it and the move counts."""
    counts = {"reveal": 0, "answer": 0, "step": 0}
    while True:
        info = seq.game(game_id)
        g = info.game
        if g.status != Status.OPEN:
            return info, counts
        phase = dispute.get_phase(g)
        if phase == dispute.Phase.STEP:
            c_move = dispute.next_move(g, Seat.CHALLENGER, chal_trace)
            player = chal if c_move is not None else seq
            player.step(game_id, built.step_proof(g.lo))
            counts["step"] += 1
        elif phase == dispute.Phase.REVEAL:
            move = dispute.next_move(g, Seat.SEQUENCER, seq_trace)
            assert move is not None
            seq.move(game_id, move)
            counts["reveal"] += 1
        else:
            if chal_answers is not None:
                chal.answer(game_id, chal_answers(g))
            else:
                move = dispute.next_move(g, Seat.CHALLENGER, chal_trace)
                assert move is not None
                chal.move(game_id, move)
            counts["answer"] += 1
