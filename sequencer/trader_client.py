"""A trader's client, for bots and for `rampart-trader`: keys, the base layer (deposit, forced
withdrawal, claims, freeze, escape) and the sequencer's REST API (orders signed here with
EIP-712, positions, margin, fills with their life, withdrawals). Every refusal is a TraderError.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import httpx

from contracts_spec import eip712
from contracts_spec.crypto import address_of_private_key, is_private_key
from contracts_spec.errors import InvalidTransaction, SpecError
from contracts_spec.merkle import withdrawal_proof
from contracts_spec.state import State
from contracts_spec.stf import BatchOrders, Env, process_tx
from contracts_spec.types import (
    ForcedWithdraw,
    Genesis,
    Hash32,
    MarketParams,
    Order,
    Seconds,
    TimeInForce,
    Withdraw,
    WithdrawalLeaf,
)
from l1_mock import replay
from l1_mock.client import ClientBridge, L1Client, L1Error

T = TypeVar("T")

DEFAULT_SEQUENCER = "http://127.0.0.1:8000"
DEFAULT_L1 = "http://127.0.0.1:8545"
USDC_DECIMALS = 6


class TraderError(Exception):
    """A refusal (nothing changed) or an unreachable service. `source`: sequencer, l1 or client."""

    def __init__(self, code: str, message: str, source: str = "client", status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.source, self.status = code, message, source, status

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "source": self.source}}


def _l1(call: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run a base-layer call, turning its refusals into TraderError."""
    try:
        return call(*args, **kw)
    except L1Error as exc:
        raise TraderError(exc.code, exc.message, "l1", exc.status) from exc
    except SpecError as exc:  # a proof the spec refuses, before it is ever sent
        raise _refused_here(exc) from exc


def _signed(sign: Callable[..., T], *args: Any) -> T:
    """Sign a message here; a field the spec cannot encode (a negative nonce or expiry, an amount
    beyond its range) is a refusal before anything is sent."""
    try:
        return sign(*args)
    except SpecError as exc:
        raise _refused_here(exc) from exc


def _refused_here(exc: SpecError) -> TraderError:
    """What the spec refuses in this client, as a refusal named after its error (bad_proof, ...)."""
    return TraderError(_snake(type(exc).__name__), str(exc), "client")


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


# --- keys ------------------------------------------------------------------------------------


def new_key() -> bytes:
    while True:
        key = secrets.token_bytes(32)
        if is_private_key(key):
            return key


def parse_key(text: str) -> bytes:
    raw = text.strip().removeprefix("0x")
    try:
        key = bytes.fromhex(raw)
    except ValueError as exc:
        raise TraderError("bad_key", "a private key is 32 bytes of hex") from exc
    if not is_private_key(key):
        raise TraderError("bad_key", "a private key is 32 bytes of hex, within the secp256k1 order")
    return key


class KeyStore:
    """Named keys as files `<home>/<name>.json` readable by their owner only (dev-grade: plain hex)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or Path(os.environ.get("RAMPART_TRADER_HOME", Path.home() / ".rampart-trader"))

    def path(self, name: str) -> Path:
        if not name or any(c in name for c in "/\\.") or len(name) > 64:
            raise TraderError("bad_key_name", "a key name is 1-64 characters without / \\ or .")
        return self.home / f"{name}.json"

    def save(self, name: str, key: bytes, overwrite: bool = False) -> dict[str, str]:
        path = self.path(name)
        if path.exists() and not overwrite:
            raise TraderError("key_exists", f"a key named {name!r} exists ({path})")
        address = "0x" + address_of_private_key(key).hex()
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"name": name, "address": address, "private_key": "0x" + key.hex()}, f)
        except OSError as exc:
            raise TraderError("key_store", f"cannot write {path}: {exc.strerror or exc}") from exc
        return {"name": name, "address": address, "path": str(path)}

    def load(self, name: str) -> bytes:
        path = self.path(name)
        if not path.exists():
            raise TraderError("unknown_key", f"no key named {name!r} in {self.home} (rampart-trader keys create)")
        return parse_key(self._read(path)["private_key"])

    def list(self) -> list[dict[str, str]]:
        if not self.home.is_dir():
            return []
        out = []
        for path in sorted(self.home.glob("*.json")):
            doc = self._read(path)
            out.append({"name": doc["name"], "address": doc["address"], "path": str(path)})
        return out

    @staticmethod
    def _read(path: Path) -> dict[str, str]:
        """A key file's fields, or a refusal naming the file."""
        try:
            doc = json.loads(path.read_text())
            fields = {k: str(doc[k]) for k in ("name", "address", "private_key")}
        except OSError as exc:
            raise TraderError("bad_key_file", f"{path} cannot be read: {exc.strerror or exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise TraderError("bad_key_file", f"{path} is not a key file of rampart-trader "
                                              "(JSON with name, address and private_key)") from exc
        return fields


# --- amounts -----------------------------------------------------------------------------------


def to_units(text: str | int | Decimal, unit: str, what: str) -> int:
    """An exact count of `unit` in a decimal amount ("60000.5" with unit "0.1" -> 600005)."""
    try:
        amount, step = Decimal(str(text)), Decimal(unit)
    except InvalidOperation as exc:
        raise TraderError("bad_amount", f"{what}: {text!r} is not a decimal number") from exc
    count = amount / step
    if amount <= 0 or count != count.to_integral_value():
        raise TraderError("bad_amount", f"{what}: {text} is not a positive multiple of {unit}")
    return int(count)


def usdc_atoms(text: str | int | Decimal) -> int:
    return to_units(text, "0.000001", "USDC amount")


def format_usdc(atoms: int) -> str:
    sign = "-" if atoms < 0 else ""
    whole, frac = divmod(abs(atoms), 10**USDC_DECIMALS)
    return f"{sign}{whole}.{frac:06d}"


@dataclass(frozen=True, slots=True)
class Placed:
    order_id: str
    result: dict[str, Any]


# --- the client --------------------------------------------------------------------------------


class Trader:
    """One account on one rollup: `sequencer_url` may be None when only the base layer is used."""

    def __init__(self, key: bytes, l1_url: str = DEFAULT_L1, sequencer_url: str | None = DEFAULT_SEQUENCER,
                 timeout: float = 30.0) -> None:
        self.key = key
        self.address = address_of_private_key(key)
        self.l1 = L1Client(l1_url, key, timeout)
        self.http = httpx.Client(base_url=sequencer_url.rstrip("/"), timeout=timeout) if sequencer_url else None
        self._genesis: Genesis | None = None

    def close(self) -> None:
        self.l1.close()
        if self.http is not None:
            self.http.close()

    def __enter__(self) -> Trader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def account(self) -> str:
        return "0x" + self.address.hex()

    @property
    def genesis(self) -> Genesis:
        if self._genesis is None:
            self._genesis = _l1(self.l1.genesis)
        return self._genesis

    def market(self, market: str | int) -> MarketParams:
        """A market by id or symbol ("BTC-USD", "BTC"), from the base layer's genesis."""
        for m in self.genesis.markets:
            if str(market) in (str(m.market_id), m.symbol, m.symbol.split("-")[0]):
                return m
        raise TraderError("unknown_market", f"no market {market!r}; known: {[m.symbol for m in self.genesis.markets]}")

    # --- sequencer transport ---

    def _seq(self, verb: str, path: str, **kw: Any) -> Any:
        if self.http is None:
            raise TraderError("no_sequencer", "this client has no sequencer URL")
        try:
            r = self.http.request(verb, path, **kw)
        except httpx.HTTPError as exc:
            raise TraderError("unreachable", f"sequencer {verb} {path}: {exc!r}", "sequencer") from exc
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", r.text[:500]
            raise TraderError(code, message, "sequencer", r.status_code)
        return r.json()

    def _auth(self) -> dict[str, str]:
        ts = int(self._seq("GET", "/v1/time")["time"])
        sig = eip712.sign_subscribe(self.genesis.preset, self.key, ts)
        return {"X-Rampart-Timestamp": str(ts), "X-Rampart-Signature": "0x" + sig.hex()}

    def _private(self, what: str, **params: Any) -> Any:
        return self._seq("GET", f"/v1/accounts/{self.account}/{what}", headers=self._auth(),
                         params={k: v for k, v in params.items() if v is not None})

    # --- orders (signed here) ---

    def sign_order(self, market: str | int, is_buy: bool, price: int, lots: int, tif: str = "GTC",
                   reduce_only: bool = False, expiry: int = 0, nonce: int | None = None,
                   client_id: int = 0) -> tuple[dict[str, Any], str]:
        """The order's wire form and its id (the EIP-712 digest). `nonce` defaults to the clock in
        microseconds: increasing, so a cancel-all floor works as a bot expects."""
        m = self.market(market)
        try:
            time_in_force = TimeInForce[tif.upper()]
        except KeyError as exc:
            raise TraderError("bad_tif", f"tif must be one of {[t.name for t in TimeInForce]}") from exc
        nonce = time.time_ns() // 1_000 if nonce is None else nonce
        order = Order(self.address, m.market_id, is_buy, price, lots, time_in_force, reduce_only, expiry,  # type: ignore[arg-type]
                      nonce, client_id)
        signed = _signed(eip712.sign_order, self.genesis.preset, order, self.key)
        wire = {"account": self.account, "market": m.market_id, "isBuy": is_buy, "price": price, "lots": lots,
                "tif": time_in_force.name, "reduceOnly": reduce_only, "expiry": expiry, "nonce": nonce,
                "clientId": client_id, "signature": "0x" + signed.signature.hex()}
        return wire, "0x" + eip712.order_digest(self.genesis.preset, order).hex()

    def place(self, market: str | int, is_buy: bool, price: int, lots: int, tif: str = "GTC",
              reduce_only: bool = False, expiry: int = 0, nonce: int | None = None, client_id: int = 0) -> Placed:
        wire, order_id = self.sign_order(market, is_buy, price, lots, tif, reduce_only, expiry, nonce, client_id)
        return Placed(order_id, dict(self._seq("POST", "/v1/orders", json=wire)))

    def place_many(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each item: the keyword arguments of `place`; each order is answered on its own."""
        wires = [self.sign_order(**o)[0] for o in orders]
        return list(self._seq("POST", "/v1/orders/batch", json={"orders": wires})["results"])

    def _cancel_wire(self, order_id: str) -> dict[str, Any]:
        oid = _hash(order_id)
        c = eip712.sign_cancel(self.genesis.preset, self.key, oid)
        return {"account": self.account, "orderId": "0x" + oid.hex(), "signature": "0x" + c.signature.hex()}

    def cancel(self, order_id: str) -> dict[str, Any]:
        return dict(self._seq("POST", "/v1/orders/cancel", json=self._cancel_wire(order_id)))

    def cancel_many(self, order_ids: list[str]) -> list[dict[str, Any]]:
        """Each cancel is answered on its own (an unknown order is an error entry, not a refusal)."""
        wires = [self._cancel_wire(oid) for oid in order_ids]
        return list(self._seq("POST", "/v1/orders/cancel/batch", json={"cancels": wires})["results"])

    def cancel_all(self, nonce_floor: int | None = None) -> dict[str, Any]:
        """Raise the nonce floor (default: the clock in microseconds): every order below it is dead."""
        floor = time.time_ns() // 1_000 if nonce_floor is None else nonce_floor
        c = _signed(eip712.sign_cancel_all, self.genesis.preset, self.key, floor)
        return dict(self._seq("POST", "/v1/orders/cancel-all",
                              json={"account": self.account, "nonceFloor": floor, "signature": "0x" + c.signature.hex()}))

    def replace(self, order_id: str, market: str | int, is_buy: bool, price: int, lots: int, tif: str = "GTC",
                reduce_only: bool = False, expiry: int = 0, nonce: int | None = None, client_id: int = 0) -> Placed:
        wire, new_id = self.sign_order(market, is_buy, price, lots, tif, reduce_only, expiry, nonce, client_id)
        body = {"cancel": self._cancel_wire(order_id), "order": wire}
        return Placed(new_id, dict(self._seq("POST", "/v1/orders/replace", json=body)))

    # --- reads ---

    def markets(self) -> list[dict[str, Any]]:
        return list(self._seq("GET", "/v1/markets"))

    def book(self, market: str | int, depth: int = 20) -> dict[str, Any]:
        return dict(self._seq("GET", f"/v1/markets/{self.market(market).market_id}/book", params={"depth": depth}))

    def orders(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._private("orders", status=status, limit=limit))

    def order(self, order_id: str) -> dict[str, Any]:
        return dict(self._private(f"orders/0x{_hash(order_id).hex()}"))

    def fills(self, limit: int = 100) -> list[dict[str, Any]]:
        """Fills with their life: matched, posted, challenged, final or busted."""
        return list(self._private("fills", limit=limit))

    def positions(self) -> list[dict[str, Any]]:
        return list(self._private("positions"))

    def margin(self) -> dict[str, Any]:
        return dict(self._private("margin"))

    def deposits(self) -> list[dict[str, Any]]:
        return list(self._private("deposits"))

    def withdrawals(self) -> list[dict[str, Any]]:
        return list(self._private("withdrawals"))

    # --- withdrawals through the sequencer ---

    def withdraw(self, amount: int, nonce: int | None = None) -> dict[str, Any]:
        """A signed rollup withdrawal (nonce: the account's next, read from /margin)."""
        if nonce is None:
            nonce = int(self.margin()["withdrawNonce"])
        w = _signed(eip712.sign_withdraw, self.genesis.preset, self.key, amount, nonce)
        return dict(self._seq("POST", "/v1/withdrawals", json={"account": self.account, "amount": amount,
                                                                "nonce": nonce, "signature": "0x" + w.signature.hex()}))

    # --- the base layer ---

    def balances(self) -> dict[str, Any]:
        return _l1(self.l1.account, self.address)

    def faucet(self, usdc: int = 0, native: int = 0) -> dict[str, Any]:
        """Dev preset only: USDC and native coin from the base layer's faucet."""
        return dict(_l1(self.l1.faucet, native=native, usdc=usdc)["result"])

    def deposit(self, amount: int) -> int:
        """Lock USDC in the bridge for this account; returns the deposit-queue index."""
        return _l1(self.l1.deposit, amount)

    def force_withdraw(self, amount: int) -> int:
        """A forced withdrawal request on the base layer; the sequencer must serve it within the delay
        (or anyone may freeze the rollup). Returns the forced-queue index."""
        return _l1(self.l1.request_withdrawal, amount)

    def claimable(self) -> list[dict[str, Any]]:
        """Final withdrawals of this account not yet paid on the base layer, with their proofs:
        from the sequencer when it answers, else rebuilt from the base layer alone."""
        try:
            claims = [w["claim"] for w in self.withdrawals() if w.get("claim")]
        except TraderError as exc:
            if exc.code not in ("unreachable", "no_sequencer"):
                raise
            claims = self.claims_from_chain()
        return [c for c in claims if not _l1(self.l1.withdrawal_paid, int(c["leafIndex"]))]

    def claim(self, leaf_index: int | None = None) -> list[dict[str, Any]]:
        """Pay every final, unpaid withdrawal of this account (or one leaf) on the base layer."""
        paid = []
        for c in self.claimable():
            if leaf_index is not None and int(c["leafIndex"]) != leaf_index:
                continue
            leaf = WithdrawalLeaf(int(c["leafIndex"]), self.address, int(c["amount"]))  # type: ignore[arg-type]
            proof = [_hash(h) for h in c["proof"]]
            receipt = _l1(self.l1.withdraw, int(c["batchId"]), leaf, proof)
            paid.append({"leafIndex": leaf.index, "amount": leaf.amount, "batchId": int(c["batchId"]),
                         "block": receipt["block"]})
        if leaf_index is not None and not paid:
            raise TraderError("nothing_to_claim", f"withdrawal leaf {leaf_index} is not a final, unpaid one of yours")
        return paid

    def claims_from_chain(self) -> list[dict[str, Any]]:
        """This account's withdrawal leaves in the last final batch's tree, found by re-executing the
        valid chain from the base layer's data (no sequencer needed)."""
        final = self._last_final_batch()
        if final is None:
            return []
        leaves = _l1(_withdrawal_leaves, self.l1, int(final["index"]))
        hashes = [_leaf_hash(x) for x in leaves[: int(final["withdrawal_count"])]]
        return [{"batchId": final["batch_id"], "leafIndex": x.index, "account": self.account, "amount": x.amount,
                 "proof": ["0x" + h.hex() for h in withdrawal_proof(hashes, x.index)]}
                for x in leaves[: len(hashes)] if x.account == self.address]

    def _last_final_batch(self) -> dict[str, Any] | None:
        rollup = _l1(self.l1.rollup)
        index = int(rollup["head_index"])
        while index >= 0:
            view = _l1(self.l1.canonical, index)
            if view["status"] == "final":
                return view
            index -= 1
        return None

    def governance(self) -> dict[str, Any]:
        """Announced governance changes with their effective time and status (announced, effective, applied)."""
        return _l1(self.l1.governance_changes)

    # --- the escape hatch ---

    def escape_status(self) -> dict[str, Any]:
        return _l1(self.l1.escape_status)

    def freeze(self) -> dict[str, Any]:
        """Freeze the rollup: allowed once a forced request is overdue or no batch came for the escape delay."""
        return _l1(self.l1.freeze)

    def escape(self) -> dict[str, Any]:
        """After a freeze: rebuild the state at the escape root from the base layer alone, claim this
        account's value with its proof, and take back this account's deposits the root never consumed."""
        status = self.escape_status()
        if not status["frozen"]:
            raise TraderError("not_frozen", "the rollup is not frozen"
                              + (" (a freeze is allowed now: rampart-trader freeze)" if status["freeze_allowed"] else ""),
                              "l1")
        out: dict[str, Any] = {"account": self.account, "escaped": None, "refunded": []}
        claim = _l1(self.l1.escape_claim, self.address)
        if claim["escaped"]:
            out["escaped"] = {"value": claim["value"], "paid": claim["paid"], "already": True}
        else:
            proof = _l1(replay.escape_proof, self.l1, self.address)
            try:
                out["escaped"] = _l1(self.l1.escape, proof)
            except TraderError as exc:
                if exc.code != "escape_refused":  # nothing to take at the root: refunds may remain
                    raise
                out["escaped"] = {"value": 0, "paid": 0, "refused": exc.message}
        first = int(status["freeze"]["deposits_consumed"])
        index = first
        while True:
            entry = _l1(self.l1.deposit_entry, index)
            if entry is None:
                break
            if entry.account == self.address and not _l1(self.l1.deposit_refunded, index):
                out["refunded"].append(_l1(self.l1.refund_deposit, index))
            index += 1
        return out


def _hash(text: str) -> Hash32:
    raw = text.removeprefix("0x")
    try:
        value = bytes.fromhex(raw)
    except ValueError as exc:
        raise TraderError("bad_order_id", f"{text!r} is not 32 bytes of hex") from exc
    if len(value) != 32:
        raise TraderError("bad_order_id", f"{text!r} is not 32 bytes of hex")
    return value


def _leaf_hash(leaf: WithdrawalLeaf) -> Hash32:
    from contracts_spec.dispute import compute_withdrawal_leaf_hash

    return compute_withdrawal_leaf_hash(leaf)


def _withdrawal_leaves(client: L1Client, upto_index: int) -> list[WithdrawalLeaf]:
    """Every withdrawal leaf appended by the valid chain up to `upto_index`, by re-execution."""
    genesis = client.genesis()
    state = State.from_genesis(genesis)
    bridge = ClientBridge(client)
    leaves: list[WithdrawalLeaf] = []
    for index in range(upto_index + 1):
        header = client.batch_header(int(client.canonical(index)["batch_id"]))
        body = _l1(replay.decode_body, client, header, genesis)
        env = Env(genesis.preset, Seconds(header.time), bridge)
        orders = BatchOrders(body.orders, genesis.preset)
        for tx in body.txs:
            count = state.globals().withdrawal_count
            try:
                process_tx(state, tx, orders, env)
            except InvalidTransaction as exc:  # pragma: no cover - a final batch is valid
                raise TraderError("replay_mismatch", f"batch {index} does not re-execute: {exc}", "client") from exc
            if state.globals().withdrawal_count == count:
                continue
            if isinstance(tx, Withdraw):
                leaves.append(WithdrawalLeaf(count, tx.account, tx.amount))
            elif isinstance(tx, ForcedWithdraw):
                entry = bridge.forced(tx.queue_index)
                if entry is None:  # pragma: no cover - process_tx read it a moment ago
                    raise TraderError("replay_mismatch", f"forced request {tx.queue_index} vanished", "client")
                leaves.append(WithdrawalLeaf(count, entry.account, entry.amount))
        state.checkpoint()
        if state.root() != header.post_root:
            raise TraderError("replay_mismatch", f"batch {index}: re-execution does not reach its root", "client")
    return leaves
