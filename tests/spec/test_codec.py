"""The canonical encoding: exact round trips, one encoding per value, hostile bytes raise only
DecodeError, bounded decompression, and the batch-encoding hot path.
"""

from __future__ import annotations

import os
import random
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import strategies as S
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts_spec import codec
from contracts_spec.crypto import keccak
from contracts_spec.errors import DecodeError, InvalidAmount, InvalidBatch
from contracts_spec.params import BTC_USD
from contracts_spec.types import (
    WITHDRAWAL_TREE_DEPTH,
    Account,
    BatchData,
    BatchHeader,
    Cancel,
    CancelAll,
    Config,
    Deposit,
    FundingTick,
    Globals,
    Liquidate,
    Market,
    OraclePrice,
    OracleReport,
    Order,
    OrderStatus,
    Position,
    SignedOrder,
    TimeInForce,
    Trade,
    Withdraw,
    WithdrawalLeaf,
)

Codec = tuple[st.SearchStrategy[Any], Callable[[Any], bytes], Callable[[bytes], Any]]

CODECS: dict[str, Codec] = {
    "order": (S.orders, codec.encode_order, codec.decode_order),
    "signed_order": (S.signed_orders, codec.encode_signed_order, codec.decode_signed_order),
    "oracle_report": (S.oracle_reports, codec.encode_oracle_report, codec.decode_oracle_report),
    "tx": (S.txs, codec.encode_tx, codec.decode_tx),
    "header": (S.headers, codec.encode_header, codec.decode_header),
    "market_params": (S.market_params, codec.encode_market_params, codec.decode_market_params),
    "account": (S.accounts, codec.encode_record, codec.decode_account),
    "position": (S.positions, codec.encode_record, codec.decode_position),
    "order_status": (S.order_statuses, codec.encode_record, codec.decode_order_status),
    "market": (S.markets, codec.encode_record, codec.decode_market),
    "globals": (S.globals_, codec.encode_record, codec.decode_globals),
    "config": (S.configs, codec.encode_record, codec.decode_config),
    "withdrawal_leaf": (S.withdrawal_leaves, codec.encode_withdrawal_leaf, codec.decode_withdrawal_leaf),
    "deposit_entry": (S.deposit_entries, codec.encode_deposit_entry, codec.decode_deposit_entry),
    "forced_entry": (S.forced_entries, codec.encode_forced_entry, codec.decode_forced_entry),
    "batch_body": (S.batch_data, codec.encode_batch_body, codec.decode_batch_body),
}

SIG = bytes(range(65))
ADDR = bytes(range(1, 21))
ORDER = Order(ADDR, 0, True, 600_000, 5, TimeInForce.GTC, False, 0, 7, 42)
SIGNED = SignedOrder(ORDER, SIG)
PARAMS = codec.encode_market_params(BTC_USD)
PARAMS_FIXED = len(codec.encode_market_params(replace(BTC_USD, symbol="", lot_size="", tick_size=""))) - 3


def assert_canonical_or_rejected(encode: Callable[[Any], bytes], decode: Callable[[bytes], Any], b: bytes) -> None:
    """Hostile bytes either raise DecodeError or are the one encoding of what they decode to."""
    try:
        value = decode(b)
    except DecodeError:
        return
    assert encode(value) == b


# --- round trips and canonicity ------------------------------------------------------------


@pytest.mark.parametrize("name", CODECS)
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    strategy, encode, decode = CODECS[name]
    value = data.draw(strategy)
    encoded = encode(value)
    assert decode(encoded) == value
    assert encode(decode(encoded)) == encoded


@pytest.mark.parametrize("name", CODECS)
@given(b=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_decode_error(name: str, b: bytes) -> None:
    _, encode, decode = CODECS[name]
    assert_canonical_or_rejected(encode, decode, b)


@pytest.mark.parametrize("name", CODECS)
@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_mutated_encodings_raise_only_decode_error(name: str, data: st.DataObject) -> None:
    strategy, encode, decode = CODECS[name]
    encoded = encode(data.draw(strategy))
    i = data.draw(st.integers(0, len(encoded) - 1))
    mutations = {
        "truncate": encoded[:i],
        "flip": encoded[:i] + bytes([encoded[i] ^ data.draw(st.integers(1, 255))]) + encoded[i + 1 :],
        "append": encoded + data.draw(st.binary(min_size=1, max_size=16)),
        "insert": encoded[:i] + data.draw(st.binary(min_size=1, max_size=4)) + encoded[i:],
        "delete": encoded[:i] + encoded[i + 1 :],
    }
    for mutated in mutations.values():
        assert_canonical_or_rejected(encode, decode, mutated)


@pytest.mark.parametrize("name", CODECS)
@given(data=st.data())
def test_encoding_is_deterministic(name: str, data: st.DataObject) -> None:
    strategy, encode, decode = CODECS[name]
    value = data.draw(strategy)
    twin = decode(encode(value))  # an equal value built separately
    assert twin is not value
    assert encode(value) == encode(value) == encode(twin)


@pytest.mark.parametrize(
    ("decode", "b"),
    [
        # bools other than 0/1 and unknown time in force
        (codec.decode_order, codec.encode_order(ORDER)[:24] + b"\x02" + codec.encode_order(ORDER)[25:]),
        (codec.decode_order, codec.encode_order(ORDER)[:41] + b"\x04" + codec.encode_order(ORDER)[42:]),
        (codec.decode_order, codec.encode_order(ORDER)[:42] + b"\xff" + codec.encode_order(ORDER)[43:]),
        (codec.decode_order_status, b"\x00\x02"),
        # non-minimal, overlong and out-of-range varints
        (codec.decode_account, b"\x80\x00\x00\x00\x00"),
        (codec.decode_position, b"\x00\x81\x00\x00"),
        (codec.decode_account, b"\x00" + b"\xff" * 9 + b"\x02" + b"\x00\x00"),  # withdraw_nonce 2**64 + ...
        (codec.decode_account, b"\x00" + b"\xff" * 10 + b"\x01" + b"\x00\x00"),  # 11 bytes for a u64
        (codec.decode_position, b"\xff" * 18 + b"\x04" + b"\x00\x00"),  # zigzag beyond i128
        # account markets unsorted or repeated
        (codec.decode_account, b"\x00\x00\x00\x02\x02\x01"),
        (codec.decode_account, b"\x00\x00\x00\x02\x01\x01"),
        # a withdrawal-branch node marked present but zero
        (codec.decode_globals, b"\x00\x00\x00\x01" + bytes(32)),
        # strings: too long, not UTF-8
        (codec.decode_market_params, PARAMS[:PARAMS_FIXED] + b"\x21" + b"a" * 33 + b"\x00\x00"),
        (codec.decode_market_params, PARAMS[:PARAMS_FIXED] + b"\x01\xff\x00\x00"),
        # transactions: empty, unknown kinds, trailing bytes, too many oracle reports
        (codec.decode_tx, b""),
        (codec.decode_tx, b"\x00"),
        (codec.decode_tx, b"\x0a" + bytes(24)),
        (codec.decode_tx, codec.encode_tx(Trade(0, 1, 2, 3)) + b"\x00"),
        (codec.decode_tx, b"\x06" + bytes(12) + b"\x21" + bytes(85 * 33)),
        # header of an unknown version
        (codec.decode_header, b"\x02" + bytes(228)),
        (codec.decode_header, b"\x00" + bytes(228)),
    ],
)
def test_non_canonical_bytes_rejected(decode: Callable[[bytes], Any], b: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(b)


def test_fixed_sizes() -> None:
    assert len(codec.encode_tx(Trade(0, 1, 2, 3))) == 25
    assert len(codec.encode_signed_order(SIGNED)) == 132
    assert len(codec.encode_withdrawal_leaf(WithdrawalLeaf(0, ADDR, 5))) == 36
    header = BatchHeader(0, bytes(32), bytes(32), 0, bytes(32), bytes(32), 0, 0, bytes(32), bytes(32), 0)
    assert len(codec.encode_header(header)) == 229
    assert codec.encode_header(header)[0] == codec.VERSION


def test_default_records_are_small() -> None:
    assert codec.encode_record(Account()) == b"\x00\x00\x00\x00"
    assert codec.encode_record(Position()) == b"\x00\x00\x00"
    assert codec.encode_record(OrderStatus()) == b"\x00\x00"
    assert codec.encode_record(Globals()) == b"\x00\x00\x00\x00"
    assert len(codec.encode_record(Account(collateral=-1_000_000_000, markets=(0, 1)))) == 5 + 1 + 1 + 3


def test_zigzag_signed_values() -> None:
    for value, encoded in [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-64, b"\x7f"), (64, b"\x80\x01")]:
        assert codec.encode_record(Position(lots=value)) == encoded + b"\x00\x00"
    extremes = Position(lots=-(2**127), funding_index=2**127 - 1, loss_index=0)
    assert codec.decode_position(codec.encode_record(extremes)) == extremes


def test_hashes() -> None:
    trade = Trade(3, 4, 5, 6)
    assert codec.tx_hash(trade) == keccak(codec.encode_tx(trade))
    assert codec.signed_order_hash(SIGNED) == keccak(codec.encode_signed_order(SIGNED))
    header = BatchHeader(1, b"\x01" * 32, b"\x02" * 32, 9, b"\x03" * 32, b"\x04" * 32, 1, 2, b"\x05" * 32, b"\x06" * 32, 7)
    assert codec.header_hash(header) == keccak(codec.encode_header(header))
    assert codec.header_hash(header) != codec.header_hash(replace(header, time=8))


# --- encoding refuses values outside their widths ------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        Trade(-1, 0, 1, 1),
        Trade(0, 2**32, 1, 1),
        Trade(0, 1, 2**64, 1),
        Deposit(-1),
        FundingTick(2**32),
        Liquidate(ADDR, 0, -5, 1),
        Liquidate(ADDR[:19], 0, 5, 1),
        Cancel(ADDR, bytes(31), SIG),
        CancelAll(ADDR, 2**64, SIG),
        Withdraw(ADDR, 1, 0, SIG[:64]),
        OraclePrice(0, 1, (OracleReport(0, 1, 1, SIG),) * (codec.MAX_ORACLE_REPORTS + 1)),
        OraclePrice(0, 1, (OracleReport(0, -1, 1, SIG),)),
    ],
)
def test_encode_tx_rejects_out_of_range(value: Any) -> None:
    with pytest.raises(InvalidAmount):
        codec.encode_tx(value)


@pytest.mark.parametrize(
    ("encode", "value"),
    [
        (codec.encode_order, replace(ORDER, market=2**32)),
        (codec.encode_order, replace(ORDER, price=-1)),
        (codec.encode_order, replace(ORDER, is_buy=1)),
        (codec.encode_order, replace(ORDER, tif=4)),
        (codec.encode_order, replace(ORDER, account=ADDR + b"\x00")),
        (codec.encode_signed_order, SignedOrder(ORDER, SIG + b"\x00")),
        (codec.encode_record, Account(collateral=2**127)),
        (codec.encode_record, Account(withdraw_nonce=-1)),
        (codec.encode_record, Account(markets=(2, 1))),
        (codec.encode_record, Account(markets=(1, 1))),
        (codec.encode_record, Position(lots=-(2**127) - 1)),
        (codec.encode_record, OrderStatus(filled=2**64)),
        (codec.encode_record, OrderStatus(cancelled=2)),
        (codec.encode_record, Globals(withdrawal_branch=(bytes(32),) * (WITHDRAWAL_TREE_DEPTH - 1))),
        (codec.encode_record, Config(oracle_signers=(ADDR[:10],), oracle_quorum=1, sequencer=ADDR)),
        (codec.encode_record, Market(params=replace(BTC_USD, symbol="x" * 33))),
        (codec.encode_record, Market(params=replace(BTC_USD, taker_fee_ppm=-1))),
        (codec.encode_header, BatchHeader(0, bytes(31), bytes(32), 0, bytes(32), bytes(32), 0, 0, bytes(32), bytes(32), 0)),
        (codec.encode_header, BatchHeader(0, bytes(32), bytes(32), 2**32, bytes(32), bytes(32), 0, 0, bytes(32), bytes(32), 0)),
    ],
)
def test_encode_record_rejects_out_of_range(encode: Callable[[Any], bytes], value: Any) -> None:
    with pytest.raises(InvalidAmount):
        encode(value)


def test_encode_rejects_non_records() -> None:
    with pytest.raises(TypeError):
        codec.encode_record(ORDER)
    with pytest.raises(TypeError):
        codec.encode_tx(ORDER)


# --- compressed batch data -----------------------------------------------------------------


@given(data=S.batch_data)
def test_batch_data_round_trip(data: BatchData) -> None:
    payload = codec.encode_batch_data(data)
    assert payload[0] == codec.VERSION == 1
    assert zlib.decompress(payload[1:]) == codec.encode_batch_body(data)
    assert codec.decode_batch_data(payload) == data
    assert codec.encode_batch_data(data) == payload


@given(data=S.batch_data)
def test_signed_order_encodings_are_the_encodings_of_the_decoded_orders(data: BatchData) -> None:
    body = codec.encode_batch_body(data)
    decoded = codec.decode_batch_body(body)
    assert codec.signed_order_encodings(body) == [codec.encode_signed_order(so) for so in decoded.orders]


@given(body=st.binary(max_size=600), level=st.integers(0, 9))
def test_compressed_arbitrary_body_raises_only_decode_error(body: bytes, level: int) -> None:
    payload = b"\x01" + zlib.compress(body, level)
    try:
        decoded = codec.decode_batch_data(payload)
    except DecodeError:
        return
    assert codec.encode_batch_body(decoded) == body
    assert codec.signed_order_encodings(body) == [codec.encode_signed_order(so) for so in decoded.orders]


@given(b=st.binary(max_size=600))
def test_arbitrary_payload_raises_only_decode_error(b: bytes) -> None:
    for payload in (b, b"\x01" + b):
        try:
            decoded = codec.decode_batch_data(payload)
        except DecodeError:
            continue
        assert codec.encode_batch_body(decoded) == codec.decompress_batch_data(payload)


def test_batch_data_version_checked() -> None:
    payload = codec.encode_batch_data(BatchData(orders=(SIGNED,), txs=(Trade(0, 0, 1, 1),)))
    for version in (0, 2, 255):
        with pytest.raises(DecodeError):
            codec.decode_batch_data(bytes([version]) + payload[1:])
    with pytest.raises(DecodeError):
        codec.decode_batch_data(b"")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x01",
        b"\x01" + random.Random(64).randbytes(64),  # junk (fixed: the same tests every run)
        b"\x01" + zlib.compress(codec.encode_batch_body(BatchData((SIGNED,), (FundingTick(0),))))[:-1],  # truncated
        b"\x01" + zlib.compress(codec.encode_batch_body(BatchData((), ()))) + b"\x00",  # junk after the stream
        b"\x01" + zlib.compress(codec.encode_batch_body(BatchData((), ())) + b"\x00"),  # junk after the body
        b"\x01" + zlib.compress(b"\x00\x00\x00\x01"),  # one order announced, none present
        b"\x01" + zlib.compress(b"\x00\x00\x00\x00\x00\x00\x00\x01"),  # one tx announced, none present
        b"\x01" + zlib.compress(codec.encode_batch_body(BatchData((), ())))[:-4] + b"\x00\x00\x00\x00",  # bad checksum
    ],
)
def test_malformed_payload_rejected(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode_batch_data(payload)


def test_batch_counts_bounded() -> None:
    data = BatchData(orders=(SIGNED,) * 3, txs=(Trade(0, 1, 1, 1),) * 5)
    payload = codec.encode_batch_data(data)
    assert codec.decode_batch_data(payload, max_txs=5, max_orders=3) == data
    with pytest.raises(DecodeError):
        codec.decode_batch_data(payload, max_txs=4)
    with pytest.raises(DecodeError):
        codec.decode_batch_data(payload, max_orders=2)
    # a count far beyond the data present is refused before anything is read
    with pytest.raises(DecodeError):
        codec.decode_batch_data(b"\x01" + zlib.compress(b"\x00\x02\x00\x00"))
    with pytest.raises(InvalidBatch):
        codec.encode_batch_data(BatchData(orders=(), txs=(FundingTick(0),) * (codec.MAX_BATCH_TXS + 1)))


def test_decompression_bound_is_exact() -> None:
    data = BatchData(orders=(SIGNED,) * 10, txs=(Trade(0, 1, 1, 1),) * 10)
    payload = codec.encode_batch_data(data)
    size = len(codec.encode_batch_body(data))
    assert codec.decode_batch_data(payload, max_decompressed=size) == data
    with pytest.raises(DecodeError):
        codec.decode_batch_data(payload, max_decompressed=size - 1)


def _zip_bomb(inflated: int) -> bytes:
    deflater = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [deflater.compress(chunk) for _ in range(inflated >> 20)]
    return b"\x01" + b"".join(parts) + deflater.flush()


def test_zip_bomb_rejected_with_bounded_memory() -> None:
    bomb = _zip_bomb(256 << 20)  # 256 MiB of zeros in ~250 KiB
    assert len(bomb) < 1 << 20
    with pytest.raises(DecodeError):
        codec.decode_batch_data(bomb, max_decompressed=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            codec.decode_batch_data(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the output is bounded, not the bomb: zlib's block buffer plus the joined result
    assert peak < 3 * codec.MAX_DECOMPRESSED_BYTES < 256 << 20


# --- the hot path --------------------------------------------------------------------------


def test_trade_batch_encoding_is_fast() -> None:
    """Guards the batch-posting hot path: 10,000 trades with 20,000 fresh signed orders
    (the worst case) encode + compress in ~85 ms here; 0.5 s leaves room for a loaded machine."""
    orders = tuple(
        SignedOrder(replace(ORDER, nonce=i, price=600_000 + i % 97, is_buy=i % 2 == 0), os.urandom(65))
        for i in range(20_000)
    )
    txs = tuple(Trade(2 * i, 2 * i + 1, 1 + i % 13, 600_000 + i % 89) for i in range(10_000))
    data = BatchData(orders=orders, txs=txs)
    best = min(_timed(lambda: codec.encode_batch_data(data)) for _ in range(3))
    assert best < 0.5, f"encode + compress took {best * 1000:.0f} ms"
    assert codec.decode_batch_data(codec.encode_batch_data(data)) == data


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
