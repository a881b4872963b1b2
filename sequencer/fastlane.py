"""The order-entry fast lane: plain ASGI in front of FastAPI for the trading POST routes.

Placing, cancelling and replacing orders is the hot path; FastAPI's per-request machinery
(middleware layers, route matching over every route, dependency solving, response
validation) cost several times what the route itself does (bench/api.py --profile). The lane
serves exactly the routes it is given, with the same handlers FastAPI's routes call, so the
answers are identical; everything else, and the OpenAPI documentation of these routes, stays
with FastAPI. JSON in and out with orjson.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from sequencer.errors import ApiError, malformed, too_large

log = logging.getLogger("rampart.api")

# (body, query, connection) -> JSON-able answer
Handler = Callable[[Any, dict[str, str], Any], Awaitable[Any]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


def loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise malformed(f"body is not JSON: {exc}") from exc


class FastLane:
    """ASGI middleware: POST to one of `routes` is answered here, anything else goes on to `app`."""

    def __init__(self, app: Any, routes: dict[str, Handler], max_body: int,
                 observe: Callable[[float], None] | None = None) -> None:
        self.app = app
        self.routes = routes
        self.max_body = max_body
        self.observe = observe  # seconds from the body read to the answer (a metrics histogram)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.routes.get(scope["path"])
            if handler is not None:
                await self._serve(handler, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, handler: Handler, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            raw = await self._body(scope, receive)
            started = time.perf_counter()
            body = loads(raw)
            query = dict(parse_qsl(scope["query_string"].decode("latin-1"))) if scope["query_string"] else {}
            status, payload = 200, orjson.dumps(await handler(body, query, scope.get("client")))
        except ApiError as exc:
            status, payload = exc.status, orjson.dumps(exc.body())
        except Exception:
            log.exception("%s failed", scope["path"])
            status, payload = 500, b'{"error":{"code":"internal","message":"internal error"}}'
        else:
            if self.observe is not None:
                self.observe(time.perf_counter() - started)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, scope: dict[str, Any], receive: Any) -> bytes:
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise too_large(f"body over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise malformed("client went away before the body was read")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(f"body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
