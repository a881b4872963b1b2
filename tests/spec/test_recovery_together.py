"""`crypto.is_each_signed_by`: many signatures checked against the keys they should recover, all at
once, answers what recovering each would, for every kind of wrong signature and on random mixes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts_spec import crypto
from contracts_spec.crypto import (
    SECP256K1_N,
    is_each_signed_by,
    private_key_from_seed,
    recover_public_key,
    sign_digest,
)
from contracts_spec.errors import BadSignature

KEYS = [private_key_from_seed(bytes([i])) for i in range(5)]
PUBLIC = [crypto.coincurve.PrivateKey(k).public_key.format(compressed=False)[1:] for k in KEYS]
SEED = bytes(range(32))
Item = tuple[bytes, bytes, bytes]


def signed(i: int, key: int | None = None) -> Item:
    """The i-th message, signed with key i % 5 (or `key`), and the key it should recover."""
    digest = crypto.keccak(i.to_bytes(8, "big"))
    k = i % len(KEYS) if key is None else key
    return digest, sign_digest(KEYS[k], digest), PUBLIC[k]


GOOD = [signed(i) for i in range(120)]


def recovers_each(items: list[Item]) -> bool:
    """The definition."""
    try:
        return all(recover_public_key(d, s) == k for d, s, k in items)
    except BadSignature:
        return False


def no_point_r() -> bytes:
    """An r that is no curve point's x: no signature with it recovers."""
    r = next(x for x in range(1, 100)
             if crypto._recover_public_key_coincurve(bytes(32), x.to_bytes(32, "big") + (1).to_bytes(32, "big"), 0) is None)
    return r.to_bytes(32, "big")


def flip_v(s: bytes) -> bytes:
    return s[:64] + bytes([55 - s[64]])


# each: (digest, signature, key) -> a wrong one; recovering it fails or gives another key
TAMPER = {
    "other v": lambda d, s, k: (d, flip_v(s), k),
    "other key": lambda d, s, k: (d, s, PUBLIC[(PUBLIC.index(k) + 1) % len(PUBLIC)]),
    "other digest": lambda d, s, k: (bytes([d[0] ^ 1]) + d[1:], s, k),
    "other r": lambda d, s, k: (d, bytes([s[0] ^ 1]) + s[1:], k),
    "r on no point": lambda d, s, k: (d, no_point_r() + s[32:], k),
    "high s": lambda d, s, k: (d, s[:32] + (SECP256K1_N - int.from_bytes(s[32:64], "big")).to_bytes(32, "big") + flip_v(s)[64:], k),
    "r = 0": lambda d, s, k: (d, bytes(32) + s[32:], k),
    "s = 0": lambda d, s, k: (d, s[:32] + bytes(32) + s[64:], k),
    "v = 2": lambda d, s, k: (d, s[:64] + b"\x02", k),
    "64 bytes": lambda d, s, k: (d, s[:64], k),
    "short digest": lambda d, s, k: (d[:31], s, k),
    "key off the curve": lambda d, s, k: (d, s, bytes(64)),
    "short key": lambda d, s, k: (d, s, k[:63]),
}


@pytest.mark.parametrize("check", [crypto._is_each_signed_by_combining, crypto._is_each_signed_by_recovering],
                         ids=["combining", "recovering"])
def test_signatures_that_recover_their_keys_pass_together(check) -> None:  # type: ignore[no-untyped-def]
    assert check(GOOD, SEED)
    assert check(GOOD[:1], SEED) and check([], SEED)
    assert check(GOOD + GOOD[:7], SEED)  # the same signature twice
    assert is_each_signed_by([signed(i, key=3) for i in range(80)], SEED)  # one key for all
    raw_v = [(d, s[:64] + bytes([s[64] - 27]), k) for d, s, k in GOOD]  # v as 0 or 1: recovery takes both
    assert recovers_each(raw_v) and check(raw_v, SEED)


@pytest.mark.parametrize("where", [0, 57, 119])
@pytest.mark.parametrize("how", list(TAMPER))
def test_one_wrong_signature_fails_them_all(how: str, where: int) -> None:
    items = list(GOOD)
    items[where] = TAMPER[how](*items[where])
    assert not recovers_each(items)
    assert not is_each_signed_by(items, SEED)
    assert not is_each_signed_by(items, bytes(32))


def test_the_seed_is_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        is_each_signed_by(GOOD, b"short")


def test_two_wrongs_that_cancel_with_equal_coefficients_still_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two forgeries whose errors cancel when summed plainly: a combination with equal coefficients
    passes them (shown by forcing them), random ones do not."""
    d1, s1, k = GOOD[0]
    d2, s2, _ = GOOD[5]  # same key
    # Swapping the two digests leaves sum z_i/s_i changed, so build the cancelling pair directly:
    # the same signature over two digests whose z/s terms sum to the originals' sum.
    z1, z2 = int.from_bytes(d1, "big"), int.from_bytes(d2, "big")
    delta = 12345
    items = [((z1 + delta).to_bytes(32, "big"), s1, k), (d2, s2, k)]
    s1_int, s2_int = int.from_bytes(s1[32:64], "big"), int.from_bytes(s2[32:64], "big")
    # choose z2' so that (z1+delta)/s1 + z2'/s2 = z1/s1 + z2/s2
    z2_new = (z2 - delta * s2_int * pow(s1_int, -1, SECP256K1_N)) % SECP256K1_N
    items[1] = (z2_new.to_bytes(32, "big"), s2, k)
    assert not recovers_each(items)
    for seed in (SEED, bytes(32), b"\x01" * 32):
        assert not is_each_signed_by(items, seed)

    class Zeros:
        def __init__(self, _seed: bytes) -> None: ...
        def digest(self, n: int) -> bytes:
            return bytes(n)

    monkeypatch.setattr(crypto.hashlib, "shake_256", Zeros)
    assert is_each_signed_by(items, SEED)  # every coefficient the same: the errors cancel


@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.sampled_from([None, *TAMPER])), min_size=0, max_size=40),
    st.binary(min_size=32, max_size=32),
)
@settings(max_examples=150, deadline=None)
def test_together_is_each_recovered(picks: list[tuple[int, str | None]], seed: bytes) -> None:
    items = [GOOD[i] if how is None else TAMPER[how](*GOOD[i]) for i, how in picks]
    assert is_each_signed_by(items, seed) == recovers_each(items)
