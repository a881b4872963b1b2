"""EIP-712 typed data for every message a Rampart user or oracle signs.

Owns the domain, the type strings, the digests (an order's digest is its order id), signing
and signer recovery. Field encodings are precompiled `struct` layouts of 32-byte words: the
order digest sits on the intake hot path (tests/spec/test_eip712.py guards > 50,000/s).
"""

from __future__ import annotations

import struct
from typing import Any, Final

from contracts_spec import codec
from contracts_spec.crypto import address_of_private_key, keccak, recover_address, sign_digest
from contracts_spec.errors import InvalidAmount, WrongSigner
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

DOMAIN_NAME: Final = "Rampart"
DOMAIN_VERSION: Final = "1"

# (EIP-712 type, camelCase name) per struct: the single source of the type strings,
# the type hashes and the wallet-facing JSON.
DOMAIN_FIELDS: Final = (
    ("string", "name"),
    ("string", "version"),
    ("uint256", "chainId"),
    ("address", "verifyingContract"),
)
ORDER_FIELDS: Final = (
    ("address", "account"),
    ("uint32", "market"),
    ("bool", "isBuy"),
    ("uint64", "price"),
    ("uint64", "lots"),
    ("uint8", "tif"),
    ("bool", "reduceOnly"),
    ("uint64", "expiry"),
    ("uint64", "nonce"),
    ("uint64", "clientId"),
)
CANCEL_FIELDS: Final = (("address", "account"), ("bytes32", "orderId"))
CANCEL_ALL_FIELDS: Final = (("address", "account"), ("uint64", "nonceFloor"))
WITHDRAW_FIELDS: Final = (("address", "account"), ("uint64", "amount"), ("uint64", "nonce"))
ORACLE_REPORT_FIELDS: Final = (("uint32", "market"), ("uint64", "price"), ("uint64", "time"))
SUBSCRIBE_FIELDS: Final = (("address", "account"), ("uint64", "timestamp"))

Fields = tuple[tuple[str, str], ...]


def compute_type_string(name: str, fields: Fields) -> str:
    return f"{name}(" + ",".join(f"{kind} {field}" for kind, field in fields) + ")"


DOMAIN_TYPE: Final = compute_type_string("EIP712Domain", DOMAIN_FIELDS)
ORDER_TYPE: Final = compute_type_string("Order", ORDER_FIELDS)
CANCEL_TYPE: Final = compute_type_string("Cancel", CANCEL_FIELDS)
CANCEL_ALL_TYPE: Final = compute_type_string("CancelAll", CANCEL_ALL_FIELDS)
WITHDRAW_TYPE: Final = compute_type_string("Withdraw", WITHDRAW_FIELDS)
ORACLE_REPORT_TYPE: Final = compute_type_string("OracleReport", ORACLE_REPORT_FIELDS)
SUBSCRIBE_TYPE: Final = compute_type_string("Subscribe", SUBSCRIBE_FIELDS)

DOMAIN_TYPEHASH: Final = keccak(DOMAIN_TYPE.encode())
ORDER_TYPEHASH: Final = keccak(ORDER_TYPE.encode())
CANCEL_TYPEHASH: Final = keccak(CANCEL_TYPE.encode())
CANCEL_ALL_TYPEHASH: Final = keccak(CANCEL_ALL_TYPE.encode())
WITHDRAW_TYPEHASH: Final = keccak(WITHDRAW_TYPE.encode())
ORACLE_REPORT_TYPEHASH: Final = keccak(ORACLE_REPORT_TYPE.encode())
SUBSCRIBE_TYPEHASH: Final = keccak(SUBSCRIBE_TYPE.encode())

_EIP191_PREFIX: Final = b"\x19\x01"

# One 32-byte word per field, left-padded: address "12x20s", uint32 "28xI", bool/uint8 "31xB",
# uint64 "24xQ", bytes32 "32s". struct raises on out-of-range integers; "20s"/"32s" would pad
# or truncate silently, so byte lengths are checked by hand.
_ORDER_WORDS: Final = struct.Struct(">32s12x20s28xI31xB24xQ24xQ31xB31xB24xQ24xQ24xQ")
_CANCEL_WORDS: Final = struct.Struct(">32s12x20s32s")
_CANCEL_ALL_WORDS: Final = struct.Struct(">32s12x20s24xQ")
_WITHDRAW_WORDS: Final = struct.Struct(">32s12x20s24xQ24xQ")
_ORACLE_REPORT_WORDS: Final = struct.Struct(">32s28xI24xQ24xQ")
_SUBSCRIBE_WORDS: Final = struct.Struct(">32s12x20s24xQ")

_TIF_VALUES: Final = frozenset(int(t) for t in TimeInForce)


# --- domain --------------------------------------------------------------------------------

_domain_cache: dict[tuple[int, bytes], bytes] = {}


def compute_domain_separator(chain_id: int, verifying_contract: Address) -> Hash32:
    # Verify the domain fields fit their EIP-712 types
    if not isinstance(chain_id, int) or not (0 <= chain_id < 1 << 256):
        raise InvalidAmount("chainId must be a uint256")
    if len(verifying_contract) != 20:
        raise InvalidAmount("verifyingContract must be 20 bytes")
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes(verifying_contract)
    )


def domain_separator(preset: Preset) -> Hash32:
    """The preset's domain separator, computed once per (chain id, rollup address)."""
    key = (preset.chain_id, preset.rollup_address)
    separator = _domain_cache.get(key)
    if separator is None:
        separator = _domain_cache[key] = compute_domain_separator(*key)
    return separator


def compute_typed_digest(preset: Preset, struct_encoding: bytes) -> Hash32:
    """keccak(0x1901 || domainSeparator || hashStruct(message))."""
    return keccak(_EIP191_PREFIX + domain_separator(preset) + keccak(struct_encoding))


# --- struct encodings ----------------------------------------------------------------------


def _check_address(value: bytes, what: str) -> None:
    # Verify an address is 20 bytes: struct's "20s" would pad or truncate silently
    if not isinstance(value, bytes) or len(value) != 20:
        raise InvalidAmount(f"{what} must be 20 bytes")


def _pack(words: struct.Struct, what: str, *values: Any) -> bytes:
    try:
        return words.pack(*values)
    except struct.error as exc:  # an integer outside its uintN range, or not an integer
        raise InvalidAmount(f"{what}: field out of range: {exc}") from exc


def encode_order_struct(order: Order) -> bytes:
    """typeHash || encodeData(order): the preimage of hashStruct(order)."""
    _check_address(order.account, "order account")
    # Verify bools are bools and the time-in-force is known
    if order.is_buy.__class__ is not bool or order.reduce_only.__class__ is not bool:
        raise InvalidAmount("isBuy and reduceOnly must be bools")
    if order.tif not in _TIF_VALUES:
        raise InvalidAmount(f"unknown time in force {order.tif!r}")
    try:
        return _ORDER_WORDS.pack(
            ORDER_TYPEHASH,
            order.account,
            order.market,
            order.is_buy,
            order.price,
            order.lots,
            order.tif,
            order.reduce_only,
            order.expiry,
            order.nonce,
            order.client_id,
        )
    except struct.error as exc:
        raise InvalidAmount(f"order field out of range: {exc}") from exc


def encode_cancel_struct(account: Address, order_id: Hash32) -> bytes:
    _check_address(account, "cancel account")
    if not isinstance(order_id, bytes) or len(order_id) != 32:
        raise InvalidAmount("orderId must be 32 bytes")
    return _pack(_CANCEL_WORDS, "cancel", CANCEL_TYPEHASH, account, order_id)


def encode_cancel_all_struct(account: Address, nonce_floor: int) -> bytes:
    _check_address(account, "cancel-all account")
    return _pack(_CANCEL_ALL_WORDS, "cancel-all", CANCEL_ALL_TYPEHASH, account, nonce_floor)


def encode_withdraw_struct(account: Address, amount: int, nonce: int) -> bytes:
    _check_address(account, "withdraw account")
    return _pack(_WITHDRAW_WORDS, "withdraw", WITHDRAW_TYPEHASH, account, amount, nonce)


def encode_oracle_report_struct(market: int, price: int, time: int) -> bytes:
    return _pack(_ORACLE_REPORT_WORDS, "oracle report", ORACLE_REPORT_TYPEHASH, market, price, time)


def encode_subscribe_struct(account: Address, timestamp: int) -> bytes:
    _check_address(account, "subscribe account")
    return _pack(_SUBSCRIBE_WORDS, "subscribe", SUBSCRIBE_TYPEHASH, account, timestamp)


# --- digests -------------------------------------------------------------------------------


def order_digest(preset: Preset, order: Order) -> Hash32:
    """The order's EIP-712 digest, which is its order id everywhere. Intake hot path."""
    return keccak(_EIP191_PREFIX + domain_separator(preset) + keccak(encode_order_struct(order)))


def order_digest_of_encoding(preset: Preset, encoded: bytes) -> Hash32:
    """`order_digest` of the order `encoded` holds, a canonical signed-order encoding (one that
    `codec.decode_signed_order` accepts), read straight off the bytes: the codec's fields are the
    EIP-712 message's, in its order. A verifier's hot path: no Order is built."""
    words = _ORDER_WORDS.pack(ORDER_TYPEHASH, *codec.ORDER_FIELDS.unpack_from(encoded))
    return keccak(_EIP191_PREFIX + domain_separator(preset) + keccak(words))


def cancel_digest(preset: Preset, account: Address, order_id: Hash32) -> Hash32:
    return compute_typed_digest(preset, encode_cancel_struct(account, order_id))


def cancel_all_digest(preset: Preset, account: Address, nonce_floor: int) -> Hash32:
    return compute_typed_digest(preset, encode_cancel_all_struct(account, nonce_floor))


def withdraw_digest(preset: Preset, account: Address, amount: int, nonce: int) -> Hash32:
    return compute_typed_digest(preset, encode_withdraw_struct(account, amount, nonce))


def oracle_report_digest(preset: Preset, market: int, price: int, time: int) -> Hash32:
    return compute_typed_digest(preset, encode_oracle_report_struct(market, price, time))


def subscribe_digest(preset: Preset, account: Address, timestamp: int) -> Hash32:
    return compute_typed_digest(preset, encode_subscribe_struct(account, timestamp))


# --- signing -------------------------------------------------------------------------------
# Signing helpers do not check that the key owns the message's account: tests build forged
# messages this way, and the rules reject them on recovery.


def sign_order(preset: Preset, order: Order, private_key: bytes) -> SignedOrder:
    return SignedOrder(order=order, signature=sign_digest(private_key, order_digest(preset, order)))


def sign_cancel(preset: Preset, account_key: bytes, order_id: Hash32) -> Cancel:
    account = address_of_private_key(account_key)
    signature = sign_digest(account_key, cancel_digest(preset, account, order_id))
    return Cancel(account=account, order_id=order_id, signature=signature)


def sign_cancel_all(preset: Preset, account_key: bytes, nonce_floor: int) -> CancelAll:
    account = address_of_private_key(account_key)
    signature = sign_digest(account_key, cancel_all_digest(preset, account, nonce_floor))
    return CancelAll(account=account, nonce_floor=nonce_floor, signature=signature)


def sign_withdraw(preset: Preset, account_key: bytes, amount: int, nonce: int) -> Withdraw:
    account = address_of_private_key(account_key)
    signature = sign_digest(account_key, withdraw_digest(preset, account, amount, nonce))
    return Withdraw(account=account, amount=Atoms(amount), nonce=nonce, signature=signature)


def sign_oracle_report(preset: Preset, key: bytes, market: int, price: int, time: int) -> OracleReport:
    signature = sign_digest(key, oracle_report_digest(preset, market, price, time))
    return OracleReport(market=market, price=Ticks(price), time=Seconds(time), signature=signature)


def sign_subscribe(preset: Preset, account_key: bytes, timestamp: int) -> bytes:
    """A signature authenticating a WebSocket subscription or private read by its account."""
    account = address_of_private_key(account_key)
    return sign_digest(account_key, subscribe_digest(preset, account, timestamp))


# --- recovery ------------------------------------------------------------------------------
# recover_address raises BadSignature on malformed or high-s signatures: no malleability.


def recover_order_signer(preset: Preset, signed_order: SignedOrder) -> Address:
    return recover_address(order_digest(preset, signed_order.order), signed_order.signature)


def recover_cancel_signer(preset: Preset, cancel: Cancel) -> Address:
    return recover_address(cancel_digest(preset, cancel.account, cancel.order_id), cancel.signature)


def recover_cancel_all_signer(preset: Preset, cancel_all: CancelAll) -> Address:
    digest = cancel_all_digest(preset, cancel_all.account, cancel_all.nonce_floor)
    return recover_address(digest, cancel_all.signature)


def recover_withdraw_signer(preset: Preset, withdraw: Withdraw) -> Address:
    digest = withdraw_digest(preset, withdraw.account, withdraw.amount, withdraw.nonce)
    return recover_address(digest, withdraw.signature)


def recover_oracle_report_signer(preset: Preset, report: OracleReport) -> Address:
    digest = oracle_report_digest(preset, report.market, report.price, report.time)
    return recover_address(digest, report.signature)


def recover_subscribe_signer(preset: Preset, account: Address, timestamp: int, signature: bytes) -> Address:
    return recover_address(subscribe_digest(preset, account, timestamp), signature)


def verify_signed_order(preset: Preset, signed_order: SignedOrder) -> Hash32:
    """Check an order was signed by its account; return its id (one digest, for intake)."""
    digest = order_digest(preset, signed_order.order)
    # Verify the signature recovers the order's own account
    if recover_address(digest, signed_order.signature) != signed_order.order.account:
        raise WrongSigner("order not signed by its account")
    return digest


# --- typed data for wallets ----------------------------------------------------------------


def to_checksum_address(address: Address) -> str:
    """EIP-55 mixed-case hex: what wallets display and expect."""
    _check_address(address, "address")
    lower = address.hex()
    nibbles = keccak(lower.encode()).hex()
    return "0x" + "".join(c.upper() if int(n, 16) >= 8 else c for c, n in zip(lower, nibbles[:40], strict=True))


def _typed_data(preset: Preset, primary: str, fields: Fields, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [{"name": name, "type": kind} for kind, name in DOMAIN_FIELDS],
            primary: [{"name": name, "type": kind} for kind, name in fields],
        },
        "primaryType": primary,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": preset.chain_id,
            "verifyingContract": to_checksum_address(preset.rollup_address),
        },
        "message": message,
    }


def typed_data_order(preset: Preset, order: Order) -> dict[str, Any]:
    """The full EIP-712 structure (types, primaryType, domain, message) for wallets and eth-account."""
    encode_order_struct(order)  # the same range checks as the digest
    return _typed_data(preset, "Order", ORDER_FIELDS, {
        "account": to_checksum_address(order.account),
        "market": order.market,
        "isBuy": order.is_buy,
        "price": order.price,
        "lots": order.lots,
        "tif": int(order.tif),
        "reduceOnly": order.reduce_only,
        "expiry": order.expiry,
        "nonce": order.nonce,
        "clientId": order.client_id,
    })


def typed_data_cancel(preset: Preset, account: Address, order_id: Hash32) -> dict[str, Any]:
    encode_cancel_struct(account, order_id)
    return _typed_data(preset, "Cancel", CANCEL_FIELDS, {
        "account": to_checksum_address(account),
        "orderId": "0x" + order_id.hex(),
    })


def typed_data_cancel_all(preset: Preset, account: Address, nonce_floor: int) -> dict[str, Any]:
    encode_cancel_all_struct(account, nonce_floor)
    return _typed_data(preset, "CancelAll", CANCEL_ALL_FIELDS, {
        "account": to_checksum_address(account),
        "nonceFloor": nonce_floor,
    })


def typed_data_withdraw(preset: Preset, account: Address, amount: int, nonce: int) -> dict[str, Any]:
    encode_withdraw_struct(account, amount, nonce)
    return _typed_data(preset, "Withdraw", WITHDRAW_FIELDS, {
        "account": to_checksum_address(account),
        "amount": amount,
        "nonce": nonce,
    })


def typed_data_oracle_report(preset: Preset, market: int, price: int, time: int) -> dict[str, Any]:
    encode_oracle_report_struct(market, price, time)
    return _typed_data(preset, "OracleReport", ORACLE_REPORT_FIELDS, {
        "market": market,
        "price": price,
        "time": time,
    })


def typed_data_subscribe(preset: Preset, account: Address, timestamp: int) -> dict[str, Any]:
    encode_subscribe_struct(account, timestamp)
    return _typed_data(preset, "Subscribe", SUBSCRIBE_FIELDS, {
        "account": to_checksum_address(account),
        "timestamp": timestamp,
    })
