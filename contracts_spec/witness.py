"""Witness execution: one transaction run on only the leaves it touches, for one-step proofs.

`make_witness` records what a transaction reads on the full state and proves those leaves
against the pre-root; `execute_one_step` runs the very same `process_tx` on a partial state
built from that proof and returns the post-root. A read the witness does not cover raises
WitnessIncomplete (a bad proof BadProof): evidence problems, never a rejection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts_spec.errors import InvalidTransaction
from contracts_spec.merkle import withdrawal_root
from contracts_spec.state import GLOBALS, State, state_key
from contracts_spec.stf import BatchOrders, BridgeView, Env, process_tx
from contracts_spec.types import Address, Globals, Preset, Root, Seconds, SignedOrder, Tx


@dataclass(frozen=True, slots=True)
class StepResult:
    witness: bytes  # the multiproof of every leaf the transaction reads, against the pre-root
    error: InvalidTransaction | None  # the rejection, if the transaction is invalid
    keys: tuple[bytes, ...]  # the state keys the witness proves, sorted


def make_witness(state: State, tx: Tx, orders: BatchOrders, env: Env) -> StepResult:
    """Prove what `tx` reads in `state` (the pre-state); `state` is left unchanged."""
    state.root()
    state.reads = set()
    mark = len(state.undo)
    error: InvalidTransaction | None = None
    try:
        process_tx(state, tx, orders, env)
    except InvalidTransaction as exc:
        error = exc
    finally:
        reads, state.reads = state.reads, None
    state.rollback_to(mark)
    keys = tuple(sorted(state_key(kind, ident) for kind, ident in reads))
    return StepResult(state.tree.multiproof(keys), error, keys)


def execute_one_step(
    preset: Preset,
    pre_root: Root,
    witness: bytes,
    tx: Tx,
    orders: Mapping[int, SignedOrder],
    bridge: BridgeView,
    now: Seconds,
) -> Root:
    """Run `tx` on the witness alone and return the post-root.

    Raises InvalidTransaction when the transaction is rejected on a complete witness, and
    WitnessError (WitnessIncomplete, BadProof) when the evidence does not suffice.
    """
    state = State.from_witness(pre_root, witness)
    process_tx(state, tx, BatchOrders(orders, preset), Env(preset, now, bridge))
    return state.root()


# --- leaves the base layer reads at posting and for withdrawals -----------------------------


def prove_globals(state: State) -> bytes:
    """A proof of the globals leaf (queue positions, withdrawal tree) against `state.root()`."""
    state.root()
    return state.tree.multiproof([state_key(GLOBALS, b"")])


def read_globals(root: Root, proof: bytes) -> Globals:
    """The globals leaf proven against `root` (BadProof / WitnessIncomplete otherwise)."""
    return State.from_witness(root, proof).globals()


def globals_withdrawal_root(g: Globals) -> Root:
    return withdrawal_root(g.withdrawal_branch, g.withdrawal_count)


def prove_account(state: State, account: Address) -> bytes:
    """A proof of an account and all its positions and markets (escape hatch, audits)."""
    state.root()
    state.reads = set()
    try:
        acct = state.account(account)
        for m in acct.markets:
            state.position(account, m)
            state.market(m)
    finally:
        reads, state.reads = state.reads, None
    return state.tree.multiproof(sorted(state_key(k, i) for k, i in reads))
