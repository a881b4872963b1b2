"""The rollup state: typed records over one Merkle commitment, full or partial (a witness).

Records live in dicts for speed; the Merkle tree is brought up to date lazily by `root()`.
A partial state (built from a one-step-proof witness) reads only what its proof covers and
raises WitnessIncomplete for anything else, so the same STF code serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from contracts_spec import codec
from contracts_spec.crypto import keccak
from contracts_spec.errors import BadProof, DecodeError, UnknownMarket
from contracts_spec.merkle import SparseMerkleTree
from contracts_spec.types import (
    Account,
    Address,
    Config,
    Genesis,
    Globals,
    Hash32,
    Market,
    OrderStatus,
    Position,
    Seconds,
)

# Leaf kinds: the first byte hashed into every state key.
ACCOUNT: Final = 1
POSITION: Final = 2
ORDER: Final = 3
MARKET: Final = 4
GLOBALS: Final = 5
CONFIG: Final = 6

_DEFAULT_ACCOUNT: Final = Account()
_DEFAULT_POSITION: Final = Position()
_DEFAULT_ORDER: Final = OrderStatus()
_DEFAULT_GLOBALS: Final = Globals()
_RECORD_DEFAULTS: Final[dict[int, Any]] = {
    ACCOUNT: _DEFAULT_ACCOUNT, POSITION: _DEFAULT_POSITION, ORDER: _DEFAULT_ORDER, GLOBALS: _DEFAULT_GLOBALS,
}

_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = {
    ACCOUNT: codec.decode_account,
    POSITION: codec.decode_position,
    ORDER: codec.decode_order_status,
    MARKET: codec.decode_market,
    GLOBALS: codec.decode_globals,
    CONFIG: codec.decode_config,
}


def state_key(kind: int, ident: bytes) -> Hash32:
    """The Merkle key of a record: keccak(kind || identity). Uniform, so the tree stays balanced."""
    return keccak(bytes((kind,)) + ident)


def position_ident(account: Address, market: int) -> bytes:
    return account + market.to_bytes(4, "big")


def order_ident(account: Address, order_id: Hash32) -> bytes:
    # Keyed by owner too: a cancel signed by one account can never touch another's order.
    return account + order_id


def market_ident(market: int) -> bytes:
    return market.to_bytes(4, "big")


# market_ident of the first markets, precomputed: every position and market access builds one
# (bench/spec.py); any other id falls back to market_ident, which raises on a negative one.
_MARKET_IDENTS: Final[dict[int, bytes]] = {m: market_ident(m) for m in range(1024)}


_MISSING: Final = object()


class State:
    """Every record of the rollup, with an undo log so a rejected transaction changes nothing."""

    __slots__ = ("tree", "complete", "records", "dirty", "undo", "reads")

    def __init__(self, tree: SparseMerkleTree | None = None, complete: bool = True) -> None:
        self.tree = tree if tree is not None else SparseMerkleTree()
        self.complete = complete  # False: a witness; unknown keys are not "absent"
        # (kind, ident) -> record; one dict so the undo log and the root flush are uniform
        self.records: dict[tuple[int, bytes], Any] = {}
        self.dirty: set[tuple[int, bytes]] = set()
        # slot, old record, slot, old record, ...: flat, no tuple per write (bench/spec.py);
        # a mark is len(undo)
        self.undo: list[Any] = []
        self.reads: set[tuple[int, bytes]] | None = None  # set while a witness is recorded

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> State:
        state = cls()
        for params in genesis.markets:
            state.set_market(params.market_id, Market(params=params, last_funding_time=genesis.genesis_time))
        state.set_config(Config(genesis.oracle_signers, genesis.oracle_quorum, genesis.sequencer))
        state.set_globals(_DEFAULT_GLOBALS)
        state.root()
        state.undo.clear()
        return state

    @classmethod
    def from_witness(cls, pre_root: bytes, proof: bytes) -> State:
        """A partial state from a multiproof against `pre_root` (BadProof if it does not match)."""
        return cls(SparseMerkleTree.from_multiproof(pre_root, proof), complete=False)

    # --- reading ----------------------------------------------------------------------------
    # Hot path (guarded by bench/spec.py, STF trades/s): each accessor builds its slot, records
    # the read and hits the records dict inline; only a miss takes the shared `_load`.

    def _load(self, slot: tuple[int, bytes], default: Any) -> Any:
        """A record not in `records`: the default on a full state, else read through the proof."""
        if self.complete:
            return default
        kind, ident = slot
        raw = self.tree.get(state_key(kind, ident))  # WitnessIncomplete when not covered
        if raw is None:
            record = default
        else:
            try:
                record = _DECODERS[kind](raw)
            except DecodeError as exc:
                raise BadProof(f"witness leaf of kind {kind} does not decode") from exc
        self.records[slot] = record
        return record

    def _get(self, kind: int, ident: bytes, default: Any) -> Any:
        slot = (kind, ident)
        reads = self.reads
        if reads is not None:
            reads.add(slot)
        record = self.records.get(slot, _MISSING)
        if record is _MISSING:
            return self._load(slot, default)
        return record

    def account(self, address: Address) -> Account:
        slot = (ACCOUNT, address)
        if self.reads is not None:
            self.reads.add(slot)
        record: Account = self.records.get(slot, _MISSING)
        if record is _MISSING:
            return self._load(slot, _DEFAULT_ACCOUNT)
        return record

    def position(self, address: Address, market: int) -> Position:
        slot = (POSITION, address + (_MARKET_IDENTS.get(market) or market_ident(market)))
        if self.reads is not None:
            self.reads.add(slot)
        record: Position = self.records.get(slot, _MISSING)
        if record is _MISSING:
            return self._load(slot, _DEFAULT_POSITION)
        return record

    def order_status(self, address: Address, order_id: Hash32) -> OrderStatus:
        slot = (ORDER, address + order_id)  # order_ident
        if self.reads is not None:
            self.reads.add(slot)
        record: OrderStatus = self.records.get(slot, _MISSING)
        if record is _MISSING:
            return self._load(slot, _DEFAULT_ORDER)
        return record

    def market(self, market_id: int) -> Market:
        slot = (MARKET, (_MARKET_IDENTS.get(market_id) or market_ident(market_id)))
        if self.reads is not None:
            self.reads.add(slot)
        record: Market | None = self.records.get(slot, _MISSING)
        if record is _MISSING:
            record = self._load(slot, None)
        if record is None:
            raise UnknownMarket(f"market {market_id} does not exist")
        return record

    def globals(self) -> Globals:
        record: Globals = self._get(GLOBALS, b"", _DEFAULT_GLOBALS)
        return record

    def config(self) -> Config:
        record: Config | None = self._get(CONFIG, b"", None)
        if record is None:
            raise BadProof("state has no config leaf")
        return record

    # --- writing ----------------------------------------------------------------------------

    def _put(self, slot: tuple[int, bytes], record: Any) -> None:
        records = self.records
        if self.reads is not None:
            self.reads.add(slot)
        undo = self.undo
        undo.append(slot)
        undo.append(records.get(slot, _MISSING))
        records[slot] = record
        self.dirty.add(slot)

    def set_account(self, address: Address, record: Account) -> None:
        self._put((ACCOUNT, address), record)

    def set_position(self, address: Address, market: int, record: Position) -> None:
        self._put((POSITION, address + (_MARKET_IDENTS.get(market) or market_ident(market))), record)

    def set_order_status(self, address: Address, order_id: Hash32, record: OrderStatus) -> None:
        self._put((ORDER, address + order_id), record)  # order_ident

    def set_market(self, market_id: int, record: Market) -> None:
        self._put((MARKET, (_MARKET_IDENTS.get(market_id) or market_ident(market_id))), record)

    def set_globals(self, record: Globals) -> None:
        self._put((GLOBALS, b""), record)

    def set_config(self, record: Config) -> None:
        self._put((CONFIG, b""), record)

    def write_records(self, writes: Iterable[tuple[tuple[int, bytes], Any]]) -> None:
        """Write recorded (slot, record) pairs back, None meaning the kind's default, through
        the undo log: how a dispute trace replays a transaction's effect without re-running it."""
        for slot, record in writes:
            self._put(slot, _RECORD_DEFAULTS[slot[0]] if record is None else record)

    # --- atomicity --------------------------------------------------------------------------

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Run a block; if it raises, every record it wrote is restored."""
        mark = len(self.undo)
        try:
            yield
        except BaseException:
            self.rollback_to(mark)
            raise

    def rollback_to(self, mark: int) -> None:
        undo, records, dirty = self.undo, self.records, self.dirty
        while len(undo) > mark:
            old = undo.pop()
            slot = undo.pop()
            if old is _MISSING:
                records.pop(slot, None)
            else:
                records[slot] = old
            # root() may have run since the write: re-encode the restored value either way
            dirty.add(slot)

    def checkpoint(self) -> None:
        """Forget the undo log: what has been applied is kept for good."""
        self.undo.clear()

    # --- commitment -------------------------------------------------------------------------

    def root(self) -> bytes:
        """Bring the tree up to date with every written record and return its root.

        A record equal to its kind's default is deleted from the tree, so every
        implementation commits to the same set of leaves.
        """
        tree, records = self.tree, self.records
        encode = codec.encode_record
        for slot in self.dirty:
            kind, ident = slot
            record = records.get(slot, _MISSING)
            key = state_key(kind, ident)
            if record is _MISSING or _is_default(kind, record):
                if record is not _MISSING and self.complete:
                    del records[slot]
                tree.set(key, b"")
            else:
                tree.set(key, encode(record))
        self.dirty.clear()
        return tree.root()

    def copy(self) -> State:
        """An independent full copy (records and tree), e.g. a checkpoint of a batch's pre-state."""
        if self.dirty:
            self.root()
        clone = State(SparseMerkleTree(), self.complete)
        for slot, record in self.records.items():
            clone.records[slot] = record
            clone.dirty.add(slot)
        clone.root()
        return clone

    # --- views for people and tests ---------------------------------------------------------

    def accounts(self) -> dict[Address, Account]:
        return {ident: r for (kind, ident), r in self.records.items() if kind == ACCOUNT}

    def positions_of(self, address: Address) -> dict[int, Position]:
        return {m: self.position(address, m) for m in self.account(address).markets}

    def markets(self) -> dict[int, Market]:
        return {int.from_bytes(ident, "big"): r for (kind, ident), r in self.records.items() if kind == MARKET}

    def oracle_time(self, market_id: int) -> Seconds:
        return self.market(market_id).oracle_time


def _is_default(kind: int, record: Any) -> bool:
    if kind == ACCOUNT:
        return bool(record == _DEFAULT_ACCOUNT)
    if kind == POSITION:
        return bool(record.lots == 0)
    if kind == ORDER:
        return bool(record == _DEFAULT_ORDER)
    return False
