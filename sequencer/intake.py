"""Intake: wire JSON into spec values, with every stateless check, and signature recovery.

Numbers are integers only (JSON integers or strings of decimal digits: lots and ticks are
integers in the spec), bounded to their EIP-712 widths; anything else is `malformed`. Field
names are the EIP-712 message's own (camelCase), so a wallet signs exactly what it sends.
Hot path for the batch endpoint (bench/api.py): plain dict lookups, no pydantic per order.
Signatures are recovered on the event loop, or by worker processes when `verify_workers > 0`;
a batch request's orders are parsed, hashed and recovered there whole (`check_orders`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final, TypeVar

from contracts_spec import eip712
from contracts_spec.crypto import recover_address
from contracts_spec.errors import BadSignature, InvalidAmount
from contracts_spec.types import (
    Address,
    Atoms,
    Cancel,
    CancelAll,
    Hash32,
    OracleReport,
    Order,
    Preset,
    Seconds,
    SignedOrder,
    Ticks,
    TimeInForce,
    Withdraw,
)
from sequencer.errors import ApiError, bad_signature, malformed, unknown_market, wrong_signer

log = logging.getLogger("rampart.intake")
_T = TypeVar("_T")

U32: Final = (1 << 32) - 1
U64: Final = (1 << 64) - 1
_DIGITS: Final = frozenset("0123456789")
TIFS: Final = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK,
               "POST_ONLY": TimeInForce.POST_ONLY, "ALO": TimeInForce.POST_ONLY,  # Hyperliquid's name
               "Gtc": TimeInForce.GTC, "Ioc": TimeInForce.IOC, "Alo": TimeInForce.POST_ONLY}
ORDER_KEYS: Final = frozenset({"account", "market", "isBuy", "price", "lots", "tif", "reduceOnly", "expiry",
                               "nonce", "clientId", "signature"})
_ORDER_REQUIRED: Final = ("account", "market", "isBuy", "price", "lots", "signature")
STP_NAMES: Final = {"expire_maker": 0, "expire_taker": 1, "expire_both": 2}


# --- scalars ---------------------------------------------------------------------------------


def parse_uint(value: Any, name: str, top: int = U64) -> int:
    """A non-negative integer up to `top`: a JSON integer or a string of decimal digits."""
    if value.__class__ is int:
        n = value
    elif value.__class__ is str and 0 < len(value) <= 40 and _DIGITS.issuperset(value):
        n = int(value)
    else:
        raise malformed(f"{name} must be a non-negative integer (no fractions, signs or exponents)")
    if n < 0 or n > top:
        raise malformed(f"{name} must be within [0, {top}]")
    return n


def parse_positive(value: Any, name: str, top: int = U64) -> int:
    n = parse_uint(value, name, top)
    if n == 0:
        raise malformed(f"{name} must be positive")
    return n


def parse_bool(value: Any, name: str) -> bool:
    if value.__class__ is not bool:
        raise malformed(f"{name} must be true or false")
    return bool(value)


def parse_hex(value: Any, name: str, size: int) -> bytes:
    # fromhex skips whitespace, so exactly `size` bytes from 2 * size characters means hex only
    if value.__class__ is str and len(value) == 2 + 2 * size and value[:2] in ("0x", "0X"):
        try:
            out = bytes.fromhex(value[2:])
        except ValueError:
            pass
        else:
            if len(out) == size:
                return out
    raise malformed(f"{name} must be 0x and {size} bytes of hex")


def parse_address(value: Any, name: str = "account") -> Address:
    return parse_hex(value, name, 20)


def parse_signature(value: Any) -> bytes:
    return parse_hex(value, "signature", 65)


def parse_market(value: Any, symbols: dict[str, int], markets: Any) -> int:
    """A market id (integer) or symbol ("BTC-USD"; "BTC" as Hyperliquid's coin)."""
    if value.__class__ is str and not _DIGITS.issuperset(value):
        mid = symbols.get(value)
        if mid is None:
            mid = symbols.get(value + "-USD")
        if mid is None:
            raise unknown_market(value)
        return mid
    mid = parse_uint(value, "market", U32)
    if mid not in markets:
        raise unknown_market(mid)
    return mid


def parse_tif(value: Any) -> TimeInForce:
    if value is None:
        return TimeInForce.GTC
    if value.__class__ is str:
        tif = TIFS.get(value) or TIFS.get(value.upper())
        if tif is None:
            raise malformed(f"tif must be one of GTC, IOC, FOK, POST_ONLY, not {value!r}")
        return tif
    n = parse_uint(value, "tif", 3)
    return TimeInForce(n)


def _object(value: Any, name: str) -> dict[str, Any]:
    if value.__class__ is not dict:
        raise malformed(f"{name} must be a JSON object")
    return value


# --- messages --------------------------------------------------------------------------------


def parse_order(raw: Any, symbols: dict[str, int], markets: Any) -> SignedOrder:
    """A signed order from its wire form (the EIP-712 message plus `signature`)."""
    d = _object(raw, "order")
    if not ORDER_KEYS.issuperset(d):
        raise malformed(f"unknown order fields: {sorted(set(d) - ORDER_KEYS)}")
    for key in _ORDER_REQUIRED:
        if key not in d:
            raise malformed(f"order field {key} is missing")
    order = Order(
        account=parse_address(d["account"]),
        market=parse_market(d["market"], symbols, markets),
        is_buy=parse_bool(d["isBuy"], "isBuy"),
        price=Ticks(parse_positive(d["price"], "price")),
        lots=parse_positive(d["lots"], "lots"),  # type: ignore[arg-type]
        tif=parse_tif(d.get("tif")),
        reduce_only=parse_bool(d.get("reduceOnly", False), "reduceOnly"),
        expiry=Seconds(parse_uint(d.get("expiry", 0), "expiry")),
        nonce=parse_uint(d.get("nonce", 0), "nonce"),
        client_id=parse_uint(d.get("clientId", 0), "clientId"),
    )
    return SignedOrder(order, parse_signature(d["signature"]))


def order_to_wire(signed: SignedOrder, symbol: str | None = None) -> dict[str, Any]:
    """The wire form of a signed order (what clients send)."""
    o = signed.order
    return {"account": "0x" + o.account.hex(), "market": o.market, "isBuy": o.is_buy, "price": o.price,
            "lots": o.lots, "tif": TimeInForce(o.tif).name, "reduceOnly": o.reduce_only, "expiry": o.expiry,
            "nonce": o.nonce, "clientId": o.client_id, "signature": "0x" + signed.signature.hex()}


def parse_cancel(raw: Any) -> Cancel:
    d = _object(raw, "cancel")
    _only(d, {"account", "orderId", "signature"}, "cancel")
    return Cancel(parse_address(d.get("account")), parse_hex(d.get("orderId"), "orderId", 32),
                  parse_signature(d.get("signature")))


def parse_cancel_all(raw: Any) -> CancelAll:
    d = _object(raw, "cancelAll")
    _only(d, {"account", "nonceFloor", "signature"}, "cancelAll")
    return CancelAll(parse_address(d.get("account")), parse_uint(d.get("nonceFloor"), "nonceFloor"),
                     parse_signature(d.get("signature")))


def parse_withdraw(raw: Any) -> Withdraw:
    d = _object(raw, "withdraw")
    _only(d, {"account", "amount", "nonce", "signature"}, "withdraw")
    return Withdraw(parse_address(d.get("account")), Atoms(parse_positive(d.get("amount"), "amount")),
                    parse_uint(d.get("nonce"), "nonce"), parse_signature(d.get("signature")))


def parse_report(raw: Any, markets: Any) -> OracleReport:
    d = _object(raw, "report")
    _only(d, {"market", "price", "time", "signature"}, "report")
    market = parse_uint(d.get("market"), "market", U32)
    if market not in markets:
        raise unknown_market(market)
    return OracleReport(market, Ticks(parse_positive(d.get("price"), "price")),
                        Seconds(parse_positive(d.get("time"), "time")), parse_signature(d.get("signature")))


def _only(d: dict[str, Any], keys: set[str], what: str) -> None:
    extra = set(d) - keys
    if extra:
        raise malformed(f"unknown {what} fields: {sorted(extra)}")
    missing = keys - set(d)
    if missing:
        raise malformed(f"{what} fields missing: {sorted(missing)}")


# --- signatures --------------------------------------------------------------------------------


def recover_or_none(digest: bytes, signature: bytes) -> bytes | None:
    try:
        return recover_address(digest, signature)
    except BadSignature:
        return None


def _recover_chunk(pairs: Sequence[tuple[bytes, bytes]]) -> list[bytes | None]:
    """Worker-process entry point: recover each (digest, signature)."""
    return [recover_or_none(d, s) for d, s in pairs]


def _watch_parent(parent: int) -> None:
    """Worker-process initializer: exit as soon as the process that started it is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def check_signer(recovered: bytes | None, account: Address, what: str) -> None:
    # Verify the signature recovers the account that the message names
    if recovered is None:
        raise bad_signature(f"{what}: malformed or high-s signature")
    if recovered != account:
        raise wrong_signer(f"{what} is not signed by its account")


# What `check_orders` hands back for each order, compact so that it crosses from a worker process
# cheaply (plain tuples of bytes, ints and bools pickle at ~0.3 us an order; SignedOrder at ~6):
#   accepted: (account, market, is_buy, price, lots, tif value, reduce_only, expiry, nonce, client_id,
#              signature, order id), the signature checked against the account
#   refused before it has an id: (code, message, status)
#   refused on its signature: (code, message, status, order id)
CHECKED_LEN: Final = 12
SIGNER_REFUSED_LEN: Final = 4
_TIF_BY_VALUE: Final = tuple(sorted(TimeInForce, key=int))


def check_orders(preset: Preset, symbols: dict[str, int], markets: Any, raws: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Every stateless check of each order: its fields, its id (EIP-712 digest) and its signer.

    Runs on a worker process for the batch endpoint (`Verifier.check_orders`), or inline; the
    same function either way, so the answers are the same.
    """
    out: list[tuple[Any, ...]] = []
    append = out.append
    for raw in raws:
        try:
            signed = parse_order(raw, symbols, markets)
            order_id = order_digest(preset, signed)
        except ApiError as exc:
            append((exc.code, exc.message, exc.status))
            continue
        o = signed.order
        try:
            check_signer(recover_or_none(order_id, signed.signature), o.account, "order")
        except ApiError as exc:
            append((exc.code, exc.message, exc.status, order_id))
            continue
        append((o.account, o.market, o.is_buy, o.price, o.lots, int(o.tif), o.reduce_only, o.expiry, o.nonce,
                o.client_id, signed.signature, order_id))
    return out


def signed_order_of(checked: tuple[Any, ...]) -> SignedOrder:
    """The SignedOrder of an accepted `check_orders` entry."""
    a, m, b, p, n, tif, r, e, nonce, c, sig, _ = checked
    return SignedOrder(Order(a, m, b, p, n, _TIF_BY_VALUE[tif], r, e, nonce, c), sig)


def error_of(checked: tuple[Any, ...]) -> ApiError:
    """The refusal of a refused `check_orders` entry."""
    return ApiError(checked[0], checked[1], checked[2])


class Verifier:
    """Signature recovery, inline or on worker processes (the second core); for the batch endpoint,
    every stateless check of its orders (`check_orders`).

    With workers, single messages that arrive in the same turn of the event loop are recovered
    together in one chunk (`recover`); a turn with fewer than `inline_below` of them is done
    inline: a round trip to a worker costs the serving process (pickling, the pool's feeder and
    manager threads, all under its GIL) more than a few recoveries. Measured with bench/api.py,
    32 single-order clients: chunks from 4 up, 405 us of CPU a request and 0.56 of the bare
    endpoint; from 64 up (in effect inline), 315 us and 0.64.
    A worker that dies (killed, out of memory) costs one chunk recovered inline and a new pool.
    """

    def __init__(self, workers: int = 0, chunk: int = 256, inline_below: int = 64) -> None:
        self.workers = workers
        self.chunk = chunk
        self.inline_below = inline_below
        self.pool = self._new_pool() if workers > 0 else None
        self._pending: list[tuple[bytes, bytes, asyncio.Future[bytes | None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawned, not forked: a worker must not inherit the listening socket, and it leaves
        # when the sequencer is gone, even by kill -9 (_watch_parent)
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_watch_parent, initargs=(os.getpid(),))

    async def _on_pool(self, fn: Callable[..., _T], *args: Any) -> _T:
        pool = self.pool
        if pool is None:
            return fn(*args)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            log.error("a signature worker died: starting new ones, this chunk is checked inline")
            if self.pool is pool:
                pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()
            return fn(*args)

    def check_orders(self, preset: Preset, symbols: dict[str, int], markets: Any, raws: list[Any]
                     ) -> list[Awaitable[list[tuple[Any, ...]]]]:
        """`check_orders` over `raws` in chunks of `self.chunk`, all started now; await them in order.

        On workers, the serving process only pickles the raw orders out and compact tuples back, and
        a chunk's answers can be executed while the worker checks the next. Measured on 1000-order
        requests: the serving process spends ~4 us an order on intake instead of ~9 (parse and
        digest there, recovery on the worker); the worker ~45 instead of ~39.
        """
        loop, chunk = asyncio.get_running_loop(), self.chunk
        if self.pool is None or len(raws) < 8:
            done: list[Awaitable[list[tuple[Any, ...]]]] = []
            for i in range(0, len(raws), chunk):
                fut: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()
                fut.set_result(check_orders(preset, symbols, markets, raws[i:i + chunk]))
                done.append(fut)
            return done
        # snapshots: the pool pickles the arguments later, on its own thread, and governance may
        # change the markets meanwhile
        symbols, markets = dict(symbols), frozenset(markets)
        return [loop.create_task(self._on_pool(check_orders, preset, symbols, markets, raws[i:i + chunk]))
                for i in range(0, len(raws), chunk)]

    async def recover_many(self, pairs: Sequence[tuple[bytes, bytes]]) -> list[bytes | None]:
        """Each (digest, signature)'s signer or None: on the workers in chunks, all started at
        once, when there are enough of them to pay for the round trip; else inline."""
        if self.pool is None or len(pairs) < self.inline_below:
            return [recover_or_none(d, s) for d, s in pairs]
        parts = await asyncio.gather(*(self._on_pool(_recover_chunk, pairs[i:i + self.chunk])
                                       for i in range(0, len(pairs), self.chunk)))
        return [signer for part in parts for signer in part]

    async def recover(self, digest: bytes, signature: bytes) -> bytes | None:
        """One signature, batched with the others of this loop turn."""
        if self.pool is None:
            return recover_or_none(digest, signature)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes | None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((digest, signature, fut))
        return await fut

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if len(pending) < self.inline_below or self.pool is None:
            for d, s, fut in pending:
                if not fut.done():
                    fut.set_result(recover_or_none(d, s))
            return
        task = asyncio.get_running_loop().create_task(self._deliver(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, pending: list[tuple[bytes, bytes, asyncio.Future[bytes | None]]]) -> None:
        try:
            results = await self._on_pool(_recover_chunk, [(d, s) for d, s, _ in pending])
        except BaseException as exc:  # every waiter hears of it
            for _, _, fut in pending:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        for (_, _, fut), result in zip(pending, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


def order_digest(preset: Preset, signed: SignedOrder) -> Hash32:
    try:
        return eip712.order_digest(preset, signed.order)
    except InvalidAmount as exc:  # excluded by the range checks above
        raise malformed(str(exc)) from exc


def error_entry(exc: ApiError) -> dict[str, Any]:
    return {"status": "error", "code": exc.code, "message": exc.message}
