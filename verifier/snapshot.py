"""Checkpoints of the rollup state as bytes: records in their canonical encoding, compressed.

A full checkpoint holds every record; a delta holds only the records written since the checkpoint
it names as its base (an empty value: the record went back to its default, so the tree dropped
it). Writing every record at every checkpoint cost time in proportion to the whole state, which
grows with every filled order: ~0.9 s at 300,000 records (150,000 trades in), ~2.9 s at
1,000,000 (bench/checkpoint.py), every 16th batch. The node writes deltas until they add up to
as many records as the full they build on, then a full again, so the cost per record written
stays bounded however big the state grows, and a restore reads at most twice the state.

A checkpoint is restored by decoding the full, applying its deltas in order, and bulk-building
the Merkle tree, then checked against the root the last one was taken at, so a corrupt or
mismatched chain is never silently trusted.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from contracts_spec import codec
from contracts_spec.errors import DecodeError
from contracts_spec.merkle import SparseMerkleTree
from contracts_spec.state import _DECODERS, State, state_key

VERSION: Final = 1  # a full checkpoint
DELTA: Final = 2  # a delta: the base checkpoint's batch id (8 bytes, big-endian), then records
_HEAD: Final = struct.Struct(">BBI")  # kind, identity length, value length
_BASE: Final = struct.Struct(">q")

# The state's own table of leaf kinds -> record decoders: a kind the spec adds is covered here too
RECORD_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = _DECODERS


class SnapshotError(Exception):
    """A checkpoint that does not decode or does not hash to its root."""


def encode_state(state: State) -> bytes:
    """Every record of a full state (flushed first, so default records are already gone)."""
    state.root()
    return _encode(bytes((VERSION,)), state.records.items())


def encode_delta(state: State, changed: Iterable[tuple[int, bytes]], base: int) -> bytes:
    """The records at `changed` slots as `state` holds them now, over the checkpoint at batch `base`;
    a slot no longer held (its kind's default) is written with an empty value."""
    state.root()
    records = state.records
    return _encode(bytes((DELTA,)) + _BASE.pack(base), ((slot, records.get(slot)) for slot in changed))


def _encode(head: bytes, items: Iterable[tuple[tuple[int, bytes], Any]]) -> bytes:
    encode, pack = codec.encode_record, _HEAD.pack
    parts = [head]
    for (kind, ident), record in items:
        value = b"" if record is None else encode(record)
        parts.append(pack(kind, len(ident), len(value)))
        parts.append(ident)
        parts.append(value)
    return zlib.compress(b"".join(parts), 1)


def delta_base(blob: bytes) -> int | None:
    """The base checkpoint's batch id of a delta, None for a full checkpoint (inflating only the head)."""
    try:
        head = zlib.decompressobj().decompress(blob, 1 + _BASE.size)
    except zlib.error as exc:
        raise SnapshotError(f"checkpoint does not decompress: {exc}") from exc
    if head[:1] == bytes((VERSION,)):
        return None
    if len(head) != 1 + _BASE.size or head[0] != DELTA:
        raise SnapshotError("unknown checkpoint version")
    return int(_BASE.unpack_from(head, 1)[0])


def decode_state(blobs: Sequence[bytes], root: bytes) -> State:
    """The full state a chain of checkpoints holds: a full blob, then the deltas over it, oldest
    first. SnapshotError unless it hashes to `root` (the last checkpoint's)."""
    records: dict[tuple[int, bytes], Any] = {}
    values: dict[tuple[int, bytes], bytes] = {}
    for i, one in enumerate(blobs):
        raw = _inflate(one)
        if raw[0] != (VERSION if i == 0 else DELTA):
            raise SnapshotError("a checkpoint chain is one full checkpoint, then deltas")
        _read(raw, 1 if i == 0 else 1 + _BASE.size, records, values)
    state = State(SparseMerkleTree.from_items((state_key(kind, ident), value) for (kind, ident), value in values.items()))
    state.records = records
    # Verify the checkpoint is the state it claims to be
    if state.tree.root() != root:
        raise SnapshotError("checkpoint does not hash to its root")
    return state


def _inflate(blob: bytes) -> bytes:
    try:
        raw = zlib.decompress(blob)
    except zlib.error as exc:
        raise SnapshotError(f"checkpoint does not decompress: {exc}") from exc
    if not raw or raw[0] not in (VERSION, DELTA):
        raise SnapshotError("unknown checkpoint version")
    return raw


def _read(raw: bytes, pos: int, records: dict[tuple[int, bytes], Any], values: dict[tuple[int, bytes], bytes]) -> None:
    end, unpack = len(raw), _HEAD.unpack_from
    try:
        while pos < end:
            kind, ident_len, value_len = unpack(raw, pos)
            pos += _HEAD.size
            ident = raw[pos : pos + ident_len]
            pos += ident_len
            value = raw[pos : pos + value_len]
            pos += value_len
            # Verify the record is whole
            if pos > end:
                raise DecodeError("truncated record")
            slot = (kind, ident)
            if value:
                records[slot] = RECORD_DECODERS[kind](value)
                values[slot] = value
            else:
                records.pop(slot, None)
                values.pop(slot, None)
    except (struct.error, KeyError, DecodeError) as exc:
        raise SnapshotError(f"checkpoint record does not decode: {exc}") from exc
