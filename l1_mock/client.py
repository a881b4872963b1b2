"""The base layer's Python client: the only way the sequencer and verifiers touch the chain.

Reads return plain dicts (and spec values where one exists: Genesis, BatchHeader, Game, queue
entries); every state-changing call is a transaction signed here with the client's key and
the sender's next nonce. A refusal raises `L1Error` with the chain's machine-readable code.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from contracts_spec import codec, dispute
from contracts_spec.crypto import address_of_private_key, keccak
from contracts_spec.params import genesis_from_json
from contracts_spec.types import (
    Atoms,
    BatchHeader,
    DepositEntry,
    ForcedEntry,
    Genesis,
    GovernanceChange,
    GovernanceEntry,
    Seconds,
    WithdrawalLeaf,
)
from l1_mock.envelope import hex0x, sign_tx, unhex
from l1_mock.wire import game_from_json, step_proof_to_args


class L1Error(Exception):
    """The chain refused a call (nothing changed) or could not be reached."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @property
    def away(self) -> bool:
        """The base layer did not answer (no connection, or an HTTP error of its server): worth
        trying again, not a refusal of the call."""
        return self.code in ("unreachable", "http_error")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    block: int
    tx_hash: str | None
    name: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GameInfo:
    game_id: int
    batch_id: int
    status: str  # open, challenger_won, sequencer_won, refunded
    game: dispute.Game
    deadline: int | None
    payout: dict[str, int] | None


class L1Client:
    def __init__(self, url: str, private_key: bytes | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport)
        self.private_key = private_key
        self.address = hex0x(address_of_private_key(private_key)) if private_key else None
        self._nonce: int | None = None
        self._lock = threading.Lock()
        self._chain_id: int | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> L1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_key(self, private_key: bytes) -> L1Client:
        """Another client on the same chain, signing with another key."""
        return L1Client(str(self.http.base_url), private_key, self.http.timeout.read or 60.0)

    # --- transport ---

    def _request(self, verb: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(verb, path, **kw)
        except httpx.HTTPError as exc:
            raise L1Error("unreachable", f"{verb} {path}: {exc!r}") from exc
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                raise L1Error("http_error", r.text, r.status_code) from None
            raise L1Error(err["code"], err["message"], r.status_code)
        return r

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    # --- transactions ---

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.info()["chain_id"])
        return self._chain_id

    def send(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """Sign and submit a transaction; returns its receipt (block, time, result, events).

        A bad_nonce refusal changed nothing, so it is retried with the chain's nonce; any other
        failure (including a lost response) drops the cached nonce and raises."""
        if self.private_key is None or self.address is None:
            raise L1Error("no_key", "this client has no key to sign with")
        with self._lock:
            for attempt in range(3):
                if self._nonce is None:
                    self._nonce = int(self.account(self.address)["nonce"])
                body = sign_tx(self.private_key, self.chain_id, self.address, self._nonce, method, args)
                try:
                    receipt: dict[str, Any] = self._request("POST", "/tx", json=body).json()
                except L1Error as exc:
                    self._nonce = None
                    if exc.code == "bad_nonce" and attempt < 2:
                        continue
                    raise
                self._nonce += 1
                return receipt
        raise AssertionError("unreachable")  # pragma: no cover

    def faucet(self, native: int = 0, usdc: int = 0, to: str | bytes | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"native": native, "usdc": usdc}
        if to is not None:
            args["to"] = _addr(to)
        return self.send("faucet", args)

    def transfer(self, token: str, to: str | bytes, amount: int) -> dict[str, Any]:
        return self.send("transfer", {"token": token, "to": _addr(to), "amount": amount})

    def register_sequencer(self, amount: int) -> dict[str, Any]:
        return self.send("register_sequencer", {"amount": amount})

    def post_batch(self, header: BatchHeader, data: bytes, globals_proof: bytes) -> dict[str, Any]:
        """Post header + compressed data (+ the post-state's globals proof); result holds batch_id."""
        return self.send("post_batch", {"header": hex0x(codec.encode_header(header)), "data": hex0x(data),
                                        "globals_proof": hex0x(globals_proof)})

    def open_game(self, batch_id: int) -> GameInfo:
        return _game(self.send("open_game", {"batch_id": batch_id})["result"])

    def reveal(self, game_id: int, root: bytes) -> GameInfo:
        return _game(self.send("reveal", {"game_id": game_id, "root": hex0x(root)})["result"])

    def answer(self, game_id: int, agree: bool) -> GameInfo:
        return _game(self.send("answer", {"game_id": game_id, "agree": agree})["result"])

    def step(self, game_id: int, proof: dispute.StepProof | None) -> GameInfo:
        args = {"game_id": game_id, **(step_proof_to_args(proof) if proof else {})}
        return _game(self.send("step", args)["result"])

    def move(self, game_id: int, move: dispute.Move, proof: dispute.StepProof | None = None) -> GameInfo:
        """Play what dispute.next_move returned (a Step needs its proof)."""
        if isinstance(move, dispute.Reveal):
            return self.reveal(game_id, move.root)
        if isinstance(move, dispute.Answer):
            return self.answer(game_id, move.agree)
        return self.step(game_id, proof)

    def resolve(self, game_id: int) -> GameInfo:
        return _game(self.send("resolve", {"game_id": game_id})["result"])

    def claim(self) -> int:
        return int(self.send("claim", {})["result"]["claimed"])

    def deposit(self, amount: int, account: str | bytes | None = None) -> int:
        """Lock USDC in the bridge for `account` (the sender by default); returns the queue index."""
        args: dict[str, Any] = {"amount": amount}
        if account is not None:
            args["account"] = _addr(account)
        return int(self.send("deposit", args)["result"]["index"])

    def request_withdrawal(self, amount: int) -> int:
        """A forced withdrawal request; returns its queue index."""
        return int(self.send("request_withdrawal", {"amount": amount})["result"]["index"])

    def withdraw(self, batch_id: int, leaf: WithdrawalLeaf, proof: list[bytes]) -> dict[str, Any]:
        return self.send("withdraw", {"batch_id": batch_id, "leaf_index": leaf.index, "account": hex0x(leaf.account),
                                      "amount": leaf.amount, "proof": [hex0x(h) for h in proof]})

    # --- governance ---

    def announce_governance(self, change: GovernanceChange) -> dict[str, Any]:
        """Queue a time-locked change (governance key only); result holds index and effective_time."""
        return dict(self.send("announce_governance", {"change": hex0x(codec.encode_governance_change(change))})["result"])

    # --- escape hatch ---

    def freeze(self) -> dict[str, Any]:
        """Freeze the rollup (anyone, once the spec's escape conditions hold); result: the escape root."""
        return dict(self.send("freeze", {})["result"])

    def escape(self, proof: bytes, account: str | bytes | None = None) -> dict[str, Any]:
        """Claim an account's value at the escape root with witness.prove_account; result: value, paid."""
        args: dict[str, Any] = {"proof": hex0x(proof)}
        if account is not None:
            args["account"] = _addr(account)
        return dict(self.send("escape", args)["result"])

    def refund_deposit(self, index: int) -> dict[str, Any]:
        """Return a deposit the escape root never consumed to its account."""
        return dict(self.send("refund_deposit", {"index": index})["result"])

    # --- admin (dev preset only) ---

    def increase_time(self, seconds: int) -> dict[str, Any]:
        """Advance the chain's time and mine a block (like anvil's evm_increaseTime + mine)."""
        return dict(self._request("POST", "/admin/increase_time", json={"seconds": seconds}).json())

    def mine(self) -> dict[str, Any]:
        return dict(self._request("POST", "/admin/mine").json())

    # --- reads ---

    def info(self) -> dict[str, Any]:
        return dict(self._get("/info"))

    def genesis(self) -> Genesis:
        return genesis_from_json(json.dumps(self.info()["genesis"]))

    def now(self) -> int:
        """The chain's current time (what the next block's timestamp will be at least)."""
        return int(self.info()["time"])

    def block(self, number: int | None = None) -> dict[str, Any]:
        return dict(self._get("/blocks/latest" if number is None else f"/blocks/{number}"))

    def account(self, address: str | bytes) -> dict[str, Any]:
        return dict(self._get(f"/accounts/{_addr(address)}"))

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        return dict(self._get(f"/txs/{tx_hash}"))

    def events(self, after: int = 0, from_block: int = 0, limit: int = 1000,
               names: list[str] | None = None) -> tuple[list[Event], int]:
        """One page of events with id > after; returns (events, cursor for the next page)."""
        page = self._get("/events", after=after, from_block=from_block, limit=limit, name=names)
        return [Event(**e) for e in page["events"]], int(page["next"])

    def follow(self, after: int = 0, names: list[str] | None = None) -> Iterator[Event]:
        """Every event with id > after that exists now, page by page."""
        while True:
            page, after = self.events(after=after, names=names)
            yield from page
            if not page:
                return

    def rollup(self) -> dict[str, Any]:
        return dict(self._get("/rollup"))

    def batch(self, batch_id: int) -> dict[str, Any]:
        return dict(self._get(f"/batches/{batch_id}"))

    def batches(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._get("/batches", after=after, limit=limit)["batches"])

    def canonical(self, index: int) -> dict[str, Any]:
        """The valid batch at a rollup index."""
        return dict(self._get(f"/canonical/{index}"))

    def batch_header(self, batch_id: int) -> BatchHeader:
        return codec.decode_header(unhex(self.batch(batch_id)["header"]))

    def batch_data(self, data_hash: bytes | str) -> bytes:
        """The batch data by hash, checked against the hash."""
        h = data_hash if isinstance(data_hash, str) else hex0x(data_hash)
        data = self._request("GET", f"/data/{h}").content
        if hex0x(keccak(data)) != h.lower():
            raise L1Error("bad_data", f"data served for {h} does not hash to it")
        return data

    def game(self, game_id: int) -> GameInfo:
        return _game(self._get(f"/games/{game_id}"))

    def games(self, batch_id: int | None = None, challenger: str | bytes | None = None, status: str | None = None,
              after: int = 0, limit: int = 100) -> list[GameInfo]:
        page = self._get("/games", batch_id=batch_id, challenger=_addr(challenger) if challenger else None,
                         status=status, after=after, limit=limit)
        return [_game(g) for g in page["games"]]

    def bonds(self, address: str | bytes) -> dict[str, Any]:
        """Bonds locked in open games and what is claimable, for an address."""
        return dict(self._get(f"/bonds/{_addr(address)}"))

    def deposit_entry(self, index: int) -> DepositEntry | None:
        e = self._get_or_none(f"/bridge/deposits/{index}")
        return None if e is None else DepositEntry(unhex(e["account"]), Atoms(e["amount"]))

    def forced_entry(self, index: int) -> ForcedEntry | None:
        e = self._get_or_none(f"/bridge/forced/{index}")
        return None if e is None else ForcedEntry(unhex(e["account"]), Atoms(e["amount"]))

    def withdrawal_paid(self, leaf_index: int) -> bool:
        return bool(self._get(f"/bridge/withdrawals/{leaf_index}")["paid"])

    def governance_changes(self, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """Announced changes from index `after`, each with its status (announced, effective, applied)."""
        return dict(self._get("/governance", after=after, limit=limit))

    def governance_entry(self, index: int) -> GovernanceEntry | None:
        """The queue entry ApplyGovernance(index) reads (None if not announced)."""
        e = self._get_or_none(f"/governance/{index}")
        if e is None:
            return None
        return GovernanceEntry(codec.decode_governance_change(unhex(e["change"])), Seconds(e["effective_time"]))

    def escape_status(self) -> dict[str, Any]:
        """Frozen or not; the escape root and what is left to claim; or whether a freeze is allowed."""
        return dict(self._get("/escape"))

    def escape_claim(self, address: str | bytes) -> dict[str, Any]:
        return dict(self._get(f"/escape/claims/{_addr(address)}"))

    def deposit_refunded(self, index: int) -> bool:
        return bool(self._get(f"/escape/deposits/{index}")["refunded"])

    def _get_or_none(self, path: str) -> Any:
        try:
            return self._get(path)
        except L1Error as exc:
            if exc.code == "not_found":
                return None
            raise


class ClientBridge:
    """contracts_spec.stf.BridgeView over the chain's queues, for followers; entries are cached
    (queue entries never change once queued)."""

    def __init__(self, client: L1Client) -> None:
        self.client = client
        self._deposits: dict[int, DepositEntry] = {}
        self._forced: dict[int, ForcedEntry] = {}
        self._governance: dict[int, GovernanceEntry] = {}

    def deposit(self, index: int) -> DepositEntry | None:
        if index not in self._deposits:
            entry = self.client.deposit_entry(index)
            if entry is None:
                return None
            self._deposits[index] = entry
        return self._deposits[index]

    def forced(self, index: int) -> ForcedEntry | None:
        if index not in self._forced:
            entry = self.client.forced_entry(index)
            if entry is None:
                return None
            self._forced[index] = entry
        return self._forced[index]

    def governance(self, index: int) -> GovernanceEntry | None:
        if index not in self._governance:
            entry = self.client.governance_entry(index)
            if entry is None:
                return None
            self._governance[index] = entry
        return self._governance[index]


def _addr(value: str | bytes) -> str:
    return hex0x(value) if isinstance(value, bytes) else value.lower()


def _game(view: dict[str, Any]) -> GameInfo:
    return GameInfo(view["game_id"], view["batch_id"], view["status"], game_from_json(view["game"]),
                    view["deadline"], view["payout"])
