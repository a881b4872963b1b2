"""`rampart-trader`: everything a trader does, without writing code, over `sequencer.trader_client`.

Global options (or RAMPART_* env): --l1, --sequencer, --key NAME (a key from `keys create` /
`keys import`). Every command takes --json; every refusal prints its code and exits 1, and so
does a base layer or sequencer that does not answer (code `unreachable`, naming its URL). A bad
global option (not an http(s) URL, a key directory that is a file) is one line naming the option
or its variable and exit code 2.
Amounts are decimals: sizes in the market's base unit, prices in its quote, USDC in USDC.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, field_validator
from rich.console import Console
from rich.markup import escape as plain
from rich.table import Table

from l1_mock.cli_common import HttpUrl, load_settings, quiet_broken_pipe
from sequencer.trader_client import (
    DEFAULT_L1,
    DEFAULT_SEQUENCER,
    KeyStore,
    Trader,
    TraderError,
    format_usdc,
    new_key,
    parse_key,
    to_units,
    usdc_atoms,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=(
    "Rampart trader: keys, deposits, orders signed locally (EIP-712), fills with their life, positions, "
    "margin, withdrawals and claims, forced withdrawals, freeze and escape. --json on every command."))
keys_app = typer.Typer(no_args_is_help=True, help="Create, import and list keys.")
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


class Opts:
    def __init__(self, l1: str, sequencer: str, key: str | None, home: Path | None, as_json: bool) -> None:
        self.l1, self.sequencer, self.key, self.as_json = l1, sequencer, key, as_json
        self.store = KeyStore(home)

    def trader(self, need_sequencer: bool = True, need_key: bool = True) -> Trader:
        """The client for this command. A public read (`need_key` False: markets, the book,
        governance) runs without --key, on a throwaway key that never signs anything."""
        if self.key is None:
            if need_key:
                raise TraderError("no_key", "choose a key: --key NAME (see `rampart-trader keys list`)")
            return Trader(secrets.token_bytes(32), self.l1, self.sequencer if need_sequencer else None)
        key = parse_key(self.key) if self.key.startswith("0x") and len(self.key) == 66 else self.store.load(self.key)
        return Trader(key, self.l1, self.sequencer if need_sequencer else None)


class Globals(BaseModel):
    """The global options, checked before any command runs."""

    l1: HttpUrl
    sequencer: HttpUrl
    home: Path | None

    @field_validator("home")
    @classmethod
    def _a_directory(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError("not a directory")
        return value


# Each global option's flag and variable, to name the one the user set
GLOBALS = {"l1": ("--l1", "RAMPART_L1_URL"), "sequencer": ("--sequencer", "RAMPART_SEQUENCER_URL"),
           "home": ("--home", "RAMPART_TRADER_HOME")}


@app.callback()
def main_options(
    ctx: typer.Context,
    l1: Annotated[str, typer.Option(envvar=GLOBALS["l1"][1], help="base-layer URL")] = DEFAULT_L1,
    sequencer: Annotated[str, typer.Option(envvar=GLOBALS["sequencer"][1], help="sequencer URL")] = DEFAULT_SEQUENCER,
    key: Annotated[str | None, typer.Option(envvar="RAMPART_TRADER_KEY", help="key name (or 0x private key)")] = None,
    home: Annotated[Path | None, typer.Option(envvar=GLOBALS["home"][1], help="key directory")] = None,
    as_json: JsonOpt = False,
) -> None:
    def name(field: str) -> str:
        flag, variable = GLOBALS[field]
        source = ctx.get_parameter_source(field)  # typer's own copy of click's ParameterSource
        return variable if source is not None and source.name == "ENVIRONMENT" else flag

    load_settings(lambda: Globals(l1=l1, sequencer=sequencer, home=None if home is None else str(home)), name,
                  lambda line: err.print(f"[bold red]error[/] {plain(line)}", soft_wrap=True))
    ctx.obj = Opts(l1, sequencer, key, home, as_json)


def _named(exc: TraderError, opts: Opts) -> TraderError:
    """An unreachable service, named with the URL it was asked at."""
    if exc.code != "unreachable":
        return exc
    what, url = ("base layer", opts.l1) if exc.source == "l1" else ("sequencer", opts.sequencer)
    detail = exc.message.removeprefix("sequencer ")
    return TraderError(exc.code, f"the {what} at {url} does not answer ({detail})", exc.source, exc.status)


def run(ctx: typer.Context, as_json: bool, call: Callable[[Opts], Any], render: Callable[[Any], None]) -> None:
    """Run one command: JSON or rich output; a refusal (or a service that does not answer) prints
    its code on one line and exits 1."""
    opts: Opts = ctx.obj
    as_json = as_json or opts.as_json
    try:
        result = call(opts)
    except TraderError as exc:
        shown = _named(exc, opts)
        if as_json:
            print(json.dumps(shown.to_json()))
        else:
            verdict = "error" if shown.code == "unreachable" else "refused"
            err.print(f"[bold red]{verdict}[/] [red]{plain(shown.code)}[/] ({shown.source}): {plain(shown.message)}",
                      soft_wrap=True)
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        render(result)


def _with(opts: Opts, fn: Callable[[Trader], Any], need_sequencer: bool = True, need_key: bool = True) -> Any:
    with opts.trader(need_sequencer, need_key) as t:
        return fn(t)


def show(result: Any) -> None:
    """A dict as key/value lines, a list of dicts as a table."""
    if isinstance(result, list):
        if not result:
            out.print("[dim](none)[/]")
            return
        table = Table(*[str(k) for k in result[0]])
        for row in result:
            table.add_row(*[_cell(row.get(k)) for k in result[0]])
        out.print(table)
    elif isinstance(result, dict):
        for k, v in result.items():
            out.print(f"[bold]{k}[/]: {_cell(v)}")
    else:
        out.print(result)


def _cell(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v)
    return "" if v is None else str(v)


def _side(side: str) -> bool:
    s = side.lower()
    if s not in ("buy", "sell", "long", "short"):
        raise TraderError("bad_side", "side must be buy or sell")
    return s in ("buy", "long")


# --- keys -------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """Create a new key and store it under NAME."""
    run(ctx, as_json, lambda o: o.store.save(name, new_key()), show)


@keys_app.command("import")
def keys_import(ctx: typer.Context, name: str, private_key: Annotated[str, typer.Argument(help="0x hex")],
                as_json: JsonOpt = False) -> None:
    """Store an existing private key under NAME."""
    run(ctx, as_json, lambda o: o.store.save(name, parse_key(private_key)), show)


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    run(ctx, as_json, lambda o: o.store.list(), show)


# --- base layer -------------------------------------------------------------------------------


@app.command()
def balances(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Base-layer balances of the key (USDC in atoms, native coin, nonce)."""
    run(ctx, as_json, lambda o: _with(o, lambda t: t.balances(), False), show)


@app.command()
def faucet(ctx: typer.Context, usdc: Annotated[str, typer.Argument(help="USDC")] = "0",
           native: Annotated[int, typer.Option(help="native coin units")] = 0, as_json: JsonOpt = False) -> None:
    """Dev preset only: USDC (and native coin) from the base layer's faucet."""
    run(ctx, as_json, lambda o: _with(o, lambda t: t.faucet(usdc_atoms(usdc) if usdc != "0" else 0, native), False),
        show)


@app.command()
def deposit(ctx: typer.Context, amount: Annotated[str, typer.Argument(help="USDC")], as_json: JsonOpt = False) -> None:
    """Lock USDC in the bridge for the rollup account."""
    def call(o: Opts) -> Any:
        atoms = usdc_atoms(amount)
        return _with(o, lambda t: {"queueIndex": t.deposit(atoms), "amount": atoms}, False)
    run(ctx, as_json, call, show)


@app.command("force-withdraw")
def force_withdraw(ctx: typer.Context, amount: Annotated[str, typer.Argument(help="USDC")],
                   as_json: JsonOpt = False) -> None:
    """Ask the base layer for a forced withdrawal: the sequencer must serve it within the delay."""
    def call(o: Opts) -> Any:
        atoms = usdc_atoms(amount)
        return _with(o, lambda t: {"forcedIndex": t.force_withdraw(atoms), "amount": atoms}, False)
    run(ctx, as_json, call, show)


@app.command()
def claim(ctx: typer.Context, leaf: Annotated[int | None, typer.Option(help="one withdrawal leaf only")] = None,
          from_chain: Annotated[bool, typer.Option(help="find the proofs from the base layer alone")] = False,
          as_json: JsonOpt = False) -> None:
    """Pay this account's final withdrawals on the base layer (proofs fetched or rebuilt)."""
    def call(o: Opts) -> Any:
        with o.trader(not from_chain) as t:
            return t.claim(leaf)
    run(ctx, as_json, call, show)


@app.command("escape-status")
def escape_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Whether the rollup is frozen (its escape root), or whether it may be frozen now."""
    run(ctx, as_json, lambda o: _with(o, lambda t: t.escape_status(), False), show)


@app.command()
def freeze(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Freeze the rollup (a forced request is overdue, or no batch for the escape delay)."""
    run(ctx, as_json, lambda o: _with(o, lambda t: t.freeze(), False), show)


@app.command()
def escape(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """After a freeze: claim this account's value at the escape root, rebuilt from the base layer alone."""
    run(ctx, as_json, lambda o: _with(o, lambda t: t.escape(), False), show)


@app.command("governance")
def governance_changes(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Time-locked changes announced on the base layer: what changes, when, and whether applied."""
    def render(result: dict[str, Any]) -> None:
        show([{"index": c["index"], "kind": c["decoded"]["kind"], "effective": c["effective_time"],
               "status": c["status"], "change": {k: v for k, v in c["decoded"].items() if k != "kind"}}
              for c in result["changes"]])
    run(ctx, as_json, lambda o: _with(o, lambda t: t.governance(), False, need_key=False), render)


# --- sequencer --------------------------------------------------------------------------------


@app.command()
def markets(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    def render(rows: list[dict[str, Any]]) -> None:
        show([{k: r.get(k) for k in ("market", "symbol", "lotSize", "tickSize", "oraclePrice", "openInterest",
                                     "initialMarginPpm", "takerFeePpm")} for r in rows])
    run(ctx, as_json, lambda o: _with(o, lambda t: t.markets(), need_key=False), render)


@app.command()
def book(ctx: typer.Context, market: str, depth: int = 10, as_json: JsonOpt = False) -> None:
    run(ctx, as_json, lambda o: _with(o, lambda t: t.book(market, depth), need_key=False), show)


def _place(o: Opts, market: str, side: str, size: str, price: str, tif: str, reduce_only: bool, expiry: int,
           nonce: int | None, client_id: int, replaces: str | None = None) -> Any:
    with o.trader() as t:
        m = t.market(market)
        lots, ticks = to_units(size, m.lot_size, "size"), to_units(price, m.tick_size, "price")
        args = (m.market_id, _side(side), ticks, lots, tif, reduce_only, expiry, nonce, client_id)
        placed = t.place(*args) if replaces is None else t.replace(replaces, *args)
        return {"orderId": placed.order_id, **placed.result}


Tif = Annotated[str, typer.Option(help="GTC, IOC, FOK or POST_ONLY")]
ReduceOnly = Annotated[bool, typer.Option("--reduce-only")]
Expiry = Annotated[int, typer.Option(help="unix seconds; 0 = none")]
Nonce = Annotated[int | None, typer.Option(help="default: the clock in microseconds")]
ClientId = Annotated[int, typer.Option()]


@app.command()
def place(ctx: typer.Context, market: str, side: Annotated[str, typer.Argument(help="buy or sell")],
          size: Annotated[str, typer.Argument(help="base units, e.g. 0.01")],
          price: Annotated[str, typer.Argument(help="quote units, e.g. 60000.5")],
          tif: Tif = "GTC", reduce_only: ReduceOnly = False, expiry: Expiry = 0, nonce: Nonce = None,
          client_id: ClientId = 0, as_json: JsonOpt = False) -> None:
    """Sign an order locally (EIP-712) and place it."""
    run(ctx, as_json, lambda o: _place(o, market, side, size, price, tif, reduce_only, expiry, nonce, client_id),
        show)


@app.command()
def replace(ctx: typer.Context, order_id: str, market: str, side: str, size: str, price: str, tif: Tif = "GTC",
            reduce_only: ReduceOnly = False, expiry: Expiry = 0, nonce: Nonce = None, client_id: ClientId = 0,
            as_json: JsonOpt = False) -> None:
    """Cancel ORDER_ID and place a new order in its stead, both signed locally."""
    run(ctx, as_json, lambda o: _place(o, market, side, size, price, tif, reduce_only, expiry, nonce, client_id,
                                       order_id), show)


@app.command()
def cancel(ctx: typer.Context, order_ids: Annotated[list[str], typer.Argument(
        help="one order id, or several: cancelled in one request, each answered on its own", metavar="ORDER_ID...")],
        as_json: JsonOpt = False) -> None:
    """Cancel orders by id."""
    if len(order_ids) == 1:
        run(ctx, as_json, lambda o: _with(o, lambda t: t.cancel(order_ids[0])), show)
        return

    def each(t: Trader) -> list[dict[str, Any]]:
        return [{"orderId": oid, "status": r["status"], "code": r.get("code", "")}
                for oid, r in zip(order_ids, t.cancel_many(order_ids), strict=True)]

    run(ctx, as_json, lambda o: _with(o, each), show)


@app.command("cancel-all")
def cancel_all(ctx: typer.Context, floor: Annotated[int | None, typer.Option(help="nonce floor")] = None,
               as_json: JsonOpt = False) -> None:
    """Cancel every order with a nonce below the floor (default: now, in microseconds)."""
    run(ctx, as_json, lambda o: _with(o, lambda t: t.cancel_all(floor)), show)


@app.command()
def orders(ctx: typer.Context, status: Annotated[str | None, typer.Option(help="open, filled, cancelled, ...")] = None,
           limit: int = 100, as_json: JsonOpt = False) -> None:
    run(ctx, as_json, lambda o: _with(o, lambda t: t.orders(status, limit)), show)


@app.command()
def fills(ctx: typer.Context, limit: int = 100, as_json: JsonOpt = False) -> None:
    """Fills with their life: matched, posted, challenged, final or busted."""
    run(ctx, as_json, lambda o: _with(o, lambda t: t.fills(limit)), show)


@app.command()
def positions(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    run(ctx, as_json, lambda o: _with(o, lambda t: t.positions()), show)


@app.command()
def margin(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Collateral, value, requirements and free collateral (USDC atoms)."""
    def render(m: dict[str, Any]) -> None:
        show({k: (f"{format_usdc(v)} USDC" if k in ("collateral", "value", "initialRequirement",
                                                      "maintenanceRequirement", "free") else v) for k, v in m.items()})
    run(ctx, as_json, lambda o: _with(o, lambda t: t.margin()), render)


@app.command()
def withdraw(ctx: typer.Context, amount: Annotated[str, typer.Argument(help="USDC")], as_json: JsonOpt = False) -> None:
    """A signed rollup withdrawal; once its batch is final, `claim` pays it on the base layer."""
    def call(o: Opts) -> Any:
        atoms = usdc_atoms(amount)
        return _with(o, lambda t: t.withdraw(atoms))
    run(ctx, as_json, call, show)


@app.command()
def withdrawals(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    run(ctx, as_json, lambda o: _with(o, lambda t: t.withdrawals()), show)


@app.command()
def deposits(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    run(ctx, as_json, lambda o: _with(o, lambda t: t.deposits()), show)


@quiet_broken_pipe
def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":
    main()
