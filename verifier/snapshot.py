"""Checkpoints of the rollup state as bytes: every record in its canonical encoding, compressed.

A snapshot is restored by decoding the records and bulk-building the Merkle tree, then checked
against the root it was taken at, so a corrupt checkpoint is never silently trusted.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any, Final

from contracts_spec import codec
from contracts_spec.errors import DecodeError
from contracts_spec.merkle import SparseMerkleTree
from contracts_spec.state import _DECODERS, State, state_key

VERSION: Final = 1
_HEAD: Final = struct.Struct(">BBI")  # kind, identity length, value length

# The state's own table of leaf kinds -> record decoders: a kind the spec adds is covered here too
RECORD_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = _DECODERS


class SnapshotError(Exception):
    """A checkpoint that does not decode or does not hash to its root."""


def encode_state(state: State) -> bytes:
    """Every record of a full state (flushed first, so default records are already gone)."""
    state.root()
    encode, pack = codec.encode_record, _HEAD.pack
    parts = [bytes((VERSION,))]
    for (kind, ident), record in state.records.items():
        value = encode(record)
        parts.append(pack(kind, len(ident), len(value)))
        parts.append(ident)
        parts.append(value)
    return zlib.compress(b"".join(parts), 1)


def decode_state(blob: bytes, root: bytes) -> State:
    """The full state a snapshot holds; SnapshotError unless it hashes to `root`."""
    try:
        raw = zlib.decompress(blob)
    except zlib.error as exc:
        raise SnapshotError(f"checkpoint does not decompress: {exc}") from exc
    if not raw or raw[0] != VERSION:
        raise SnapshotError("unknown checkpoint version")
    records: dict[tuple[int, bytes], Any] = {}
    items: list[tuple[bytes, bytes]] = []
    pos, end, unpack = 1, len(raw), _HEAD.unpack_from
    try:
        while pos < end:
            kind, ident_len, value_len = unpack(raw, pos)
            pos += _HEAD.size
            ident = raw[pos : pos + ident_len]
            pos += ident_len
            value = raw[pos : pos + value_len]
            pos += value_len
            records[(kind, ident)] = RECORD_DECODERS[kind](value)
            items.append((state_key(kind, ident), value))
    except (struct.error, KeyError, DecodeError) as exc:
        raise SnapshotError(f"checkpoint record does not decode: {exc}") from exc
    state = State(SparseMerkleTree.from_items(items))
    state.records = records
    # Verify the snapshot is the state it claims to be
    if state.tree.root() != root:
        raise SnapshotError("checkpoint does not hash to its root")
    return state
