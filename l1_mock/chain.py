"""The chain: time, blocks, accounts with nonces, signed transactions dispatched to contract
methods, and the event log. One lock serialises transactions; each commits atomically before
it is acknowledged, in its block.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from contracts_spec.crypto import recover_address
from contracts_spec.errors import SpecError
from contracts_spec.params import genesis_from_json, genesis_to_json
from contracts_spec.types import Genesis
from l1_mock import errors
from l1_mock.db import create_schema, make_sessionmaker
from l1_mock.envelope import hex0x, tx_digest, unhex
from l1_mock.models import AccountRow, BlockRow, ChainRow, EventRow, TxRow
from l1_mock.settings import Settings

MAX_EVENTS_PAGE = 1000


# --- transaction context and method registry ------------------------------------------------


@dataclass
class Ctx:
    """What a contract method sees: the open session, the chain row, the block and the sender."""

    s: Session
    chain: ChainRow
    genesis: Genesis
    sender: str
    block: int
    time: int
    tx_hash: str | None
    events: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, name: str, **data: Any) -> None:
        row = EventRow(block_number=self.block, tx_hash=self.tx_hash, name=name, data_json=json.dumps(data))
        self.s.add(row)
        self.events.append({"name": name, "data": data})

    def account(self, address: str) -> AccountRow:
        return get_account(self.s, address)


@dataclass(frozen=True)
class Method:
    name: str
    args: type[BaseModel]
    handler: Callable[[Ctx, Any], dict[str, Any]]
    dev_only: bool = False


METHODS: dict[str, Method] = {}


def method(name: str, args: type[BaseModel], dev_only: bool = False) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register a contract method callable by a signed transaction."""

    def register(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        METHODS[name] = Method(name, args, fn, dev_only)
        return fn

    return register


def get_account(s: Session, address: str) -> AccountRow:
    row = s.get(AccountRow, address)
    if row is None:
        row = AccountRow(address=address, nonce=0, native=0, usdc=0, credit=0)
        s.add(row)
    return row


def debit(row: AccountRow, token: str, amount: int) -> None:
    # Verify the balance covers the amount
    have = getattr(row, token)
    if have < amount:
        raise errors.InsufficientBalance(f"{row.address} has {have} {token}, needs {amount}")
    setattr(row, token, have - amount)


def credit(row: AccountRow, token: str, amount: int) -> None:
    setattr(row, token, getattr(row, token) + amount)


def parse_address(value: str) -> str:
    try:
        raw = unhex(value)
    except ValueError as exc:
        raise errors.Malformed(f"bad address {value!r}") from exc
    if len(raw) != 20:
        raise errors.Malformed(f"bad address {value!r}: need 20 bytes")
    return hex0x(raw)


# --- the chain ------------------------------------------------------------------------------


class Chain:
    def __init__(self, engine: Engine, settings: Settings, genesis: Genesis | None = None) -> None:
        import l1_mock.contracts  # noqa: F401  (registers the contract methods)

        self.engine = engine
        self.settings = settings
        self.sessions = make_sessionmaker(engine)
        self.lock = threading.Lock()
        # Verify unsafe settings are refused outside dev (before anything is written)
        if settings.manual_time and genesis is not None and not genesis.preset.admin_time_travel:
            raise errors.Forbidden(f"manual time is refused in the {genesis.preset.name} preset")
        create_schema(engine)
        self.genesis = self._load_or_init(genesis)
        self.preset = self.genesis.preset
        self.chain_id = self.preset.chain_id
        if settings.manual_time and not self.preset.admin_time_travel:
            raise errors.Forbidden(f"manual time is refused in the {self.preset.name} preset")

    def _load_or_init(self, genesis: Genesis | None) -> Genesis:
        with self.sessions.begin() as s:
            row = s.get(ChainRow, 1)
            if row is not None:
                stored = genesis_from_json(row.genesis_json)
                # Verify a restart does not silently switch genesis
                if genesis is not None and genesis_to_json(genesis) != genesis_to_json(stored):
                    raise errors.Refused("the database holds another genesis", "genesis_mismatch")
                return stored
            if genesis is None:
                raise errors.Malformed("a fresh chain needs a genesis file (--genesis)")
            start = genesis.genesis_time if genesis.genesis_time > 0 else int(time.time())
            s.add(ChainRow(id=1, genesis_json=genesis_to_json(genesis), base_time=start, time_offset=0,
                           head_block=0, head_time=start, head_index=-1, sequencer_stake=0, burnt=0,
                           bridge_usdc=0, sequencer_registered=False))
            s.add(BlockRow(number=0, timestamp=start, tx_count=0))
            return genesis

    # --- time and blocks ---

    def _clock(self, chain: ChainRow) -> int:
        base = chain.base_time if self.settings.manual_time else int(time.time())
        return max(base + chain.time_offset, chain.head_time)

    def _open_block(self, s: Session, chain: ChainRow) -> tuple[int, int]:
        """The block a transaction lands in: a new one per transaction (instant), or the block
        of the current slot (block-time mode; empty slots are never materialised)."""
        now = self._clock(chain)
        bt = self.settings.block_time
        if bt:
            now = max(now - (now - chain.base_time) % bt, chain.head_time)
            if now == chain.head_time and chain.head_block > 0:
                block = s.get(BlockRow, chain.head_block)
                assert block is not None
                block.tx_count += 1
                return chain.head_block, now
        chain.head_block += 1
        chain.head_time = now
        s.add(BlockRow(number=chain.head_block, timestamp=now, tx_count=1))
        return chain.head_block, now

    def now(self) -> int:
        with self.sessions() as s:
            chain = s.get(ChainRow, 1)
            assert chain is not None
            return self._clock(chain)

    def increase_time(self, seconds: int) -> dict[str, Any]:
        # Verify time travel is allowed by the preset
        if not self.preset.admin_time_travel:
            raise errors.Forbidden(f"time travel is refused in the {self.preset.name} preset", "time_travel_disabled")
        if seconds < 0:
            raise errors.Malformed("seconds must be >= 0")
        return self.mine(seconds)

    def mine(self, advance: int = 0) -> dict[str, Any]:
        """Mine an empty block (after advancing time by `advance`, dev only)."""
        with self.lock, self.sessions.begin() as s:
            chain = s.get(ChainRow, 1, with_for_update=True)
            assert chain is not None
            chain.time_offset += advance
            now = self._clock(chain)
            chain.head_block += 1
            chain.head_time = now
            s.add(BlockRow(number=chain.head_block, timestamp=now, tx_count=0))
            return {"block": chain.head_block, "time": now}

    # --- transactions ---

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Verify and execute one signed transaction; returns its receipt once committed."""
        sender, nonce, name, args, signature = self._parse_envelope(body)
        digest = tx_digest(self.chain_id, sender, nonce, name, args)
        m = METHODS.get(name)
        # Verify the method exists (and is open in this preset)
        if m is None:
            raise errors.UnknownMethod(f"unknown method {name!r}; known: {sorted(METHODS)}")
        if m.dev_only and not self.preset.admin_time_travel:
            raise errors.Forbidden(f"{name} is a dev-only method", "dev_only")
        # Verify the signature is the sender's
        try:
            signer = hex0x(recover_address(digest, signature))
        except SpecError as exc:
            raise errors.BadSignature(str(exc)) from exc
        if signer != sender:
            raise errors.BadSignature(f"signed by {signer}, not by the sender {sender}")
        try:
            parsed = m.args.model_validate(args)
        except ValidationError as exc:
            raise errors.Malformed(f"bad arguments for {name}: {exc.errors(include_url=False)}") from exc
        with self.lock, self.sessions.begin() as s:
            chain = s.get(ChainRow, 1, with_for_update=True)
            assert chain is not None
            account = get_account(s, sender)
            # Verify the nonce is the sender's next one
            if nonce != account.nonce:
                raise errors.BadNonce(f"nonce {nonce} is not the sender's next nonce {account.nonce}")
            account.nonce += 1
            block, now = self._open_block(s, chain)
            tx_hash = hex0x(digest)
            ctx = Ctx(s, chain, self.genesis, sender, block, now, tx_hash)
            try:
                result = m.handler(ctx, parsed)
            except SpecError as exc:  # a spec rule refused it: named by the rule
                raise errors.Refused(str(exc) or type(exc).__name__, _snake(type(exc).__name__)) from exc
            receipt = {"tx_hash": tx_hash, "block": block, "time": now, "method": name,
                       "result": result, "events": ctx.events}
            s.add(TxRow(hash=tx_hash, block_number=block, sender=sender, nonce=nonce, method=name,
                        result_json=json.dumps(receipt)))
            return receipt

    @staticmethod
    def _parse_envelope(body: Any) -> tuple[str, int, str, dict[str, Any], bytes]:
        if not isinstance(body, dict):
            raise errors.Malformed("the transaction must be a JSON object")
        try:
            sender = parse_address(body["sender"])
            nonce = body["nonce"]
            name = body["method"]
            args = body["args"]
            signature = unhex(body["signature"])
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.Malformed(f"bad envelope: {exc!r}") from exc
        if not isinstance(nonce, int) or isinstance(nonce, bool) or nonce < 0:
            raise errors.Malformed("nonce must be a non-negative integer")
        if not isinstance(name, str) or not isinstance(args, dict):
            raise errors.Malformed("method must be a string and args an object")
        try:
            tx_digest(0, sender, nonce, name, args)  # refuses floats and other non-canonical values
        except ValueError as exc:
            raise errors.Malformed(str(exc)) from exc
        return sender, nonce, name, args, signature

    # --- reads ---

    def read(self) -> Session:
        return self.sessions()

    def info(self) -> dict[str, Any]:
        with self.sessions() as s:
            chain = s.get(ChainRow, 1)
            assert chain is not None
            return {
                "chain_id": self.chain_id,
                "preset": self.preset.name,
                "head_block": chain.head_block,
                "head_time": chain.head_time,
                "time": self._clock(chain),
                "block_time": self.settings.block_time,
                "manual_time": self.settings.manual_time,
                "genesis": json.loads(genesis_to_json(self.genesis)),
            }

    def block(self, number: int | None) -> dict[str, Any]:
        with self.sessions() as s:
            if number is None:
                chain = s.get(ChainRow, 1)
                assert chain is not None
                number = chain.head_block
            row = s.get(BlockRow, number)
            if row is None:
                raise errors.NotFound(f"no block {number}")
            return {"number": row.number, "timestamp": row.timestamp, "tx_count": row.tx_count}

    def account_view(self, address: str) -> dict[str, Any]:
        address = parse_address(address)
        with self.sessions() as s:
            row = s.get(AccountRow, address)
            if row is None:
                return {"address": address, "nonce": 0, "native": 0, "usdc": 0, "credit": 0}
            return {"address": address, "nonce": row.nonce, "native": row.native, "usdc": row.usdc,
                    "credit": row.credit}

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        with self.sessions() as s:
            row = s.get(TxRow, tx_hash.lower())
            if row is None:
                raise errors.NotFound(f"no transaction {tx_hash}")
            return dict(json.loads(row.result_json))

    def events(self, after: int = 0, from_block: int = 0, limit: int = MAX_EVENTS_PAGE,
               names: list[str] | None = None) -> dict[str, Any]:
        limit = max(1, min(limit, MAX_EVENTS_PAGE))
        with self.sessions() as s:
            q = select(EventRow).where(EventRow.id > after, EventRow.block_number >= from_block)
            if names:
                q = q.where(EventRow.name.in_(names))
            rows = s.scalars(q.order_by(EventRow.id).limit(limit)).all()
            chain = s.get(ChainRow, 1)
            assert chain is not None
            return {
                "events": [{"id": r.id, "block": r.block_number, "tx_hash": r.tx_hash, "name": r.name,
                            "data": json.loads(r.data_json)} for r in rows],
                "next": rows[-1].id if rows else after,
                "head_block": chain.head_block,
            }


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
