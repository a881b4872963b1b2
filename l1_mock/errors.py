"""Domain errors of the base layer: each carries a machine-readable code and an HTTP status.

One handler in `l1_mock.api` maps them to responses; the client maps them back to `L1Error`.
"""

from __future__ import annotations


class ChainError(Exception):
    """A refused request: nothing changed. `code` is stable and machine-readable."""

    status = 409
    code = "refused"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Malformed(ChainError):
    status = 400
    code = "malformed"


class UnknownMethod(ChainError):
    status = 400
    code = "unknown_method"


class BadSignature(ChainError):
    status = 401
    code = "bad_signature"


class BadNonce(ChainError):
    status = 409
    code = "bad_nonce"


class InsufficientBalance(ChainError):
    status = 402
    code = "insufficient_balance"


class Forbidden(ChainError):
    status = 403
    code = "forbidden"


class NotFound(ChainError):
    status = 404
    code = "not_found"


class Refused(ChainError):
    """A contract rule refused the call (the `code` names the rule)."""

    status = 422
    code = "refused"
