"""The HTTP and WebSocket API: thin routes over `Service`, one error handler, OpenAPI at /docs.

REST under /v1 reads like dYdX v4's indexer (markets, orderbooks, trades, fills, funding) and
takes signed messages for every state change; /exchange and /info take Hyperliquid-shaped
actions and queries over the same service; /ws streams book diffs, trades, markets, batches,
governance and (after a signed subscription) an account's orders, fills and withdrawals.
Order bodies are parsed by hand (intake.py): pydantic models here only document them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts_spec import eip712
from l1_mock.openapi_errors import errors_as_answered
from sequencer.errors import ApiError, invalid_request, malformed, too_large
from sequencer.fastlane import FastLane, Handler, loads
from sequencer.intake import parse_address, parse_hex
from sequencer.service import parse_stp

# --- documentation models (never used to parse: see intake.py) -----------------------------------

U64 = Annotated[int, Field(ge=0, le=(1 << 64) - 1)]


class OrderWire(BaseModel):
    """An EIP-712 `Order` message, as signed, plus its signature. Integers may be strings of digits."""

    account: str = Field(examples=["0x5a3f000000000000000000000000000000000001"])
    market: int | str = Field(description="market id, or symbol such as BTC-USD")
    isBuy: bool
    price: U64 = Field(description="limit price in ticks of the market")
    lots: U64 = Field(description="size in lots of the market (> 0)")
    tif: str = Field("GTC", description="GTC, IOC, FOK or POST_ONLY (ALO)")
    reduceOnly: bool = False
    expiry: U64 = Field(0, description="unix seconds; 0 = never")
    nonce: U64 = 0
    clientId: U64 = 0
    signature: str = Field(description="0x r||s||v, 65 bytes, EIP-712 over the Order")


class BatchOrders(BaseModel):
    orders: list[OrderWire]


class CancelWire(BaseModel):
    account: str
    orderId: str
    signature: str


class BatchCancels(BaseModel):
    cancels: list[CancelWire]


class CancelAllWire(BaseModel):
    account: str
    nonceFloor: U64
    signature: str


class ReplaceWire(BaseModel):
    cancel: CancelWire
    order: OrderWire


class WithdrawWire(BaseModel):
    account: str
    amount: U64 = Field(description="USDC atoms (1e-6)")
    nonce: U64 = Field(description="the account's withdraw nonce (see /margin)")
    signature: str


class ReportWire(BaseModel):
    market: int
    price: U64
    time: U64
    signature: str


class Reports(BaseModel):
    reports: list[ReportWire]


_DOC_MODELS = (OrderWire, BatchOrders, CancelWire, BatchCancels, CancelAllWire, ReplaceWire, WithdrawWire, ReportWire, Reports)


AuthTs = Annotated[str | None, Header(alias="X-Rampart-Timestamp", description="unix seconds, near GET /v1/time")]
AuthSig = Annotated[str | None, Header(alias="X-Rampart-Signature",
                                       description="EIP-712 Subscribe(account, timestamp) signature")]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


# --- the app -----------------------------------------------------------------------------------------


def create_app(node: Any) -> FastLane:
    """The ASGI app: the order-entry fast lane in front of the FastAPI app (which it serves for
    everything else). `node` holds service, hub, oracle, metrics and the lifespan (node.py)."""
    app = FastAPI(title="Rampart sequencer", version="1", lifespan=node.lifespan,
                  description=__doc__)
    svc = node.service
    settings = node.settings

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = invalid_request(exc.errors())  # the one error shape, naming each parameter
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)

    async def read_json(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            raise too_large(f"body over {settings.max_body_bytes} bytes")
        raw = await request.body()
        if len(raw) > settings.max_body_bytes:
            raise too_large(f"body over {settings.max_body_bytes} bytes")
        return loads(raw)

    def conn(request: Request) -> Any:
        client = request.client
        return (client.host, client.port) if client is not None else None

    def auth(account: str, timestamp: str | None, signature: str | None) -> bytes:
        address = parse_address(account)
        svc.authenticate(address, timestamp, signature)
        return address

    # --- service ---

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        core = svc.core
        defender = node.defender
        return {"status": "halted" if node.batcher.halted else "ok", "halted": node.batcher.halted,
                "time": core.now, "seq": core.seq, "durableSeq": core.durable_seq, "outputs": core.out_end,
                "batched": node.batcher.next_out, "batches": len(core.batches),
                "pendingPost": node.batcher.pending is not None or bool(node.batcher.queued),
                "journalFailed": core.failed is not None,
                "rollingBack": node.batcher.rollback_to is not None, "rollbacks": len(core.rollbacks),
                "lostBatches": len(core.lost_batches), "busted": len(core.busted),
                "l1Up": node.follower.l1_up, "l1AwaySeconds": node.follower.l1_away_seconds(),
                "l1FailedPolls": node.follower.l1_away_polls,
                "defending": defender is not None,
                "games": dict(defender.results) if defender is not None else {}}

    @app.get("/metrics", tags=["service"])
    def metrics() -> Response:
        m = node.metrics
        m.sync(svc.core.counters)
        m.state_records.set(len(node.batcher.state.records))  # a dict's length: safe beside the build thread
        m.orders_held.set(len(svc.core.orders))
        j = svc.core.journal
        if j is not None:
            m.journal_commits.set(j.commits)
            m.journal_records.set(j.committed)
        return Response(m.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/time", tags=["service"])
    def clock() -> dict[str, int]:
        """The sequencer's clock (the base layer's time): sign private reads against it."""
        return {"time": svc.core.now}

    @app.get("/v1/domain", tags=["service"])
    def domain() -> dict[str, Any]:
        """The EIP-712 domain every message is signed under, with an example typed-data order."""
        preset = svc.preset
        return {"name": eip712.DOMAIN_NAME, "version": eip712.DOMAIN_VERSION, "chainId": preset.chain_id,
                "verifyingContract": eip712.to_checksum_address(preset.rollup_address),
                "types": {"Order": [{"name": n, "type": t} for t, n in eip712.ORDER_FIELDS],
                          "Cancel": [{"name": n, "type": t} for t, n in eip712.CANCEL_FIELDS],
                          "CancelAll": [{"name": n, "type": t} for t, n in eip712.CANCEL_ALL_FIELDS],
                          "Withdraw": [{"name": n, "type": t} for t, n in eip712.WITHDRAW_FIELDS],
                          "Subscribe": [{"name": n, "type": t} for t, n in eip712.SUBSCRIBE_FIELDS]}}

    # --- public reads ---

    @app.get("/v1/markets", tags=["markets"])
    def markets() -> list[dict[str, Any]]:
        return svc.markets()

    @app.get("/v1/markets/{market}", tags=["markets"])
    def market(market: str) -> dict[str, Any]:
        return svc.market_view(svc.market_id(market))

    @app.get("/v1/markets/{market}/book", tags=["markets"])
    def book(market: str, depth: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        mid = svc.market_id(market)
        return svc.book(mid, depth, node.hub.book_seq[mid])

    @app.get("/v1/markets/{market}/trades", tags=["markets"])
    def trades(market: str, limit: Limit = 100) -> list[dict[str, Any]]:
        return svc.trades(svc.market_id(market), limit)

    @app.get("/v1/markets/{market}/funding", tags=["markets"])
    def funding(market: str, limit: Limit = 100) -> list[dict[str, Any]]:
        return svc.funding_history(svc.market_id(market), limit)

    @app.get("/v1/batches", tags=["batches"])
    def batches(after: Annotated[int, Query(ge=0)] = 0, limit: Limit = 100) -> list[dict[str, Any]]:
        """Batches from index `after`, with status (built, posted, challenged, final, invalid) and roots."""
        return svc.batches(after, limit)

    @app.get("/v1/batches/{index}", tags=["batches"])
    def batch(index: int) -> dict[str, Any]:
        return svc.batch(index)

    @app.get("/v1/rollbacks", tags=["batches"])
    def rollbacks() -> list[dict[str, Any]]:
        """Each rollback, newest first: the batches the base layer lost, the root the state went back
        to, and every output the spec then rejected (busted fills in full)."""
        return svc.rollbacks()

    @app.get("/v1/governance", tags=["governance"])
    def governance() -> dict[str, Any]:
        """Every change in the base layer's governance queue as the sequencer knows it, oldest first:
        its index, kind and parameters (with what it changes), announced and effective time, and
        status — announced (not yet effective), pending (effective, its ApplyGovernance not yet
        emitted), applied or rejected (consumed, nothing changed), with the output number, batch and
        batch status of its ApplyGovernance — plus the oracle signers and quorum and every market's
        parameters now in force. The `governance` WebSocket channel streams changes as they come."""
        return svc.governance()

    # --- trading: one handler per route, served by the fast lane (fastlane.py); FastAPI documents them ---

    def listed(body: Any, key: str) -> Any:
        if body.__class__ is not dict or key not in body:
            raise malformed(f"body must be {{\"{key}\": [...]}}")
        return body[key]

    async def place_batch(body: Any, query: dict[str, str], c: Any) -> dict[str, Any]:
        return {"results": await svc.place_many(listed(body, "orders"), parse_stp(query.get("stp")), c)}

    async def cancel_batch(body: Any, query: dict[str, str], c: Any) -> dict[str, Any]:
        return {"results": await svc.cancel_many(listed(body, "cancels"), c)}

    trading: dict[str, Handler] = {
        "/v1/orders": lambda body, query, c: svc.place(body, parse_stp(query.get("stp")), c),
        "/v1/orders/batch": place_batch,
        "/v1/orders/cancel": lambda body, query, c: svc.cancel(body, c),
        "/v1/orders/cancel/batch": cancel_batch,
        "/v1/orders/cancel-all": lambda body, query, c: svc.cancel_all(body, c),
        "/v1/orders/replace": lambda body, query, c: svc.replace(body, parse_stp(query.get("stp")), c),
    }

    async def trade(request: Request) -> Any:
        return await trading[request.url.path](await read_json(request), dict(request.query_params), conn(request))

    @app.post("/v1/orders", tags=["trading"], openapi_extra=_body(OrderWire))
    async def place(request: Request, stp: str | None = None) -> dict[str, Any]:
        """Place one signed order; answered once it is in the journal."""
        return await trade(request)

    @app.post("/v1/orders/batch", tags=["trading"], openapi_extra=_body(BatchOrders))
    async def place_orders(request: Request, stp: str | None = None) -> dict[str, Any]:
        """Place many signed orders in one request, in order; each is answered on its own."""
        return await trade(request)

    @app.post("/v1/orders/cancel", tags=["trading"], openapi_extra=_body(CancelWire))
    async def cancel(request: Request) -> dict[str, Any]:
        return await trade(request)

    @app.post("/v1/orders/cancel/batch", tags=["trading"], openapi_extra=_body(BatchCancels))
    async def cancel_orders(request: Request) -> dict[str, Any]:
        """Cancel many orders in one request, in order; each is answered on its own, and the answer
        comes once the last is in the journal."""
        return await trade(request)

    @app.post("/v1/orders/cancel-all", tags=["trading"], openapi_extra=_body(CancelAllWire))
    async def cancel_all(request: Request) -> dict[str, Any]:
        """Raise the account's nonce floor: every order with a lower nonce is cancelled."""
        return await trade(request)

    @app.post("/v1/orders/replace", tags=["trading"], openapi_extra=_body(ReplaceWire))
    async def replace(request: Request, stp: str | None = None) -> dict[str, Any]:
        """Cancel one order and place another in its stead (its queue place is kept when it can be)."""
        return await trade(request)

    @app.post("/v1/withdrawals", tags=["trading"], openapi_extra=_body(WithdrawWire))
    async def withdraw(request: Request) -> dict[str, Any]:
        """A signed withdrawal: a spec Withdraw in the next batch, claimable on the base layer once final."""
        return await svc.withdraw(await read_json(request), conn(request))

    @app.post("/v1/oracle/reports", tags=["oracle"], openapi_extra=_body(Reports))
    async def reports(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        if body.__class__ is not dict or "reports" not in body:
            raise malformed("body must be {\"reports\": [...]}")
        return {"results": await node.oracle.submit(body["reports"])}

    # --- private reads ---

    @app.get("/v1/accounts/{account}/orders", tags=["account"])
    def orders(account: str, ts: AuthTs = None, sig: AuthSig = None, status: str | None = None,
               limit: Limit = 100) -> list[dict[str, Any]]:
        return svc.orders(auth(account, ts, sig), status, limit)

    @app.get("/v1/accounts/{account}/orders/{order_id}", tags=["account"])
    def order(account: str, order_id: str, ts: AuthTs = None, sig: AuthSig = None) -> dict[str, Any]:
        return svc.order(auth(account, ts, sig), parse_hex(order_id, "orderId", 32))

    @app.get("/v1/accounts/{account}/fills", tags=["account"])
    def fills(account: str, ts: AuthTs = None, sig: AuthSig = None, limit: Limit = 100) -> list[dict[str, Any]]:
        """Fills with their life: matched, posted, challenged, final or busted."""
        return svc.fills(auth(account, ts, sig), limit)

    @app.get("/v1/accounts/{account}/positions", tags=["account"])
    def positions(account: str, ts: AuthTs = None, sig: AuthSig = None) -> list[dict[str, Any]]:
        return svc.positions(auth(account, ts, sig))

    @app.get("/v1/accounts/{account}/margin", tags=["account"])
    def margin(account: str, ts: AuthTs = None, sig: AuthSig = None) -> dict[str, Any]:
        return svc.margin(auth(account, ts, sig))

    @app.get("/v1/accounts/{account}/funding", tags=["account"])
    def funding_payments(account: str, ts: AuthTs = None, sig: AuthSig = None, limit: Limit = 100) -> list[dict[str, Any]]:
        return svc.funding_payments(auth(account, ts, sig), limit)

    @app.get("/v1/accounts/{account}/deposits", tags=["account"])
    def deposits(account: str, ts: AuthTs = None, sig: AuthSig = None) -> list[dict[str, Any]]:
        return svc.deposits(auth(account, ts, sig))

    @app.get("/v1/accounts/{account}/withdrawals", tags=["account"])
    def withdrawals(account: str, ts: AuthTs = None, sig: AuthSig = None) -> list[dict[str, Any]]:
        """Withdrawals with their life; once final, `claim` holds the base layer's `withdraw` arguments."""
        return svc.withdrawals(auth(account, ts, sig))

    # --- Hyperliquid-shaped ---

    @app.post("/exchange", tags=["compat"])
    async def exchange(request: Request) -> dict[str, Any]:
        """{"action": {"type": "order"|"cancel"|"cancelAll"|"modify"|"withdraw", ...}}; each message signed."""
        body = await read_json(request)
        action = body.get("action") if body.__class__ is dict else None
        if action.__class__ is not dict:
            raise malformed("body must be {\"action\": {...}}")
        kind = action.get("type")
        c = conn(request)
        stp = parse_stp(action.get("stp"))
        if kind == "order":
            return {"status": "ok", "response": {"type": "order", "data": {
                "statuses": await svc.place_many(action.get("orders"), stp, c)}}}
        if kind == "cancel":
            return {"status": "ok", "response": {"type": "cancel", "data": {
                "statuses": await svc.cancel_many(action.get("cancels"), c)}}}
        handlers = {"cancelAll": svc.cancel_all, "withdraw": svc.withdraw}
        if kind in handlers:
            return {"status": "ok", "response": {"type": kind, "data": await handlers[kind](action.get("message"), c)}}
        if kind == "modify":
            return {"status": "ok", "response": {"type": "modify", "data": await svc.replace(
                {"cancel": action.get("cancel"), "order": action.get("order")}, stp, c)}}
        raise malformed("action type must be order, cancel, cancelAll, modify or withdraw")

    @app.post("/info", tags=["compat"])
    async def info(request: Request) -> Any:
        """{"type": "meta"|"allMids"|"l2Book"|"recentTrades"|"fundingHistory"|"openOrders"|"userFills"|
        "clearinghouseState"|"userFunding"|"governance"}; the user queries carry "timestamp" and "signature"."""
        body = await read_json(request)
        if body.__class__ is not dict:
            raise malformed("body must be a JSON object")
        kind = body.get("type")
        if kind == "meta":
            return {"universe": svc.markets()}
        if kind == "governance":
            return svc.governance()
        if kind == "allMids":
            out = {}
            for mid, m in svc.core.markets.items():
                bids, asks = svc.core.levels(mid, 1)
                if bids and asks:
                    out[m.symbol] = (bids[0][0] + asks[0][0]) // 2
            return out
        if kind in ("l2Book", "recentTrades", "fundingHistory"):
            mid = svc.market_id(body.get("coin", body.get("market")))
            if kind == "l2Book":
                return svc.book(mid, 50, node.hub.book_seq[mid])
            if kind == "recentTrades":
                return svc.trades(mid, 100)
            return svc.funding_history(mid, 100)
        user_queries = {"openOrders": lambda a: svc.orders(a, "open", 1000), "userFills": lambda a: svc.fills(a, 1000),
                        "clearinghouseState": lambda a: {"margin": svc.margin(a), "positions": svc.positions(a)},
                        "userFunding": lambda a: svc.funding_payments(a, 1000)}
        if kind in user_queries:
            account = auth(str(body.get("user", "")), body.get("timestamp"), body.get("signature"))
            return user_queries[kind](account)
        raise malformed(f"unknown info type {kind!r}")

    # --- websocket ---

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await node.hub.serve(websocket)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in _DOC_MODELS:
            s = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(s.pop("$defs", {}))
            components[model.__name__] = s
        errors_as_answered(schema)  # 400 {"error": ...}, as `_validation` answers, never 422
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    # the lane in front of everything: FastAPI's middleware layers cost more than its routes do
    return FastLane(app, routes=trading, max_body=settings.max_body_bytes, observe=node.metrics.ack_latency.observe)
