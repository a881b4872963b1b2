"""A batch's trace by re-execution: the state root before each transaction and after the last,
and the one-step proof of any transaction, computed only when a dispute asks for them.

One working state walks the batch: forward with the STF, back with the state's undo log to the
mark it recorded before each transaction, so the pre-state is never lost and no state is ever
copied. Walking back keeps each transaction's effect (the records it wrote), so walking forward
again over it replays those writes instead of running the STF. Roots are cached by index.
bench/dispute.py measures it on a 10,000-trade batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from contracts_spec import codec
from contracts_spec.crypto import keccak
from contracts_spec.dispute import OrderProof, StepProof
from contracts_spec.errors import InvalidTransaction
from contracts_spec.merkle import list_proof
from contracts_spec.state import ACCOUNT, GLOBALS, ORDER, POSITION, State
from contracts_spec.stf import BatchOrders, Env, process_tx
from contracts_spec.types import (
    Account,
    Address,
    BatchData,
    BatchHeader,
    Globals,
    Hash32,
    OrderStatus,
    Position,
    Root,
    SignedOrder,
)
from contracts_spec.witness import make_witness

# The "root" after a transaction the rules reject: there is no such state, so it matches no root
# anyone can reveal, and a trace holding it disagrees with any claim from that index on.
REJECTED: Final[Root] = keccak(b"rampart.trace.rejected")

# Fault injection (tests, the fault harness): called after transaction i has been applied and
# may write to the state (through its setters, so the undo log still walks back over it).
Fault = Callable[[int, State], None]


# A transaction's effect: each slot it wrote with the record it left there (None: the kind's
# default, which root() drops from the records).
Effect = tuple[tuple[tuple[int, bytes], Any], ...]

_DEFAULTS: Final[dict[int, Any]] = {ACCOUNT: Account(), POSITION: Position(), ORDER: OrderStatus(), GLOBALS: Globals()}


def replay_effect(state: State, effect: Effect) -> None:
    """Write a transaction's recorded effect through the state's setters (so the undo log holds it)."""
    state.write_records(effect)


class TraceMismatch(Exception):
    """The pre-state handed to a trace is not the batch's: its roots back nothing."""


class _RecordedOrders(dict[int, SignedOrder]):
    """The batch's orders, remembering which indices a transaction looked up."""

    def __init__(self, orders: tuple[SignedOrder, ...]) -> None:
        super().__init__(enumerate(orders))
        self.named: set[int] = set()

    def get(self, index: int, default: object = None) -> SignedOrder | None:  # type: ignore[override]
        self.named.add(index)
        return super().get(index)


class Trace:
    """Roots of one batch by index (0 = the batch's pre-state, n = its post-state).

    Takes ownership of `pre`: it is moved along the batch and back; `rewind(0)` (or dropping
    the trace) is all that is left of it. Pass `state.copy()` to keep yours. `fault`, if given,
    makes this a deliberately wrong view of the batch (a lying sequencer's or challenger's).
    """

    __slots__ = ("header", "body", "env", "fault", "state", "orders", "pos", "marks", "effects", "roots",
                 "rejected_at", "executed", "replayed", "_tx_hashes", "_order_hashes")

    def __init__(self, pre: State, header: BatchHeader, body: BatchData, env: Env, fault: Fault | None = None,
                 signers: Mapping[int, Address] | None = None, ids: Mapping[int, Hash32] | None = None) -> None:
        # Verify the batch's data is the header's
        if len(body.txs) != header.tx_count:
            raise TraceMismatch(f"the header says {header.tx_count} transactions, the data holds {len(body.txs)}")
        self.header, self.body, self.env, self.fault = header, body, env, fault
        self.state = pre
        # One BatchOrders for the trace's life: each order's signature is recovered once, however
        # often the walk goes back and forth over its trades. Recovery is most of a cold walk's
        # time (bench/dispute.py): a node that verified the orders already hands `signers`/`ids`
        # over (by order index), as intake does to the STF.
        self.orders = BatchOrders(body.orders, env.preset, signers, ids)
        self.pos = 0  # the working state is the state before transaction `pos`
        self.marks = [len(pre.undo)]  # marks[i]: the undo-log length at the state before tx i
        self.effects: dict[int, Effect] = {}  # kept when the walk goes back over a transaction
        self.roots: dict[int, Root] = {}
        self.rejected_at: int | None = None  # the first transaction the rules reject, once seen
        self.executed = 0  # transactions run by the STF so far, for tests and benchmarks
        self.replayed = 0  # transactions replayed from their effect
        self._tx_hashes: list[Hash32] | None = None
        self._order_hashes: list[Hash32] | None = None
        # Verify the pre-state is the batch's
        if self.root_at(0) != header.prev_root:
            raise TraceMismatch("the pre-state's root is not the batch's previous root")

    @property
    def tx_count(self) -> int:
        return len(self.body.txs)

    # --- roots --------------------------------------------------------------------------------

    def root_at(self, index: int) -> Root:
        """The root after `index` transactions (the padded trace: beyond n, the post root)."""
        index = min(index, self.tx_count)
        if self.rejected_at is not None and index > self.rejected_at:
            return REJECTED
        root = self.roots.get(index)
        if root is not None:
            return root
        self.seek(index)
        root = REJECTED if self.pos < index else self.state.root()
        self.roots[index] = root
        return root

    def seek(self, index: int) -> State:
        """Bring the working state to the state before transaction `index` and return it (read
        it, do not write it). Stops early at a transaction the rules reject: see `rejected_at`."""
        if index < 0 or index > self.tx_count:
            raise IndexError(f"no state before transaction {index} of {self.tx_count}")
        if index <= self.pos:
            self.rewind(index)
            return self.state
        state, txs, orders, env, fault, marks = self.state, self.body.txs, self.orders, self.env, self.fault, self.marks
        effects, undo = self.effects, state.undo
        pos = self.pos
        try:
            while pos < index:
                effect = effects.get(pos)
                if effect is not None:
                    replay_effect(state, effect)
                    self.replayed += 1
                else:
                    try:
                        process_tx(state, txs[pos], orders, env)
                    except InvalidTransaction:
                        self.rejected_at = pos
                        break
                    self.executed += 1
                    if fault is not None:
                        fault(pos, state)
                pos += 1
                marks.append(len(undo))
        finally:
            self.pos = pos
        return state

    def rewind(self, index: int) -> None:
        """Walk the working state back to the state before transaction `index` (<= pos), keeping
        the effect of each transaction it walks back over."""
        if not 0 <= index <= self.pos:
            raise IndexError(f"cannot rewind from {self.pos} to {index}")
        state, marks, effects = self.state, self.marks, self.effects
        undo, records = state.undo, state.records
        for j in range(self.pos - 1, index - 1, -1):
            if j not in effects:
                # The state is tx j's post-state here; its undo entries name what it wrote
                slots = dict.fromkeys(undo[marks[j]:marks[j + 1]:2])
                effects[j] = tuple((slot, records.get(slot)) for slot in slots)
            state.rollback_to(marks[j])
        del marks[index + 1:]
        self.pos = index

    # --- the one-step proof -------------------------------------------------------------------

    def step_proof(self, index: int) -> StepProof | None:
        """Transaction `index` proven against the header, its signed orders against the orders
        root, and what it reads against this trace's root at `index`; None past the last
        transaction (a padding step needs no proof)."""
        if index >= self.tx_count:
            return None
        state = self.seek(index)
        if self.pos != index:
            raise TraceMismatch(f"transaction {self.rejected_at} is rejected: no state before {index}")
        tx = self.body.txs[index]
        named = _RecordedOrders(self.body.orders)
        result = make_witness(state, tx, BatchOrders(named, self.env.preset), self.env)
        proven = sorted(i for i in named.named if 0 <= i < len(self.body.orders))
        return StepProof(
            tx=codec.encode_tx(tx),
            tx_proof=tuple(list_proof(self.tx_hashes(), index)),
            order_count=len(self.body.orders),
            orders=tuple(OrderProof(i, codec.encode_signed_order(self.body.orders[i]),
                                    tuple(list_proof(self.order_hashes(), i))) for i in proven),
            witness=result.witness,
        )

    def tx_hashes(self) -> list[Hash32]:
        if self._tx_hashes is None:
            self._tx_hashes = [codec.tx_hash(tx) for tx in self.body.txs]
        return self._tx_hashes

    def order_hashes(self) -> list[Hash32]:
        if self._order_hashes is None:
            self._order_hashes = [codec.signed_order_hash(o) for o in self.body.orders]
        return self._order_hashes
