"""The operator key: created or imported into a key file only its owner can read.

The file is JSON {"address", "private_key"}; a file others can read, a malformed one or one
whose address does not match its key is refused with a KeyFileError.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import coincurve

from contracts_spec.crypto import address_of_private_key, is_private_key


class KeyFileError(Exception):
    """The key file is missing, unreadable, malformed or unsafe."""


def parse_private_key(text: str) -> bytes:
    """A private key from 64 hex digits (with or without 0x)."""
    raw = text.strip().lower().removeprefix("0x")
    try:
        key = bytes.fromhex(raw)
    except ValueError as exc:
        raise KeyFileError("a private key is 64 hex digits") from exc
    # Verify the key is 32 bytes and a valid secp256k1 scalar
    if not is_private_key(key):
        raise KeyFileError("a private key is 32 bytes, a non-zero scalar below the curve order")
    return key


def create_key() -> bytes:
    return coincurve.PrivateKey().secret


def write_key(path: Path, key: bytes, overwrite: bool = False) -> bytes:
    """Write `key` to `path` (mode 0600); returns its address. Refuses to replace a key unless told."""
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} already holds a key (use --force to replace it)")
    address = address_of_private_key(key)
    body = json.dumps({"address": "0x" + address.hex(), "private_key": "0x" + key.hex()}, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return address


def load_key(path: Path) -> bytes:
    """The private key in `path`; KeyFileError if it is missing, malformed or readable by others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {path} (create one with `rampart-verifier keys create`)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc}") from exc
    # Verify nobody but the owner can read the key
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others: chmod 600 {path}")
    try:
        doc = json.loads(text)
        key = parse_private_key(doc["private_key"])
        address = doc["address"].lower()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyFileError(f"{path} is not a verifier key file") from exc
    # Verify the recorded address is the key's
    if address != "0x" + address_of_private_key(key).hex():
        raise KeyFileError(f"{path}: the address does not match the private key")
    return key
