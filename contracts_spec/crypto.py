"""Hashing and secp256k1: keccak256 and public-key recovery, the two primitives of the spec.

keccak256 uses safe-pysha3 directly (~1 µs a hash here, against ~8 µs through eth-hash's
default backend); recovery uses coincurve (libsecp256k1, ~20,000 recoveries/s against
py-ecc's ~150/s). Both are pure functions of their inputs.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence
from typing import Any, Final

import coincurve

from contracts_spec.errors import BadSignature

try:  # the fast path: C keccak from safe-pysha3
    from sha3 import keccak_256 as _keccak_256

    def keccak(data: bytes) -> bytes:
        return _keccak_256(data).digest()

except ImportError:  # pragma: no cover - fallback keeps the spec runnable without it
    from eth_hash.auto import keccak as _eth_keccak

    def keccak(data: bytes) -> bytes:
        return _eth_keccak(data)


SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N: Final = SECP256K1_N // 2
SIGNATURE_LENGTH: Final = 65  # r (32) || s (32) || v (1), v in {27, 28} or {0, 1}
_ZERO: Final = bytes(32)
_N_BYTES: Final = SECP256K1_N.to_bytes(32, "big")
_HALF_N_BYTES: Final = SECP256K1_HALF_N.to_bytes(32, "big")


def address_of_public_key(public_key: coincurve.PublicKey) -> bytes:
    """`address_of_key_bytes` of a coincurve key."""
    return address_of_key_bytes(public_key.format(compressed=False)[1:])


def address_of_key_bytes(uncompressed: bytes) -> bytes:
    """Ethereum address: the last 20 bytes of keccak256 of the uncompressed key (64 bytes, no prefix)."""
    return keccak(uncompressed)[12:]


def recover_address(digest: bytes, signature: bytes) -> bytes:
    """The address that signed `digest`; raises BadSignature on malformed or high-s input."""
    return address_of_key_bytes(recover_public_key(digest, signature))


def recover_public_key(digest: bytes, signature: bytes) -> bytes:
    """The public key (uncompressed, 64 bytes, no prefix) that signed `digest`; raises
    BadSignature on malformed or high-s input."""
    v = _recovery_id(digest, signature)
    public_key = _recover_public_key(digest, signature, v)
    if public_key is None:
        raise BadSignature("signature does not recover a key")
    return public_key


def _recovery_id(digest: bytes, signature: bytes) -> int:
    # Verify the signature is 65 bytes
    if len(signature) != SIGNATURE_LENGTH or len(digest) != 32:
        raise BadSignature("signature must be 65 bytes over a 32-byte digest")
    # Verify r, s are in range and s is low (no malleability); equal-length big-endian bytes
    # compare as the numbers they encode
    if not (_ZERO < signature[0:32] < _N_BYTES) or not (_ZERO < signature[32:64] <= _HALF_N_BYTES):
        raise BadSignature("signature r/s out of range or high-s")
    v = signature[64]
    if v >= 27:
        v -= 27
    # Verify the recovery id
    if v not in (0, 1):
        raise BadSignature("bad recovery id")
    return v


def _recover_public_key_coincurve(digest: bytes, signature: bytes, v: int) -> bytes | None:
    """The uncompressed public key (64 bytes, no prefix) that signed `digest`, None if none does."""
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(signature[0:64] + bytes((v,)), digest, hasher=None)
    except Exception:  # coincurve raises ValueError/Exception on unrecoverable input
        return None
    return public_key.format(compressed=False)[1:]


# The same libsecp256k1 calls without coincurve's objects and checks: 506k instead of 525k instructions
# a recovery (valgrind --tool=lackey), 3.6% of the verifier's largest cost.
try:
    from coincurve._libsecp256k1 import ffi as _ffi
    from coincurve._libsecp256k1 import lib as _lib
    from coincurve.context import GLOBAL_CONTEXT as _CONTEXT

    _ctx, _new, _buffer = _CONTEXT.ctx, _ffi.new, _ffi.buffer
    _parse = _lib.secp256k1_ecdsa_recoverable_signature_parse_compact
    _recover = _lib.secp256k1_ecdsa_recover
    _serialize = _lib.secp256k1_ec_pubkey_serialize
    _UNCOMPRESSED = _lib.SECP256K1_EC_UNCOMPRESSED
    _parse_key = _lib.secp256k1_ec_pubkey_parse
    _create = _lib.secp256k1_ec_pubkey_create
    _tweak_mul = _lib.secp256k1_ec_pubkey_tweak_mul
    _COMPRESSED = _lib.SECP256K1_EC_COMPRESSED
    _combine_points = _lib.secp256k1_ec_pubkey_combine

    def _recover_public_key(digest: bytes, signature: bytes, v: int) -> bytes | None:
        """`_recover_public_key_coincurve`, calling libsecp256k1 through coincurve's bindings."""
        recoverable = _new("secp256k1_ecdsa_recoverable_signature *")
        point = _new("secp256k1_pubkey *")
        if not _parse(_ctx, recoverable, signature, v) or not _recover(_ctx, point, recoverable, digest):
            return None
        out, size = _new("unsigned char[65]"), _new("size_t *", 65)
        _serialize(_ctx, out, size, point, _UNCOMPRESSED)
        return _buffer(out)[1:]

    def _combine(points: list[Any]) -> Any:
        """The sum of `points` (secp256k1_pubkey pointers), None for the point at infinity."""
        out = _new("secp256k1_pubkey *")
        return out if _combine_points(_ctx, out, points, len(points)) else None

    def _compressed(point: Any) -> bytes:
        out, size = _new("unsigned char[33]"), _new("size_t *", 33)
        _serialize(_ctx, out, size, point, _COMPRESSED)
        return bytes(_buffer(out))

except (ImportError, AttributeError):  # pragma: no cover - coincurve without these internals
    _recover_public_key = _recover_public_key_coincurve
    _LIBSECP256K1 = False
else:
    _LIBSECP256K1 = True


# --- many recoveries at once ------------------------------------------------------------------
# Recovering (r, s, v) over z gives Q = r^-1 (s R - z G), R the point with x = r and y's parity v,
# so it gives the key Q exactly when R = (z/s) G + (r/s) Q. A random combination of those equations
#     sum a_i R_i  =  (sum a_i z_i/s_i) G  +  sum over keys Q of (sum over Q's signatures of a_i r_i/s_i) Q
# holds when each does; when one does not, it holds for at most one value of that a_i (the group
# has prime order n), so with each a_i drawn from 2**81 values below n, a chance of 2**-81. The
# left side costs ~27 point additions a signature (a_i has 27 bits set: one in each block of 8),
# against a scalar multiplication each to recover; the right side one multiplication a key.
_BLOCKS: Final = 27
_BLOCK_BITS: Final = 8
_LOW_BITS: Final = bytes(b & (_BLOCK_BITS - 1) for b in range(256))  # a seed byte -> its bit in the block
_ONE_BIT: Final = bytes(1 << (b & (_BLOCK_BITS - 1)) for b in range(256))  # ... as the block's value
_BLOCK_STARTS: Final = range(0, _BLOCKS * _BLOCK_BITS, _BLOCK_BITS)
_PARITY_PREFIX: Final = (b"\x02", b"\x03")  # compressed encoding of the point with x = r, y even or odd


def is_each_signed_by(items: Sequence[tuple[bytes, bytes, bytes]], seed: bytes) -> bool:
    """Whether `recover_public_key(digest, signature) == public_key` for every (digest, signature,
    public_key) of `items`, checked together: about half the work of recovering each when keys repeat
    (bench/verifier.py). Always True when each holds; when one does not, False but for a chance of
    2**-81 a call, provided `seed` (32 random bytes) is unknown to whoever made the signatures. Which
    one failed it does not say: recover them one by one for that."""
    if len(seed) != 32:
        raise ValueError("seed must be 32 bytes")
    try:
        return _is_each_signed_by(items, seed)
    except BadSignature:  # malformed: recovery would refuse it
        return False


def _is_each_signed_by_recovering(items: Sequence[tuple[bytes, bytes, bytes]], seed: bytes) -> bool:
    """The definition, one recovery at a time: where coincurve's internals are not at hand."""
    return all(recover_public_key(digest, signature) == key for digest, signature, key in items)


def _is_each_signed_by_combining(items: Sequence[tuple[bytes, bytes, bytes]], seed: bytes) -> bool:
    """The combination above, through libsecp256k1's public API: `ec_pubkey_combine` sums points
    (Jacobian additions, one inversion a call), so the left side is Horner's rule over the 216 bit
    positions, each step one call adding the signatures with that bit set to twice the sum so far."""
    n = len(items)
    positions = _BLOCKS * _BLOCK_BITS
    with_bit: list[list[Any]] = [[] for _ in range(positions)]
    appenders = [members.append for members in with_bit]
    randomness = hashlib.shake_256(seed).digest(_BLOCKS * n)
    coefficients, rs, ss, zs = [], [], [], []
    for i, (digest, signature, _key) in enumerate(items):
        v = _recovery_id(digest, signature)
        point = _new("secp256k1_pubkey *")
        # Verify r is the x of a point of the curve (recovery needs it too)
        if not _parse_key(_ctx, point, _PARITY_PREFIX[v] + signature[0:32], 33):
            return False
        block = randomness[i * _BLOCKS : (i + 1) * _BLOCKS]
        for position in map(operator.add, _BLOCK_STARTS, block.translate(_LOW_BITS)):
            appenders[position](point)
        coefficients.append(int.from_bytes(block.translate(_ONE_BIT), "little"))
        rs.append(int.from_bytes(signature[0:32], "big"))
        ss.append(int.from_bytes(signature[32:64], "big"))
        zs.append(int.from_bytes(digest, "big"))
    g_scalar = 0
    key_scalars: dict[bytes, int] = {}
    for a, r, s_inverse, z, (_digest, _signature, key) in zip(coefficients, rs, _inverses(ss), zs, items, strict=True):
        t = a * s_inverse % SECP256K1_N
        g_scalar += t * z
        key_scalars[key] = key_scalars.get(key, 0) + t * r
    left = None
    for members in reversed(with_bit):
        if left is not None:
            members = [left, left, *members]
        if members:
            left = _combine(members)
    terms = []
    if g_scalar % SECP256K1_N:
        term = _new("secp256k1_pubkey *")
        _create(_ctx, term, (g_scalar % SECP256K1_N).to_bytes(32, "big"))
        terms.append(term)
    for key, scalar in key_scalars.items():
        term = _new("secp256k1_pubkey *")
        # Verify each key is a point of the curve: no signature recovers anything else
        if len(key) != 64 or not _parse_key(_ctx, term, b"\x04" + key, 65):
            return False
        if scalar % SECP256K1_N:
            _tweak_mul(_ctx, term, (scalar % SECP256K1_N).to_bytes(32, "big"))
            terms.append(term)
    right = _combine(terms) if terms else None
    if left is None or right is None:
        return left is right
    return _compressed(left) == _compressed(right)


_is_each_signed_by = _is_each_signed_by_combining if _LIBSECP256K1 else _is_each_signed_by_recovering


def _inverses(values: list[int]) -> list[int]:
    """Each value's inverse mod n (none is 0 mod n), with one modular inversion in all (Montgomery's
    trick): Python's pow(x, -1, n) costs ~25 us a call here."""
    prefix, running = [], 1
    for x in values:
        prefix.append(running)
        running = running * x % SECP256K1_N
    inverse = pow(running, -1, SECP256K1_N)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inverse * prefix[i] % SECP256K1_N
        inverse = inverse * values[i] % SECP256K1_N
    return out


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """Sign a 32-byte digest: r || s || v with v in {27, 28}, low s (libsecp256k1 normalises)."""
    raw = coincurve.PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return raw[0:64] + bytes([raw[64] + 27])


def address_of_private_key(private_key: bytes) -> bytes:
    return address_of_public_key(coincurve.PrivateKey(private_key).public_key)


def is_private_key(key: bytes) -> bool:
    """Whether `key` is a secp256k1 private key: 32 bytes, a non-zero scalar below the curve order."""
    return len(key) == 32 and 0 < int.from_bytes(key, "big") < SECP256K1_N


def private_key_from_seed(seed: bytes) -> bytes:
    """A deterministic private key from a seed (for tests, demos and dev genesis only)."""
    candidate = keccak(b"rampart-dev-key" + seed)
    while not is_private_key(candidate):
        candidate = keccak(candidate)
    return candidate
