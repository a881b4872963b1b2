"""The canonical encoding of every spec value: orders, transactions, state records, headers
and the compressed batch data posted for data availability. Each value has exactly one
encoding; decoders refuse anything else with DecodeError, and never raise anything else.

Widths. Messages, transactions, headers and bridge/withdrawal leaves are fixed-width
big-endian (`struct`, precompiled): u8 tags, time in force and oracle-report counts; u32
market ids, order indices and counts; u64 prices, lots, amounts, times, nonces and queue indices;
20-byte addresses, 32-byte hashes, 65-byte signatures; bools are one byte, 0 or 1. A
Trade is 25 bytes, a signed order 132, a header 229 (it starts with VERSION).

State records (Account, Position, OrderStatus, Market, Globals, Config) are built to be
small, since most leaves sit near their defaults: unsigned fields are LEB128 varints (bounded
to u64; u32 for market ids, u128 for the premium-lots and open-interest accumulators),
signed fields (collateral, position lots, funding/loss indices, premium sum) are zigzag
LEB128 varints bounded to i128, and a varint must be minimal. A default Account is 4 bytes,
a default Position 3. Globals ends with the governance counter only when it is non-zero. Market parameters inside a Market are fixed-width plus u8-length
UTF-8 strings.

Batch data is `VERSION` (1 byte) || zlib(body), body = u32 order count, the signed orders,
u32 tx count, the txs. The zlib envelope is not canonical (zlib builds differ); data_hash
binds the exact bytes posted, and everything inside the envelope is canonical.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any, Final, TypeVar

from contracts_spec.crypto import keccak
from contracts_spec.errors import DecodeError, InvalidAmount, InvalidBatch
from contracts_spec.types import (
    WITHDRAWAL_TREE_DEPTH,
    Account,
    ApplyGovernance,
    Atoms,
    BatchData,
    BatchHeader,
    Cancel,
    CancelAll,
    Config,
    Deposit,
    DepositEntry,
    ForcedEntry,
    ForcedWithdraw,
    FundingTick,
    Globals,
    GovernanceChange,
    GovernanceEntry,
    Hash32,
    Liquidate,
    Lots,
    Market,
    MarketParams,
    OraclePrice,
    OracleReport,
    Order,
    OrderStatus,
    Position,
    Ppm,
    Seconds,
    SetMarketParams,
    SetOracleSigners,
    SignedOrder,
    Ticks,
    TimeInForce,
    Trade,
    Tx,
    TxKind,
    Withdraw,
    WithdrawalLeaf,
)

VERSION: Final = 1

MAX_BATCH_TXS: Final = 65_536  # = the presets' max_batch_txs
MAX_BATCH_ORDERS: Final = 2 * MAX_BATCH_TXS  # a trade brings at most two new orders
MAX_DECOMPRESSED_BYTES: Final = 32 * 1024 * 1024  # ~5x what 4 MiB (max_batch_bytes) of batch data inflates to
MAX_ORACLE_REPORTS: Final = 32  # reports in one OraclePrice
MAX_ORACLE_SIGNERS: Final = 64  # signers in Config
MAX_ACCOUNT_MARKETS: Final = 1024  # markets in an Account's open-market set
MAX_STRING_BYTES: Final = 32  # UTF-8 bytes of a market symbol, lot size or tick size

# Measured on 10,000 trades with 20,000 signed orders (signatures are ~75% of the payload and
# incompressible): level 5 is 0.5% larger than 6 at ~70% of its time; 9 saves 2% at ~8x.
COMPRESSION_LEVEL: Final = 5

ADDRESS_BYTES: Final = 20
HASH_BYTES: Final = 32
SIGNATURE_BYTES: Final = 65

_U64_BITS: Final = 64
_U32_BITS: Final = 32
_U128_BITS: Final = 128

# --- fixed layouts -------------------------------------------------------------------------

_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_ORDER: Final = struct.Struct(">20sIBQQBBQQQ")  # account market isBuy price lots tif reduceOnly expiry nonce clientId
_SIGNED_ORDER: Final = struct.Struct(">20sIBQQBBQQQ65s")
ORDER_FIELDS: Final = _ORDER  # an order's fields as encoded: the EIP-712 message's, in its order
_ORACLE_REPORT: Final = struct.Struct(">IQQ65s")
_DEPOSIT: Final = struct.Struct(">BQ")
_FORCED_WITHDRAW: Final = struct.Struct(">BQ")
_TRADE: Final = struct.Struct(">BIIQQ")
_CANCEL: Final = struct.Struct(">B20s32s65s")
_CANCEL_ALL: Final = struct.Struct(">B20sQ65s")
_ORACLE_PRICE: Final = struct.Struct(">BIQB")  # then count x _ORACLE_REPORT
_FUNDING_TICK: Final = struct.Struct(">BI")
_LIQUIDATE: Final = struct.Struct(">B20sIQQ")
_WITHDRAW: Final = struct.Struct(">B20sQQ65s")
_APPLY_GOVERNANCE: Final = struct.Struct(">BQ")
_HEADER: Final = struct.Struct(">BQ32s32sI32s32sQQ32s32sQ")
_WITHDRAWAL_LEAF: Final = struct.Struct(">Q20sQ")
_QUEUE_ENTRY: Final = struct.Struct(">20sQ")  # DepositEntry and ForcedEntry
# market_id, atoms_per_lot_tick, initial, maintenance, taker, maker, penalty, funding cap (ppm),
# funding_interval, oracle_staleness, price band, max oracle move (ppm), max position, max OI
_MARKET_PARAMS: Final = struct.Struct(">IQIIIIIIQQIIQQ")

_TIFS: Final = tuple(TimeInForce)  # indexed by value: 0, 1, 2, 3
_TIF_VALUES: Final = frozenset(int(t) for t in TimeInForce)
_BOOLS: Final = (False, True)
_VERSION_BYTE: Final = bytes((VERSION,))
_TRADE_TAG: Final = int(TxKind.TRADE)

_T = TypeVar("_T")


# --- helpers -------------------------------------------------------------------------------


def _pack(layout: struct.Struct, what: str, *values: Any) -> bytes:
    try:
        return layout.pack(*values)
    except struct.error as exc:  # an integer outside its width, or not an integer
        raise InvalidAmount(f"{what}: field out of range: {exc}") from exc


def _check_bytes(value: bytes, size: int, what: str) -> None:
    # Verify a fixed-size field has its size: struct's "Ns" would pad or truncate silently
    if not isinstance(value, bytes) or len(value) != size:
        raise InvalidAmount(f"{what} must be {size} bytes")


def _check_bool(value: bool, what: str) -> None:
    if value.__class__ is not bool:
        raise InvalidAmount(f"{what} must be a bool")


def _decode_bool(byte: int, what: str) -> bool:
    # Verify a bool is 0 or 1: any other byte would be a second encoding of True
    if byte > 1:
        raise DecodeError(f"{what}: bool byte {byte}")
    return _BOOLS[byte]


def _put_uvarint(out: bytearray, value: int, bits: int, what: str) -> None:
    # Verify the value is a non-negative integer of at most `bits` bits
    if not isinstance(value, int) or value < 0 or value >> bits:
        raise InvalidAmount(f"{what} must be a u{bits}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_svarint(out: bytearray, value: int, what: str) -> None:
    """Zigzag: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ...; bounded to i128."""
    if not isinstance(value, int) or not (-(1 << 127) <= value < 1 << 127):
        raise InvalidAmount(f"{what} must be an i128")
    _put_uvarint(out, value << 1 if value >= 0 else ((-value) << 1) - 1, _U128_BITS, what)


def _put_string(out: bytearray, value: str, what: str) -> None:
    if not isinstance(value, str):
        raise InvalidAmount(f"{what} must be a string")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 encoding
        raise InvalidAmount(f"{what} is not encodable as UTF-8") from exc
    if len(raw) > MAX_STRING_BYTES:
        raise InvalidAmount(f"{what} longer than {MAX_STRING_BYTES} bytes")
    out.append(len(raw))
    out += raw


def _as_bytes(b: bytes) -> bytes:
    # memoryview() refuses an int, which bytes() would take for a length
    return b if type(b) is bytes else bytes(memoryview(b))


class _Reader:
    """A cursor over bytes; every read checks bounds and raises DecodeError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = _as_bytes(buf)
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.buf):
            raise DecodeError("truncated")
        chunk = self.buf[self.pos:end]
        self.pos = end
        return chunk

    def fixed(self, layout: struct.Struct) -> tuple[Any, ...]:
        end = self.pos + layout.size
        if end > len(self.buf):
            raise DecodeError("truncated")
        values = layout.unpack_from(self.buf, self.pos)
        self.pos = end
        return values

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise DecodeError("truncated")
        byte = self.buf[self.pos]
        self.pos += 1
        return byte

    def uvarint(self, bits: int) -> int:
        buf, pos, value, shift = self.buf, self.pos, 0, 0
        while True:
            if pos >= len(buf):
                raise DecodeError("truncated varint")
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                # Verify the varint is minimal: a final zero group after others is padding
                if byte == 0 and shift:
                    raise DecodeError("non-minimal varint")
                break
            shift += 7
            if shift >= bits:  # the next group starts past the width: no legal value needs it
                raise DecodeError("varint too long")
        if value >> bits:
            raise DecodeError(f"varint exceeds u{bits}")
        self.pos = pos
        return value

    def svarint(self) -> int:
        z = self.uvarint(_U128_BITS)
        return -((z + 1) >> 1) if z & 1 else z >> 1

    def count(self, limit: int, what: str) -> int:
        n = self.uvarint(_U32_BITS)
        if n > limit:
            raise DecodeError(f"{what}: {n} exceeds {limit}")
        return n

    def string(self, what: str) -> str:
        size = self.u8()
        if size > MAX_STRING_BYTES:
            raise DecodeError(f"{what} longer than {MAX_STRING_BYTES} bytes")
        try:
            return self.take(size).decode("utf-8")  # strict: no overlong forms, no surrogates
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{what} is not UTF-8") from exc

    def finish(self) -> None:
        # Verify nothing trails the value: trailing bytes would be a second encoding
        if self.pos != len(self.buf):
            raise DecodeError(f"{len(self.buf) - self.pos} trailing bytes")


# --- orders and oracle reports -------------------------------------------------------------


def _is_encodable_order(order: Order) -> bool:
    # struct would pad a short address and take any integer for a bool or time in force
    return (
        len(order.account) == ADDRESS_BYTES
        and order.is_buy.__class__ is bool
        and order.reduce_only.__class__ is bool
        and order.tif in _TIF_VALUES
    )


def _make_order(values: tuple[Any, ...]) -> Order:
    account, market, is_buy, price, lots, tif, reduce_only, expiry, nonce, client_id = values
    # Verify bools are 0 or 1 and the time in force is known: one encoding per order
    if is_buy > 1 or reduce_only > 1 or tif >= len(_TIFS):
        raise DecodeError(f"order: bad bool or time in force ({is_buy}, {reduce_only}, {tif})")
    bools = _BOOLS
    return Order(account, market, bools[is_buy], price, lots, _TIFS[tif], bools[reduce_only], expiry, nonce, client_id)


def encode_order(order: Order) -> bytes:
    if not _is_encodable_order(order):
        raise InvalidAmount("order: bad account length, bool or time in force")
    o = order
    return _pack(
        _ORDER, "order", o.account, o.market, o.is_buy, o.price, o.lots, o.tif, o.reduce_only, o.expiry,
        o.nonce, o.client_id,
    )  # fmt: skip


def decode_order(b: bytes) -> Order:
    r = _Reader(b)
    order = _make_order(r.fixed(_ORDER))
    r.finish()
    return order


def encode_signed_order(so: SignedOrder) -> bytes:
    """The order's fields then its signature (132 bytes). Batch-encoding hot path: one call deep."""
    o = so.order
    if not _is_encodable_order(o) or len(so.signature) != SIGNATURE_BYTES:
        raise InvalidAmount("signed order: bad account or signature length, bool or time in force")
    try:
        return _SIGNED_ORDER.pack(
            o.account, o.market, o.is_buy, o.price, o.lots, o.tif, o.reduce_only, o.expiry, o.nonce,
            o.client_id, so.signature,
        )  # fmt: skip
    except struct.error as exc:
        raise InvalidAmount(f"signed order: field out of range: {exc}") from exc


def _make_signed_order(values: tuple[Any, ...]) -> SignedOrder:
    return SignedOrder(_make_order(values[:10]), values[10])


def decode_signed_order(b: bytes) -> SignedOrder:
    r = _Reader(b)
    so = _make_signed_order(r.fixed(_SIGNED_ORDER))
    r.finish()
    return so


def signed_order_hash(so: SignedOrder) -> Hash32:
    """keccak of the signed order's encoding: the leaves of a batch's orders_root."""
    return keccak(encode_signed_order(so))


def _oracle_report_values(report: OracleReport) -> tuple[Any, ...]:
    _check_bytes(report.signature, SIGNATURE_BYTES, "oracle report signature")
    return (report.market, report.price, report.time, report.signature)


def _make_oracle_report(values: tuple[Any, ...]) -> OracleReport:
    market, price, time, signature = values
    return OracleReport(market=market, price=Ticks(price), time=Seconds(time), signature=signature)


def encode_oracle_report(report: OracleReport) -> bytes:
    return _pack(_ORACLE_REPORT, "oracle report", *_oracle_report_values(report))


def decode_oracle_report(b: bytes) -> OracleReport:
    r = _Reader(b)
    report = _make_oracle_report(r.fixed(_ORACLE_REPORT))
    r.finish()
    return report


# --- transactions --------------------------------------------------------------------------
# Each encoder returns the tag byte and the fields; each decoder takes (buffer, offset of the
# tag) and returns (tx, offset after it). Trade is the hot path of batch encoding.


def _encode_deposit(tx: Deposit) -> bytes:
    return _pack(_DEPOSIT, "deposit", TxKind.DEPOSIT, tx.queue_index)


def _encode_forced_withdraw(tx: ForcedWithdraw) -> bytes:
    return _pack(_FORCED_WITHDRAW, "forced withdraw", TxKind.FORCED_WITHDRAW, tx.queue_index)


def _encode_trade(tx: Trade) -> bytes:
    try:
        return _TRADE.pack(_TRADE_TAG, tx.maker, tx.taker, tx.lots, tx.price)
    except struct.error as exc:
        raise InvalidAmount(f"trade: field out of range: {exc}") from exc


def _encode_cancel(tx: Cancel) -> bytes:
    _check_bytes(tx.account, ADDRESS_BYTES, "cancel account")
    _check_bytes(tx.order_id, HASH_BYTES, "cancel order id")
    _check_bytes(tx.signature, SIGNATURE_BYTES, "cancel signature")
    return _pack(_CANCEL, "cancel", TxKind.CANCEL, tx.account, tx.order_id, tx.signature)


def _encode_cancel_all(tx: CancelAll) -> bytes:
    _check_bytes(tx.account, ADDRESS_BYTES, "cancel-all account")
    _check_bytes(tx.signature, SIGNATURE_BYTES, "cancel-all signature")
    return _pack(_CANCEL_ALL, "cancel-all", TxKind.CANCEL_ALL, tx.account, tx.nonce_floor, tx.signature)


def _encode_oracle_price(tx: OraclePrice) -> bytes:
    if len(tx.reports) > MAX_ORACLE_REPORTS:
        raise InvalidAmount(f"oracle price: more than {MAX_ORACLE_REPORTS} reports")
    head = _pack(_ORACLE_PRICE, "oracle price", TxKind.ORACLE_PRICE, tx.market, tx.time, len(tx.reports))
    return head + b"".join(encode_oracle_report(report) for report in tx.reports)


def _encode_funding_tick(tx: FundingTick) -> bytes:
    return _pack(_FUNDING_TICK, "funding tick", TxKind.FUNDING_TICK, tx.market)


def _encode_liquidate(tx: Liquidate) -> bytes:
    _check_bytes(tx.account, ADDRESS_BYTES, "liquidate account")
    return _pack(_LIQUIDATE, "liquidate", TxKind.LIQUIDATE, tx.account, tx.market, tx.lots, tx.price)


def _encode_withdraw(tx: Withdraw) -> bytes:
    _check_bytes(tx.account, ADDRESS_BYTES, "withdraw account")
    _check_bytes(tx.signature, SIGNATURE_BYTES, "withdraw signature")
    return _pack(_WITHDRAW, "withdraw", TxKind.WITHDRAW, tx.account, tx.amount, tx.nonce, tx.signature)


def _encode_apply_governance(tx: ApplyGovernance) -> bytes:
    return _pack(_APPLY_GOVERNANCE, "apply governance", TxKind.APPLY_GOVERNANCE, tx.queue_index)


_TX_ENCODERS: Final[dict[type, Callable[[Any], bytes]]] = {
    Deposit: _encode_deposit,
    ForcedWithdraw: _encode_forced_withdraw,
    Trade: _encode_trade,
    Cancel: _encode_cancel,
    CancelAll: _encode_cancel_all,
    OraclePrice: _encode_oracle_price,
    FundingTick: _encode_funding_tick,
    Liquidate: _encode_liquidate,
    Withdraw: _encode_withdraw,
    ApplyGovernance: _encode_apply_governance,
}


def encode_tx(tx: Tx) -> bytes:
    """The 1-byte TxKind tag, then the fields."""
    encoder = _TX_ENCODERS.get(type(tx))
    if encoder is None:
        raise TypeError(f"not a transaction: {type(tx).__name__}")
    return encoder(tx)


def tx_hash(tx: Tx) -> Hash32:
    return keccak(encode_tx(tx))


def _decode_deposit(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, queue_index = _DEPOSIT.unpack_from(buf, pos)
    return Deposit(queue_index=queue_index), pos + _DEPOSIT.size


def _decode_forced_withdraw(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, queue_index = _FORCED_WITHDRAW.unpack_from(buf, pos)
    return ForcedWithdraw(queue_index=queue_index), pos + _FORCED_WITHDRAW.size


def _decode_trade(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, maker, taker, lots, price = _TRADE.unpack_from(buf, pos)
    return Trade(maker, taker, lots, price), pos + 25  # 25 = _TRADE.size


def _decode_cancel(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, account, order_id, signature = _CANCEL.unpack_from(buf, pos)
    return Cancel(account=account, order_id=order_id, signature=signature), pos + _CANCEL.size


def _decode_cancel_all(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, account, nonce_floor, signature = _CANCEL_ALL.unpack_from(buf, pos)
    return CancelAll(account=account, nonce_floor=nonce_floor, signature=signature), pos + _CANCEL_ALL.size


def _decode_oracle_price(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, market, time, count = _ORACLE_PRICE.unpack_from(buf, pos)
    # Verify the report count is within bounds before reading them
    if count > MAX_ORACLE_REPORTS:
        raise DecodeError(f"oracle price: {count} reports exceeds {MAX_ORACLE_REPORTS}")
    pos += _ORACLE_PRICE.size
    size = _ORACLE_REPORT.size
    reports = []
    for _ in range(count):
        reports.append(_make_oracle_report(_ORACLE_REPORT.unpack_from(buf, pos)))
        pos += size
    return OraclePrice(market=market, time=Seconds(time), reports=tuple(reports)), pos


def _decode_funding_tick(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, market = _FUNDING_TICK.unpack_from(buf, pos)
    return FundingTick(market=market), pos + _FUNDING_TICK.size


def _decode_liquidate(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, account, market, lots, price = _LIQUIDATE.unpack_from(buf, pos)
    return Liquidate(account=account, market=market, lots=Lots(lots), price=Ticks(price)), pos + _LIQUIDATE.size


def _decode_withdraw(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, account, amount, nonce, signature = _WITHDRAW.unpack_from(buf, pos)
    return Withdraw(account=account, amount=Atoms(amount), nonce=nonce, signature=signature), pos + _WITHDRAW.size


def _decode_apply_governance(buf: bytes, pos: int) -> tuple[Tx, int]:
    _, queue_index = _APPLY_GOVERNANCE.unpack_from(buf, pos)
    return ApplyGovernance(queue_index=queue_index), pos + _APPLY_GOVERNANCE.size


_TxDecoder = Callable[[bytes, int], tuple[Tx, int]]
_TX_DECODERS: Final[dict[int, _TxDecoder]] = {
    TxKind.DEPOSIT: _decode_deposit,
    TxKind.FORCED_WITHDRAW: _decode_forced_withdraw,
    TxKind.TRADE: _decode_trade,
    TxKind.CANCEL: _decode_cancel,
    TxKind.CANCEL_ALL: _decode_cancel_all,
    TxKind.ORACLE_PRICE: _decode_oracle_price,
    TxKind.FUNDING_TICK: _decode_funding_tick,
    TxKind.LIQUIDATE: _decode_liquidate,
    TxKind.WITHDRAW: _decode_withdraw,
    TxKind.APPLY_GOVERNANCE: _decode_apply_governance,
}
_TX_DECODER_TABLE: Final[tuple[_TxDecoder | None, ...]] = tuple(_TX_DECODERS.get(tag) for tag in range(256))


def _decode_txs(buf: bytes, pos: int, count: int) -> tuple[list[Tx], int]:
    """`count` transactions from `buf` at `pos`; struct.error means truncated input."""
    table = _TX_DECODER_TABLE
    end = len(buf)
    txs: list[Tx] = []
    append = txs.append
    for _ in range(count):
        if pos >= end:
            raise DecodeError("truncated transaction list")
        decoder = table[buf[pos]]
        if decoder is None:
            raise DecodeError(f"unknown transaction kind {buf[pos]}")
        tx, pos = decoder(buf, pos)
        append(tx)
    return txs, pos


def decode_tx(b: bytes) -> Tx:
    buf = _as_bytes(b)
    try:
        txs, pos = _decode_txs(buf, 0, 1)
    except struct.error as exc:
        raise DecodeError(f"truncated transaction: {exc}") from exc
    # Verify nothing trails the transaction
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes after transaction")
    return txs[0]


# --- batch header --------------------------------------------------------------------------


def encode_header(h: BatchHeader) -> bytes:
    """VERSION, then the fields in declaration order (229 bytes)."""
    for name in ("prev_root", "post_root", "tx_root", "data_hash", "withdrawal_root", "orders_root"):
        _check_bytes(getattr(h, name), HASH_BYTES, f"header {name}")
    return _pack(
        _HEADER, "header", VERSION, h.index, h.prev_root, h.post_root, h.tx_count, h.tx_root, h.data_hash,
        h.deposits_consumed, h.forced_consumed, h.withdrawal_root, h.orders_root, h.time,
    )  # fmt: skip


def decode_header(b: bytes) -> BatchHeader:
    r = _Reader(b)
    version, *fields = r.fixed(_HEADER)
    r.finish()
    # Verify the version is one this spec knows
    if version != VERSION:
        raise DecodeError(f"unknown header version {version}")
    index, prev_root, post_root, tx_count, tx_root, data_hash, deposits, forced, withdrawal_root, orders_root, time = (
        fields
    )
    return BatchHeader(
        index=index,
        prev_root=prev_root,
        post_root=post_root,
        tx_count=tx_count,
        tx_root=tx_root,
        data_hash=data_hash,
        deposits_consumed=deposits,
        forced_consumed=forced,
        withdrawal_root=withdrawal_root,
        orders_root=orders_root,
        time=Seconds(time),
    )


def header_hash(h: BatchHeader) -> Hash32:
    return keccak(encode_header(h))


# --- state records -------------------------------------------------------------------------


def encode_market_params(p: MarketParams) -> bytes:
    out = bytearray(
        _pack(
            _MARKET_PARAMS, f"market params {p.symbol!r}", p.market_id, p.atoms_per_lot_tick,
            p.initial_margin_ppm, p.maintenance_margin_ppm, p.taker_fee_ppm, p.maker_fee_ppm,
            p.liquidation_penalty_ppm, p.funding_rate_cap_ppm, p.funding_interval, p.oracle_staleness,
            p.price_band_ppm, p.max_oracle_move_ppm, p.max_position_lots, p.max_open_interest_lots,
        )  # fmt: skip
    )
    _put_string(out, p.symbol, "symbol")
    _put_string(out, p.lot_size, "lot_size")
    _put_string(out, p.tick_size, "tick_size")
    return bytes(out)


def _read_market_params(r: _Reader) -> MarketParams:
    (
        market_id, atoms_per_lot_tick, initial, maintenance, taker, maker, penalty, funding_cap,
        funding_interval, staleness, band, max_move, max_position, max_oi,
    ) = r.fixed(_MARKET_PARAMS)  # fmt: skip
    return MarketParams(
        market_id=market_id,
        symbol=r.string("symbol"),
        lot_size=r.string("lot_size"),
        tick_size=r.string("tick_size"),
        atoms_per_lot_tick=Atoms(atoms_per_lot_tick),
        initial_margin_ppm=Ppm(initial),
        maintenance_margin_ppm=Ppm(maintenance),
        taker_fee_ppm=Ppm(taker),
        maker_fee_ppm=Ppm(maker),
        liquidation_penalty_ppm=Ppm(penalty),
        funding_rate_cap_ppm=Ppm(funding_cap),
        funding_interval=Seconds(funding_interval),
        oracle_staleness=Seconds(staleness),
        price_band_ppm=Ppm(band),
        max_oracle_move_ppm=Ppm(max_move),
        max_position_lots=Lots(max_position),
        max_open_interest_lots=Lots(max_oi),
    )


def decode_market_params(b: bytes) -> MarketParams:
    return _decode_whole(b, _read_market_params)


def _encode_account(a: Account) -> bytes:
    out = bytearray()
    _put_svarint(out, a.collateral, "collateral")
    _put_uvarint(out, a.withdraw_nonce, _U64_BITS, "withdraw_nonce")
    _put_uvarint(out, a.order_nonce_floor, _U64_BITS, "order_nonce_floor")
    # Verify the market set is sorted and distinct: one encoding per set
    markets = a.markets
    if len(markets) > MAX_ACCOUNT_MARKETS:
        raise InvalidAmount(f"account holds more than {MAX_ACCOUNT_MARKETS} markets")
    if any(markets[i] >= markets[i + 1] for i in range(len(markets) - 1)):
        raise InvalidAmount("account markets must be sorted and distinct")
    _put_uvarint(out, len(markets), _U32_BITS, "market count")
    for market in markets:
        _put_uvarint(out, market, _U32_BITS, "market id")
    return bytes(out)


def _read_account(r: _Reader) -> Account:
    collateral = r.svarint()
    withdraw_nonce = r.uvarint(_U64_BITS)
    order_nonce_floor = r.uvarint(_U64_BITS)
    markets = [r.uvarint(_U32_BITS) for _ in range(r.count(MAX_ACCOUNT_MARKETS, "account markets"))]
    if any(markets[i] >= markets[i + 1] for i in range(len(markets) - 1)):
        raise DecodeError("account markets not sorted and distinct")
    return Account(
        collateral=Atoms(collateral),
        withdraw_nonce=withdraw_nonce,
        order_nonce_floor=order_nonce_floor,
        markets=tuple(markets),
    )


def _encode_position(p: Position) -> bytes:
    out = bytearray()
    _put_svarint(out, p.lots, "position lots")
    _put_svarint(out, p.funding_index, "position funding_index")
    _put_svarint(out, p.loss_index, "position loss_index")
    return bytes(out)


def _read_position(r: _Reader) -> Position:
    return Position(lots=Lots(r.svarint()), funding_index=r.svarint(), loss_index=r.svarint())


def _encode_order_status(s: OrderStatus) -> bytes:
    _check_bool(s.cancelled, "cancelled")
    out = bytearray()
    _put_uvarint(out, s.filled, _U64_BITS, "filled")
    out.append(s.cancelled)
    return bytes(out)


def _read_order_status(r: _Reader) -> OrderStatus:
    filled = r.uvarint(_U64_BITS)
    return OrderStatus(filled=Lots(filled), cancelled=_decode_bool(r.u8(), "cancelled"))


def _encode_market(m: Market) -> bytes:
    out = bytearray(encode_market_params(m.params))
    _put_uvarint(out, m.oracle_price, _U64_BITS, "oracle_price")
    _put_uvarint(out, m.oracle_time, _U64_BITS, "oracle_time")
    _put_svarint(out, m.funding_index, "funding_index")
    _put_svarint(out, m.loss_index, "loss_index")
    _put_svarint(out, m.premium_sum, "premium_sum")
    _put_uvarint(out, m.premium_lots, _U128_BITS, "premium_lots")
    _put_uvarint(out, m.last_funding_time, _U64_BITS, "last_funding_time")
    _put_uvarint(out, m.open_interest, _U128_BITS, "open_interest")
    return bytes(out)


def _read_market(r: _Reader) -> Market:
    params = _read_market_params(r)
    return Market(
        params=params,
        oracle_price=Ticks(r.uvarint(_U64_BITS)),
        oracle_time=Seconds(r.uvarint(_U64_BITS)),
        funding_index=r.svarint(),
        loss_index=r.svarint(),
        premium_sum=r.svarint(),
        premium_lots=Lots(r.uvarint(_U128_BITS)),
        last_funding_time=Seconds(r.uvarint(_U64_BITS)),
        open_interest=Lots(r.uvarint(_U128_BITS)),
    )


def _encode_globals(g: Globals) -> bytes:
    """Counters, then a bitmap of the non-zero branch nodes and those nodes only."""
    out = bytearray()
    _put_uvarint(out, g.deposits_consumed, _U64_BITS, "deposits_consumed")
    _put_uvarint(out, g.forced_consumed, _U64_BITS, "forced_consumed")
    _put_uvarint(out, g.withdrawal_count, _U64_BITS, "withdrawal_count")
    if len(g.withdrawal_branch) != WITHDRAWAL_TREE_DEPTH:
        raise InvalidAmount(f"withdrawal branch must hold {WITHDRAWAL_TREE_DEPTH} nodes")
    bitmap = 0
    nodes = []
    for depth, node in enumerate(g.withdrawal_branch):
        _check_bytes(node, HASH_BYTES, "withdrawal branch node")
        if any(node):
            bitmap |= 1 << depth
            nodes.append(node)
    _put_uvarint(out, bitmap, WITHDRAWAL_TREE_DEPTH, "branch bitmap")
    out += b"".join(nodes)
    # Appended only once a governance change was applied: a state that never applied one keeps
    # the encoding (and so the root) it had before governance existed
    if g.governance_applied:
        _put_uvarint(out, g.governance_applied, _U64_BITS, "governance_applied")
    return bytes(out)


_ZERO_HASH: Final = bytes(HASH_BYTES)


def _read_globals(r: _Reader) -> Globals:
    deposits = r.uvarint(_U64_BITS)
    forced = r.uvarint(_U64_BITS)
    count = r.uvarint(_U64_BITS)
    bitmap = r.uvarint(WITHDRAWAL_TREE_DEPTH)
    branch = []
    for depth in range(WITHDRAWAL_TREE_DEPTH):
        if bitmap >> depth & 1:
            node = r.take(HASH_BYTES)
            # Verify a present node is non-zero: a zero node must be left out
            if node == _ZERO_HASH:
                raise DecodeError("zero withdrawal branch node marked present")
            branch.append(node)
        else:
            branch.append(_ZERO_HASH)
    governance = 0
    if r.pos < len(r.buf):
        governance = r.uvarint(_U64_BITS)
        # Verify a present governance counter is non-zero: a zero counter must be left out
        if governance == 0:
            raise DecodeError("zero governance counter marked present")
    return Globals(deposits_consumed=deposits, forced_consumed=forced, withdrawal_count=count,
                   withdrawal_branch=tuple(branch), governance_applied=governance)


def _encode_config(c: Config) -> bytes:
    if len(c.oracle_signers) > MAX_ORACLE_SIGNERS:
        raise InvalidAmount(f"more than {MAX_ORACLE_SIGNERS} oracle signers")
    out = bytearray()
    _put_uvarint(out, len(c.oracle_signers), _U32_BITS, "signer count")
    for signer in c.oracle_signers:
        _check_bytes(signer, ADDRESS_BYTES, "oracle signer")
        out += signer
    _put_uvarint(out, c.oracle_quorum, _U32_BITS, "oracle_quorum")
    _check_bytes(c.sequencer, ADDRESS_BYTES, "sequencer")
    out += c.sequencer
    return bytes(out)


def _read_config(r: _Reader) -> Config:
    signers = tuple(r.take(ADDRESS_BYTES) for _ in range(r.count(MAX_ORACLE_SIGNERS, "oracle signers")))
    quorum = r.uvarint(_U32_BITS)
    return Config(oracle_signers=signers, oracle_quorum=quorum, sequencer=r.take(ADDRESS_BYTES))


def encode_withdrawal_leaf(leaf: WithdrawalLeaf) -> bytes:
    """index u64 || account || amount u64: fixed width, as the base layer hashes it."""
    _check_bytes(leaf.account, ADDRESS_BYTES, "withdrawal account")
    return _pack(_WITHDRAWAL_LEAF, "withdrawal leaf", leaf.index, leaf.account, leaf.amount)


def _read_withdrawal_leaf(r: _Reader) -> WithdrawalLeaf:
    index, account, amount = r.fixed(_WITHDRAWAL_LEAF)
    return WithdrawalLeaf(index=index, account=account, amount=Atoms(amount))


def encode_deposit_entry(entry: DepositEntry) -> bytes:
    _check_bytes(entry.account, ADDRESS_BYTES, "deposit account")
    return _pack(_QUEUE_ENTRY, "deposit entry", entry.account, entry.amount)


def _read_deposit_entry(r: _Reader) -> DepositEntry:
    account, amount = r.fixed(_QUEUE_ENTRY)
    return DepositEntry(account=account, amount=Atoms(amount))


def encode_forced_entry(entry: ForcedEntry) -> bytes:
    _check_bytes(entry.account, ADDRESS_BYTES, "forced-request account")
    return _pack(_QUEUE_ENTRY, "forced entry", entry.account, entry.amount)


def _read_forced_entry(r: _Reader) -> ForcedEntry:
    account, amount = r.fixed(_QUEUE_ENTRY)
    return ForcedEntry(account=account, amount=Atoms(amount))


_CHANGE_MARKET: Final = 1
_CHANGE_ORACLE: Final = 2


def encode_governance_change(change: GovernanceChange) -> bytes:
    """u8 kind, then SetMarketParams: the market parameters; SetOracleSigners: varint count, the
    addresses, varint quorum."""
    if isinstance(change, SetMarketParams):
        return bytes((_CHANGE_MARKET,)) + encode_market_params(change.params)
    if isinstance(change, SetOracleSigners):
        if len(change.signers) > MAX_ORACLE_SIGNERS:
            raise InvalidAmount(f"more than {MAX_ORACLE_SIGNERS} oracle signers")
        out = bytearray((_CHANGE_ORACLE,))
        _put_uvarint(out, len(change.signers), _U32_BITS, "signer count")
        for signer in change.signers:
            _check_bytes(signer, ADDRESS_BYTES, "oracle signer")
            out += signer
        _put_uvarint(out, change.quorum, _U32_BITS, "oracle quorum")
        return bytes(out)
    raise TypeError(f"not a governance change: {type(change).__name__}")


def _read_governance_change(r: _Reader) -> GovernanceChange:
    kind = r.u8()
    if kind == _CHANGE_MARKET:
        return SetMarketParams(_read_market_params(r))
    if kind == _CHANGE_ORACLE:
        signers = tuple(r.take(ADDRESS_BYTES) for _ in range(r.count(MAX_ORACLE_SIGNERS, "oracle signers")))
        return SetOracleSigners(signers=signers, quorum=r.uvarint(_U32_BITS))
    raise DecodeError(f"unknown governance change kind {kind}")


def decode_governance_change(b: bytes) -> GovernanceChange:
    return _decode_whole(b, _read_governance_change)


def encode_governance_entry(entry: GovernanceEntry) -> bytes:
    """effective_time u64 || the change: the base layer's governance-queue entry."""
    return _pack(_U64, "governance effective time", entry.effective_time) + encode_governance_change(entry.change)


def _read_governance_entry(r: _Reader) -> GovernanceEntry:
    (effective_time,) = r.fixed(_U64)
    return GovernanceEntry(change=_read_governance_change(r), effective_time=Seconds(effective_time))


def decode_governance_entry(b: bytes) -> GovernanceEntry:
    return _decode_whole(b, _read_governance_entry)


_RECORD_ENCODERS: Final[dict[type, Callable[[Any], bytes]]] = {
    Account: _encode_account,
    Position: _encode_position,
    OrderStatus: _encode_order_status,
    Market: _encode_market,
    MarketParams: encode_market_params,
    Globals: _encode_globals,
    Config: _encode_config,
    WithdrawalLeaf: encode_withdrawal_leaf,
    DepositEntry: encode_deposit_entry,
    ForcedEntry: encode_forced_entry,
    GovernanceEntry: encode_governance_entry,
}


def encode_record(obj: Any) -> bytes:
    """The canonical encoding of a state record, a market's parameters or a queue entry."""
    encoder = _RECORD_ENCODERS.get(type(obj))
    if encoder is None:
        raise TypeError(f"not a record: {type(obj).__name__}")
    return encoder(obj)


def _decode_whole(b: bytes, read: Callable[[_Reader], _T]) -> _T:
    r = _Reader(b)
    value = read(r)
    r.finish()
    return value


def decode_account(b: bytes) -> Account:
    return _decode_whole(b, _read_account)


def decode_position(b: bytes) -> Position:
    return _decode_whole(b, _read_position)


def decode_order_status(b: bytes) -> OrderStatus:
    return _decode_whole(b, _read_order_status)


def decode_market(b: bytes) -> Market:
    return _decode_whole(b, _read_market)


def decode_globals(b: bytes) -> Globals:
    return _decode_whole(b, _read_globals)


def decode_config(b: bytes) -> Config:
    return _decode_whole(b, _read_config)


def decode_withdrawal_leaf(b: bytes) -> WithdrawalLeaf:
    return _decode_whole(b, _read_withdrawal_leaf)


def decode_deposit_entry(b: bytes) -> DepositEntry:
    return _decode_whole(b, _read_deposit_entry)


def decode_forced_entry(b: bytes) -> ForcedEntry:
    return _decode_whole(b, _read_forced_entry)


# --- batch data ----------------------------------------------------------------------------


def encode_batch_body(data: BatchData) -> bytes:
    """The uncompressed, canonical body: u32 count, signed orders, u32 count, txs."""
    # Verify the counts are within what every decoder accepts
    if len(data.orders) > MAX_BATCH_ORDERS or len(data.txs) > MAX_BATCH_TXS:
        raise InvalidBatch(f"batch over {MAX_BATCH_ORDERS} orders or {MAX_BATCH_TXS} transactions")
    parts = [_U32.pack(len(data.orders))]
    parts += map(encode_signed_order, data.orders)
    parts.append(_U32.pack(len(data.txs)))
    parts += map(encode_tx, data.txs)
    return b"".join(parts)


def encode_batch_data(data: BatchData) -> bytes:
    """The data-availability payload: VERSION || zlib(body). Batch-posting hot path."""
    return _VERSION_BYTE + zlib.compress(encode_batch_body(data), COMPRESSION_LEVEL)


def decode_batch_body(
    body: bytes, max_txs: int = MAX_BATCH_TXS, max_orders: int = MAX_BATCH_ORDERS
) -> BatchData:
    buf = _as_bytes(body)
    try:
        (order_count,) = _U32.unpack_from(buf, 0)
        # Verify the order count is bounded and its orders are all present before reading them
        if order_count > max_orders:
            raise DecodeError(f"{order_count} orders exceeds {max_orders}")
        orders_end = 4 + order_count * _SIGNED_ORDER.size
        if orders_end + 4 > len(buf):
            raise DecodeError("truncated order list")
        orders = tuple(map(_make_signed_order, _SIGNED_ORDER.iter_unpack(buf[4:orders_end])))
        (tx_count,) = _U32.unpack_from(buf, orders_end)
        if tx_count > max_txs:
            raise DecodeError(f"{tx_count} transactions exceeds {max_txs}")
        txs, pos = _decode_txs(buf, orders_end + 4, tx_count)
    except struct.error as exc:
        raise DecodeError(f"truncated batch body: {exc}") from exc
    # Verify nothing trails the transactions
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes after batch body")
    return BatchData(orders=orders, txs=tuple(txs))


def signed_order_encodings(body: bytes) -> list[bytes]:
    """Each signed order's encoding as it stands in a body `decode_batch_body` accepted: the
    bytes `encode_signed_order` gives for the decoded order (one encoding per value), without
    encoding it again. Keys and orders_root leaves of a verifier's replay."""
    (count,) = _U32.unpack_from(body, 0)
    size = _SIGNED_ORDER.size
    return [body[i : i + size] for i in range(4, 4 + count * size, size)]


def decompress_batch_data(b: bytes, max_decompressed: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """The body inside a payload, inflating at most `max_decompressed` bytes (no zip bombs)."""
    if max_decompressed < 0:
        raise InvalidBatch("max_decompressed must be non-negative")
    # Verify the version byte
    if len(b) < 1 or b[0] != VERSION:
        raise DecodeError(f"unknown batch data version {b[:1].hex() or 'none'}")
    inflater = zlib.decompressobj()
    try:
        # max_length caps the output; one byte more than allowed tells "too big" from "exactly"
        body = inflater.decompress(memoryview(b)[1:], max_decompressed + 1)
    except zlib.error as exc:
        raise DecodeError(f"bad zlib stream: {exc}") from exc
    if len(body) > max_decompressed:
        raise DecodeError(f"batch data inflates beyond {max_decompressed} bytes")
    # Verify the stream is complete and nothing follows it
    if not inflater.eof:
        raise DecodeError("truncated zlib stream")
    if inflater.unused_data:
        raise DecodeError("trailing bytes after zlib stream")
    return body


def decode_batch_data(
    b: bytes,
    max_txs: int = MAX_BATCH_TXS,
    max_orders: int = MAX_BATCH_ORDERS,
    max_decompressed: int = MAX_DECOMPRESSED_BYTES,
) -> BatchData:
    return decode_batch_body(decompress_batch_data(b, max_decompressed), max_txs, max_orders)
