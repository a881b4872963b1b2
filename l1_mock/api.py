"""HTTP routes of the base layer: thin, each calls the chain; one handler maps ChainError to JSON
{"error": {"code", "message"}} with its status.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from l1_mock import errors
from l1_mock.chain import Chain, parse_address
from l1_mock.contracts import bridge, escape, games, governance, rollup
from l1_mock.models import AccountRow, BatchDataRow, BatchRow, CanonicalRow, ChainRow, GameRow
from l1_mock.openapi_errors import errors_as_answered


def get_chain(request: Request) -> Chain:
    return request.app.state.chain


ChainDep = Annotated[Chain, Depends(get_chain)]


def create_app(chain: Chain) -> FastAPI:
    app = FastAPI(title="Rampart base layer (l1_mock)")
    app.state.chain = chain
    documented = app.openapi

    def openapi() -> dict[str, Any]:
        return errors_as_answered(documented())  # FastAPI caches the document it built

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(errors.ChainError)
    async def _chain_error(_: Request, exc: errors.ChainError) -> JSONResponse:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": {"code": "malformed", "message": str(exc.errors())}}, status_code=400)

    # --- chain ---

    @app.get("/info")
    def info(c: ChainDep) -> dict[str, Any]:
        return c.info()

    @app.get("/blocks/latest")
    def latest_block(c: ChainDep) -> dict[str, Any]:
        return c.block(None)

    @app.get("/blocks/{number}")
    def block(number: int, c: ChainDep) -> dict[str, Any]:
        return c.block(number)

    @app.get("/accounts/{address}")
    def account(address: str, c: ChainDep) -> dict[str, Any]:
        return c.account_view(address)

    @app.post("/tx")
    async def submit(request: Request, c: ChainDep) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise errors.Malformed("the body must be JSON") from exc
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(c.submit, body)

    @app.get("/txs/{tx_hash}")
    def receipt(tx_hash: str, c: ChainDep) -> dict[str, Any]:
        return c.receipt(tx_hash)

    @app.get("/events")
    def events(c: ChainDep, after: int = 0, from_block: int = 0, limit: int = 1000,
               name: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        return c.events(after, from_block, limit, name)

    @app.post("/admin/increase_time")
    def increase_time(body: dict[str, int], c: ChainDep) -> dict[str, Any]:
        return c.increase_time(int(body.get("seconds", 0)))

    @app.post("/admin/mine")
    def mine(c: ChainDep) -> dict[str, Any]:
        return c.mine(0)

    # --- rollup ---

    @app.get("/rollup")
    def rollup_view(c: ChainDep) -> dict[str, Any]:
        with c.read() as s:
            chain = _chain(s)
            return rollup.view_rollup(s, chain, c.genesis, c.now())

    @app.get("/batches")
    def batches(c: ChainDep, after: int = 0, limit: int = 100) -> dict[str, Any]:
        now = c.now()
        with c.read() as s:
            chain = _chain(s)
            q = select(BatchRow).where(BatchRow.id > after).order_by(BatchRow.id).limit(max(1, min(limit, 1000)))
            return {"batches": [rollup.view_batch(s, chain, c.genesis, b, now) for b in s.scalars(q)]}

    @app.get("/batches/{batch_id}")
    def batch(batch_id: int, c: ChainDep) -> dict[str, Any]:
        now = c.now()
        with c.read() as s:
            row = s.get(BatchRow, batch_id)
            if row is None:
                raise errors.NotFound(f"no batch {batch_id}")
            return rollup.view_batch(s, _chain(s), c.genesis, row, now)

    @app.get("/canonical/{index}")
    def canonical(index: int, c: ChainDep) -> dict[str, Any]:
        now = c.now()
        with c.read() as s:
            chain = _chain(s)
            canon = s.get(CanonicalRow, index)
            if canon is None or index > chain.head_index:
                raise errors.NotFound(f"no valid batch at index {index}")
            row = s.get(BatchRow, canon.batch_id)
            assert row is not None
            return rollup.view_batch(s, chain, c.genesis, row, now)

    @app.get("/data/{data_hash}")
    def data(data_hash: str, c: ChainDep) -> Response:
        with c.read() as s:
            row = s.get(BatchDataRow, data_hash.lower())
            if row is None:
                raise errors.NotFound(f"no data {data_hash}")
            return Response(row.data, media_type="application/octet-stream")

    # --- games ---

    @app.get("/games")
    def game_list(c: ChainDep, batch_id: int | None = None, challenger: str | None = None,
                  status: str | None = None, after: int = 0, limit: int = 100) -> dict[str, Any]:
        address = parse_address(challenger) if challenger else None
        with c.read() as s:
            return {"games": games.list_games(s, batch_id, address, status, after, max(1, min(limit, 1000)))}

    @app.get("/games/{game_id}")
    def game(game_id: int, c: ChainDep) -> dict[str, Any]:
        with c.read() as s:
            row = s.get(GameRow, game_id)
            if row is None:
                raise errors.NotFound(f"no game {game_id}")
            return games.game_view(row)

    @app.get("/bonds/{address}")
    def bonds(address: str, c: ChainDep) -> dict[str, Any]:
        address = parse_address(address)
        with c.read() as s:
            row = s.get(AccountRow, address)
            return games.view_bonds(s, c.genesis, address, row.credit if row else 0)

    # --- bridge ---

    @app.get("/bridge/deposits/{index}")
    def deposit(index: int, c: ChainDep) -> dict[str, Any]:
        with c.read() as s:
            return bridge.view_queue_entry(s, False, index)

    @app.get("/bridge/forced/{index}")
    def forced(index: int, c: ChainDep) -> dict[str, Any]:
        with c.read() as s:
            return bridge.view_queue_entry(s, True, index)

    @app.get("/bridge/withdrawals/{leaf_index}")
    def paid(leaf_index: int, c: ChainDep) -> dict[str, Any]:
        with c.read() as s:
            return bridge.view_paid(s, leaf_index)

    # --- governance ---

    @app.get("/governance")
    def governance_list(c: ChainDep, after: int = 0, limit: int = 100) -> dict[str, Any]:
        now = c.now()
        with c.read() as s:
            applied = rollup.get_parent(s, _chain(s), c.genesis).governance_applied
            return governance.list_entries(s, after, max(1, min(limit, 1000)), applied, now)

    @app.get("/governance/{index}")
    def governance_entry(index: int, c: ChainDep) -> dict[str, Any]:
        with c.read() as s:
            return governance.view_entry(s, index)

    # --- escape hatch ---

    @app.get("/escape")
    def escape_view(c: ChainDep) -> dict[str, Any]:
        now = c.now()
        with c.read() as s:
            return escape.view_escape(s, _chain(s), c.genesis, now)

    @app.get("/escape/claims/{address}")
    def escape_claim(address: str, c: ChainDep) -> dict[str, Any]:
        address = parse_address(address)
        with c.read() as s:
            return escape.view_claim(s, address)

    @app.get("/escape/deposits/{index}")
    def escape_refund(index: int, c: ChainDep) -> dict[str, Any]:
        with c.read() as s:
            return escape.view_refund(s, index)

    return app


def _chain(s: Session) -> ChainRow:
    row = s.get(ChainRow, 1)
    assert row is not None
    return row
