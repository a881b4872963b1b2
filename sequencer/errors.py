"""The service's one error type: a machine-readable code, a message and an HTTP status.

Routes raise `ApiError`; one handler (api.py) turns it into `{"error": {"code", "message"}}`.
Engine rejects map to 422 with the engine's reason as the code, in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sequencer.engine import Reject


class ApiError(Exception):
    status = 400

    def __init__(self, code: str, message: str, status: int | None = None, params: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.params = params  # the request parameters at fault, when a request did not validate
        if status is not None:
            self.status = status

    def body(self) -> dict[str, dict[str, Any]]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.params is not None:
            error["params"] = self.params
        return {"error": error}


def malformed(message: str) -> ApiError:
    return ApiError("malformed", message, 400)


_WHERE = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie",
          "body": "body field"}


def invalid_request(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """FastAPI's request-validation errors (a pydantic error list) as the API's one error:
    code `malformed`, HTTP 400, a message naming each bad parameter and `params` listing them."""
    names: list[str] = []
    parts: list[str] = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ())]
        where, name = (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("request", ".".join(loc) or "?")
        got = e.get("input")
        shown = f", got {str(got)[:60]!r}" if isinstance(got, str | int | float) and e.get("type") != "missing" else ""
        parts.append(f"{_WHERE.get(where, where)} {name}: {e.get('msg', 'invalid')}{shown}")
        names.append(name)
    return ApiError("malformed", "; ".join(parts) or "invalid request", 400, names)


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
