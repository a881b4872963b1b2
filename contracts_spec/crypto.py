"""Hashing and secp256k1: keccak256 and public-key recovery, the two primitives of the spec.

keccak256 uses safe-pysha3 directly (~1 µs a hash here, against ~8 µs through eth-hash's
default backend); recovery uses coincurve (libsecp256k1, ~20,000 recoveries/s against
py-ecc's ~150/s). Both are pure functions of their inputs.
"""

from __future__ import annotations

from typing import Final

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
    public_key = _recover_public_key(digest, signature, v)
    if public_key is None:
        raise BadSignature("signature does not recover a key")
    return address_of_key_bytes(public_key)


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

    def _recover_public_key(digest: bytes, signature: bytes, v: int) -> bytes | None:
        """`_recover_public_key_coincurve`, calling libsecp256k1 through coincurve's bindings."""
        recoverable = _new("secp256k1_ecdsa_recoverable_signature *")
        point = _new("secp256k1_pubkey *")
        if not _parse(_ctx, recoverable, signature, v) or not _recover(_ctx, point, recoverable, digest):
            return None
        out, size = _new("unsigned char[65]"), _new("size_t *", 65)
        _serialize(_ctx, out, size, point, _UNCOMPRESSED)
        return _buffer(out)[1:]

except (ImportError, AttributeError):  # pragma: no cover - coincurve without these internals
    _recover_public_key = _recover_public_key_coincurve


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
