"""The service's one error type: a machine-readable code, a message and an HTTP status.

Routes raise `ApiError`; one handler (api.py) turns it into `{"error": {"code", "message"}}`.
Engine rejects map to 422 with the engine's reason as the code, in lower case.
"""

from __future__ import annotations

from sequencer.engine import Reject


class ApiError(Exception):
    status = 400

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        if status is not None:
            self.status = status

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def malformed(message: str) -> ApiError:
    return ApiError("malformed", message, 400)


def bad_signature(message: str) -> ApiError:
    return ApiError("bad_signature", message, 401)


def wrong_signer(message: str) -> ApiError:
    return ApiError("wrong_signer", message, 403)


def unknown_market(market: object) -> ApiError:
    return ApiError("unknown_market", f"no market {market!r}", 404)


def not_found(message: str) -> ApiError:
    return ApiError("not_found", message, 404)


def too_large(message: str) -> ApiError:
    return ApiError("too_large", message, 413)


def rate_limited(message: str) -> ApiError:
    return ApiError("rate_limited", message, 429)


def unavailable(message: str) -> ApiError:
    return ApiError("unavailable", message, 503)


_REJECT_STATUS = {Reject.DUPLICATE_ORDER: 409, Reject.DUPLICATE_CLIENT_ID: 409, Reject.UNKNOWN_ORDER: 404,
                  Reject.UNKNOWN_MARKET: 404, Reject.WRONG_ACCOUNT: 403}


def rejected(reason: Reject | str, message: str = "") -> ApiError:
    """An engine (or service-level) reject: nothing changed."""
    code = str(reason).lower()
    status = _REJECT_STATUS.get(reason, 422) if isinstance(reason, Reject) else 422
    return ApiError(code, message or f"rejected: {code}", status)
