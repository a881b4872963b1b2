"""The signed transaction envelope shared by the chain and its client.

digest = keccak(TAG || canonical JSON of {chain_id, sender, nonce, method, args}); the canonical
JSON has sorted keys, no whitespace and no floats. The digest is also the transaction's hash.
"""

from __future__ import annotations

import json
from typing import Any, Final

from contracts_spec.crypto import keccak, sign_digest

TAG: Final = b"\x19rampart-l1-tx\x00"


def _check_json(value: Any) -> None:
    # Verify the value has one canonical encoding: floats do not
    if isinstance(value, float):
        raise ValueError("floats are not allowed in transaction arguments")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError("object keys must be strings")
            _check_json(v)
    elif isinstance(value, list):
        for v in value:
            _check_json(v)
    elif not (value is None or isinstance(value, str | int | bool)):
        raise ValueError(f"unsupported JSON value {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    _check_json(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def tx_digest(chain_id: int, sender: str, nonce: int, method: str, args: dict[str, Any]) -> bytes:
    body = {"chain_id": chain_id, "sender": sender.lower(), "nonce": nonce, "method": method, "args": args}
    return keccak(TAG + canonical_json(body))


def sign_tx(
    private_key: bytes, chain_id: int, sender: str, nonce: int, method: str, args: dict[str, Any]
) -> dict[str, Any]:
    """The JSON body of POST /tx."""
    signature = sign_digest(private_key, tx_digest(chain_id, sender, nonce, method, args))
    return {
        "sender": sender.lower(),
        "nonce": nonce,
        "method": method,
        "args": args,
        "signature": "0x" + signature.hex(),
    }


def hex0x(value: bytes) -> str:
    return "0x" + value.hex()


def unhex(value: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected a 0x-prefixed hex string")
    return bytes.fromhex(value[2:])
