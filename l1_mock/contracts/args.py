"""Argument types of contract methods: hex bytes, addresses and strict non-negative integers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from l1_mock.envelope import hex0x, unhex


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return unhex(value)


def _address(value: Any) -> str:
    raw = _bytes(value)
    if len(raw) != 20:
        raise ValueError("an address is 20 bytes")
    return hex0x(raw)


def _hash(value: Any) -> bytes:
    raw = _bytes(value)
    if len(raw) != 32:
        raise ValueError("a hash is 32 bytes")
    return raw


HexBytes = Annotated[bytes, BeforeValidator(_bytes)]
Hash = Annotated[bytes, BeforeValidator(_hash)]
AddressHex = Annotated[str, BeforeValidator(_address)]
Uint = Annotated[int, Field(strict=True, ge=0)]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(Args):
    pass
