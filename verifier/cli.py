"""`rampart-verifier`: run the verifier node and operate it.

Settings come from flags, then RAMPART_VERIFIER_* variables (verifier.settings). Every read
takes --json for machines; people get rich tables. Errors an operator can fix (a base layer
that does not answer, a wrong or missing key, an unknown batch) are one clear line and a
non-zero exit: 2 for configuration, 1 for the rest.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from l1_mock.cli_common import (
    l1_unreachable,
    load_settings,
    quiet_broken_pipe,
    stopped_by_signals,
    wait_until_up,
)
from l1_mock.client import L1Client, L1Error
from verifier import keys as keyfile
from verifier import views
from verifier.db import BatchRow
from verifier.metrics import MetricsServer
from verifier.node import Node, UnknownBatch, VerifierError
from verifier.settings import Settings
from verifier.views import eth

SWITCH_INTERVAL = 0.0002  # seconds, for `run` (see there); CPython's default: 0.005

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="Rampart verifier: re-executes every batch from the base layer, challenges wrong ones.")

keys_app = typer.Typer(no_args_is_help=True, help="Create, import or show the operator key.")
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


# --- settings and errors ------------------------------------------------------------------------


@app.callback()
def options(
    ctx: typer.Context,
    l1_url: Annotated[str | None, typer.Option(help="Base layer URL (env RAMPART_VERIFIER_L1_URL).")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of this verifier's database (env RAMPART_VERIFIER_DB).")] = None,
    db_schema: Annotated[str | None, typer.Option(help="PostgreSQL schema to use.")] = None,
    key_file: Annotated[Path | None, typer.Option(help="The operator key file (env RAMPART_VERIFIER_KEY_FILE).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every batch.")] = False,
) -> None:
    overrides = {k: v for k, v in {"l1_url": l1_url, "db": db, "db_schema": db_schema,
                                   "key_file": key_file}.items() if v is not None}
    ctx.obj = {"overrides": overrides, "verbose": verbose}


def settings_of(ctx: typer.Context, **more: Any) -> Settings:
    """The settings from the environment, the global flags and `more`; a bad value is one line
    per setting (its RAMPART_VERIFIER_ name) and exit code 2, never a traceback."""
    return load_settings(lambda: Settings(**{**ctx.obj["overrides"], **more}),
                         lambda field: f"RAMPART_VERIFIER_{field.upper()} (or its flag)",
                         lambda line: err.print(f"[red]error:[/] {line}"))


@contextmanager
def handled(settings: Settings) -> Iterator[None]:
    """Turn what an operator can fix into one line and an exit code."""
    try:
        yield
    except L1Error as exc:
        if exc.away:
            err.print(f"[red]error:[/] the base layer at {settings.l1_url} does not answer ({exc.message})")
            raise typer.Exit(2) from None
        err.print(f"[red]error:[/] the base layer refused: {exc.code}: {exc.message}")
        raise typer.Exit(1) from None
    except keyfile.KeyFileError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except VerifierError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None


def open_node(settings: Settings, need_key: bool) -> Node:
    """The node on this database; with the operator key when one is needed or available."""
    key = None
    if need_key or settings.key_file.exists():
        key = keyfile.load_key(settings.key_file)
    return Node(settings, key)


def wait_for_base_layer(settings: Settings, stop: threading.Event) -> Node | None:
    """`open_node` for the daemon: a base layer that does not answer yet (started after us, or
    restarting) is waited for, as the running node does; None if stopped meanwhile. Anything
    else (a wrong key, another chain) still ends the process."""
    return wait_until_up(lambda: open_node(settings, need_key=True), l1_unreachable,
                         lambda reason: err.print(f"[yellow]waiting for the base layer at {settings.l1_url}[/] ({reason})"),
                         stop, min(settings.poll_interval * 5, 5.0))


def emit(data: Any, as_json: bool) -> bool:
    """Print `data` as JSON if asked; True when done (the caller renders tables otherwise)."""
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    return as_json


class Bars:
    """Rich progress bars fed by Node.progress(what, done, total)."""

    LABELS = {"verify": "verifying batches", "restore": "restoring state", "replay": "re-executing"}

    def __init__(self, console: Console) -> None:
        # off when nobody watches (a daemon's log, a pipe): its refresh thread would only take the GIL
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=not console.is_terminal)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, what: str, done: int, total: int) -> None:
        task = self.tasks.get(what)
        if task is None:
            task = self.tasks[what] = self.progress.add_task(self.LABELS.get(what, what), total=total)
        self.progress.update(task, completed=done, total=total)


def short(h: str | None, n: int = 10) -> str:
    return "-" if not h else h[: n + 2] + "…"


# --- run ------------------------------------------------------------------------------------------


@app.command()
def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(help="Sync until there is nothing left to do, then exit.")] = False,
    challenge: Annotated[bool | None, typer.Option(
        help="Open a game against every wrong batch [default: RAMPART_VERIFIER_CHALLENGE, else on].")] = None,
    join: Annotated[bool | None, typer.Option(
        help="Join games on wrong batches that head the wrong way [default: RAMPART_VERIFIER_JOIN, else on].")] = None,
    poll_interval: Annotated[float | None, typer.Option(help="Seconds between polls when idle.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics [default: RAMPART_VERIFIER_METRICS_PORT, "
             "else none].")] = None,
) -> None:
    """Run the node: follow, verify, challenge, play, resolve, claim."""
    # flags override the environment only when given
    more: dict[str, Any] = {k: v for k, v in (("challenge", challenge), ("join", join)) if v is not None}
    if poll_interval is not None:
        more["poll_interval"] = poll_interval
    if metrics_port is not None:
        more["metrics_port"] = metrics_port
    settings = settings_of(ctx, **more)
    logging.basicConfig(level=logging.INFO if ctx.obj["verbose"] else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)
    logging.getLogger("rampart.verifier").setLevel(logging.INFO)
    with stopped_by_signals() as stop, handled(settings):
        node = open_node(settings, need_key=True) if once else wait_for_base_layer(settings, stop)
        if node is None:
            return  # stopped while waiting
        # the loaded state lives as long as the process: out of the collector's sight, and young
        # collections rarer (as rampart-sequencer does; the spec's records hold no cycles)
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        # The signature pool's own threads (the executor's manager, its queue's feeder) hand each
        # chunk to a worker only once they hold the GIL, which the node's executing thread gives
        # up every switch interval: at CPython's 5 ms the worker waited for work ~18% of the time
        # (py-spy). bench/sustained.py, steady replay: 13,800-14,500 trades/s against 12,300-13,400.
        sys.setswitchinterval(SWITCH_INTERVAL)
        err.print(f"rampart-verifier {node.address} following {settings.l1_url} ({node.preset.name} preset)")
        served = None
        try:
            if settings.metrics_port is not None:
                try:
                    served = MetricsServer(settings.metrics_host, settings.metrics_port, node.sessions,
                                           settings.l1_url, node.address, node.state_records)
                    err.print(f"metrics at http://{settings.metrics_host}:{served.port}/metrics")
                except OSError as exc:  # watching matters more than being watched: verify all the same
                    err.print(f"[bold red]warning:[/] metrics not served on {settings.metrics_host}:"
                              f"{settings.metrics_port}: {exc}")
            with Bars(err) as bars:
                node.progress = bars
                if once:
                    while node.sync().busy and not stop.is_set():
                        pass
                    node.save_checkpoint(force=False)
                else:
                    node.run(stop.is_set, stop.wait)
        finally:
            if served is not None:
                served.close()
            node.close()


# --- reads ------------------------------------------------------------------------------------------


@app.command()
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Head followed, batches verified, lag, bond balance, games, recent alerts."""
    settings = settings_of(ctx)
    with handled(settings):
        node = open_node(settings, need_key=False)
        with node.sessions() as s:
            data = views.status(s, node.client, node.address, settings.l1_url)
        node.close()
    if emit(data, as_json):
        return
    v, lag, g = data["verified"], data["lag"], data["games"]
    t = Table(show_header=False, box=None)
    t.add_row("verifier", str(data["address"] or "(no key)"))
    t.add_row("base layer", f"{data['l1']['url']}  block {data['l1']['head_block']}  time {data['l1']['time']}")
    t.add_row("rollup head", f"index {data['l1']['rollup_head_index']} (batch {data['l1']['rollup_head_batch_id']})")
    t.add_row("verified head", f"index {v['head_index']} (batch {v['head_batch_id']})  root {short(v['head_root'])}")
    t.add_row("batches", "  ".join(f"{k} {n}" for k, n in sorted(v["batches"].items())) or "none yet")
    t.add_row("lag", f"{lag['batches']} batches, {lag['unverified']} unverified, {lag['seconds']} s")
    if "bond" in data:
        b = data["bond"]
        t.add_row("bonds", f"balance {eth(b['balance'])}  locked {eth(b['locked_total'])}  "
                           f"claimable {eth(b['claimable'])}")
    t.add_row("games", f"open {g['open']}  won {g['won']}  lost {g['lost']}  refunded {g['refunded']}  "
              f"watching {g['watched_open']}"
              + (f"  [bold red]overdue {g['overdue']}[/] (out of clock, unresolved)" if g["overdue"] else ""))
    out.print(t)
    for a in data["alerts"]:
        out.print(f"[yellow]alert[/] {a['kind']}: {a['message']}")


@app.command()
def batches(
    ctx: typer.Context,
    as_json: JsonFlag = False,
    limit: Annotated[int, typer.Option(help="Show the newest N.")] = 50,
    verdict: Annotated[str | None, typer.Option(help="valid, invalid, skipped or unverified.")] = None,
) -> None:
    """Batches followed, each with its verification result."""
    settings = settings_of(ctx)
    with handled(settings):
        node = open_node(settings, need_key=False)
        with node.sessions() as s:
            data = views.batches(s, limit, verdict)
        node.close()
    if emit(data, as_json):
        return
    t = Table("batch", "index", "status", "verdict", "txs", "trades", "claimed root", "ours", "games")
    colour = {"valid": "green", "invalid": "red", "skipped": "yellow"}
    for b in data:
        v = b["verdict"] or "unverified"
        t.add_row(str(b["batch_id"]), str(b["index"]), b["l1_status"], f"[{colour.get(v, 'dim')}]{v}[/]",
                  str(b["tx_count"]), str(b["trades"]), short(b["claimed_root"]), short(b["computed_root"]),
                  ",".join(map(str, b["games"])))
    out.print(t)


@app.command()
def games(
    ctx: typer.Context,
    as_json: JsonFlag = False,
    mine: Annotated[bool, typer.Option(help="Only the games this verifier plays.")] = False,
    status_: Annotated[str | None, typer.Option("--status", help="open, challenger_won, sequencer_won, refunded.")] = None,
) -> None:
    """Games this verifier plays or watches, with their bisection interval and clocks."""
    settings = settings_of(ctx)
    with handled(settings):
        node = open_node(settings, need_key=False)
        with node.sessions() as s:
            data = views.games(s, mine, status_)
        node.close()
    if emit(data, as_json):
        return
    t = Table("game", "batch", "mine", "status", "phase", "interval", "turn", "clock seq", "clock chal")
    for g in data:
        t.add_row(str(g["game_id"]), str(g["batch_id"]), "yes" if g["mine"] else "", g["status"], g["phase"],
                  f"[{g['lo']}, {g['hi']}] of {g['tx_count']}", g["turn"], str(g["clocks"]["sequencer"]),
                  str(g["clocks"]["challenger"]))
    out.print(t)


@app.command()
def game(ctx: typer.Context, game_id: int, as_json: JsonFlag = False) -> None:
    """One game: the bisection interval, each move, both clocks now, the outcome."""
    settings = settings_of(ctx)
    with handled(settings):
        node = open_node(settings, need_key=False)
        try:
            with node.sessions() as s:
                data = views.game_detail(s, game_id, node.client)
        except L1Error as exc:
            if exc.code != "not_found":
                raise
            data = None
        finally:
            node.close()
        if data is None:
            raise UnknownBatch(f"no game {game_id} on the base layer")
    if emit(data, as_json):
        return
    iv = data["interval"]
    out.print(f"game {game_id} on batch {data['batch_id']}: [bold]{data['status']}[/] ({data['phase']}), "
              f"challenger {data['challenger']}{' (us)' if data['mine'] else ''}")
    out.print(f"interval [{iv['lo']}, {iv['hi']}] of {data['tx_count']} transactions ({data['rounds']} rounds); "
              f"agreed {short(iv['lo_root'])}, disputed {short(iv['hi_root'])}")
    clocks = f"clocks: sequencer {data['clocks']['sequencer']} s, challenger {data['clocks']['challenger']} s"
    if data["deadline"] is not None:
        clocks += f"; {data['turn']} to move before {data['deadline']} (now {data['now']})"
    out.print(clocks)
    t = Table("block", "seat", "move", "detail")
    for m in data["moves"]:
        detail = {k: v for k, v in m.items() if k not in ("event_id", "block", "seat", "kind")}
        t.add_row(str(m["block"]), m["seat"] or "", m["kind"], json.dumps(detail))
    out.print(t)
    if data["payout"]:
        out.print("payout: " + ", ".join(f"{k} {eth(v)}" for k, v in data["payout"].items()))


@app.command()
def bonds(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Balance, bonds locked in open games, and what is claimable."""
    settings = settings_of(ctx)
    with handled(settings):
        key = keyfile.load_key(settings.key_file)
        with L1Client(settings.l1_url, key, timeout=settings.l1_timeout) as client:
            data = views.bonds(client, client.address)  # type: ignore[arg-type]
            data["address"] = client.address
    if emit(data, as_json):
        return
    out.print(f"{data['address']}: balance {eth(data['balance'])}, locked {eth(data['locked_total'])}, "
              f"claimable {eth(data['claimable'])}")
    for lock in data["locked"]:
        out.print(f"  game {lock['game_id']} (batch {lock['batch_id']}): {eth(lock['amount'])}")


@app.command()
def claim(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Claim credited bonds and winnings."""
    settings = settings_of(ctx)
    with handled(settings):
        key = keyfile.load_key(settings.key_file)
        with L1Client(settings.l1_url, key, timeout=settings.l1_timeout) as client:
            claimable = int(client.bonds(client.address)["claimable"])  # type: ignore[arg-type]
            claimed = client.claim() if claimable > 0 else 0
    if emit({"claimed": claimed}, as_json):
        return
    out.print(f"claimed {eth(claimed)}" if claimed else "nothing to claim")


# --- acting by hand -----------------------------------------------------------------------------------


@app.command()
def challenge(
    ctx: typer.Context,
    batch_id: Annotated[int, typer.Argument(help="The base layer's batch id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Open a game against a batch by hand; `run` plays it."""
    settings = settings_of(ctx)
    with handled(settings):
        node = open_node(settings, need_key=True)
        try:
            try:
                batch = node.client.batch(batch_id)
            except L1Error as exc:
                if exc.code == "not_found":
                    raise UnknownBatch(f"no batch {batch_id} on the base layer") from None
                raise
            with node.sessions() as s:
                row = s.get(BatchRow, batch_id)
                verdict = row.verdict if row is not None else None
            bond = node.preset.challenger_bond
            if verdict == "valid":
                err.print(f"[bold red]warning:[/] this verifier found batch {batch_id} VALID: "
                          "a game against it loses the bond")
            elif verdict is None:
                err.print(f"[yellow]note:[/] batch {batch_id} is not verified yet (run the node first)")
            if not yes and not typer.confirm(f"Open a game against batch {batch_id} (index {batch['index']}, "
                                             f"{batch['status']}) with a bond of {eth(bond)}?", err=True):
                raise typer.Exit(1)
            game_id = node.open_game(batch_id, why="opened by hand")
        finally:
            node.close()
        if game_id is None:
            raise VerifierError(f"the game against batch {batch_id} could not be opened (see `status` alerts)")
    if emit({"game_id": game_id, "batch_id": batch_id, "bond": bond, "verdict": verdict}, as_json):
        return
    out.print(f"opened game {game_id} against batch {batch_id}; `rampart-verifier run` plays it")


@app.command()
def replay(
    ctx: typer.Context,
    batch_id: Annotated[int, typer.Argument(help="The base layer's batch id.")],
    tx: Annotated[int | None, typer.Option(help="Also show what this transaction touched.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-execute a batch locally: where it diverges, what it touched, expected vs claimed."""
    from verifier.diagnose import diagnose

    settings = settings_of(ctx)
    with handled(settings):
        node = open_node(settings, need_key=False)
        try:
            with Bars(err) as bars:
                node.progress = bars
                data = diagnose(node, batch_id, tx, bars)
        finally:
            node.close()
    if emit(data, as_json):
        return
    ok = data["expected_root"] == data["claimed_root"] and data["rejected_index"] is None
    out.print(f"batch {batch_id} (index {data['index']}), {data['tx_count']} transactions: "
              + ("[green]our root matches the claim[/]" if ok else "[red]the claim is wrong[/]"))
    out.print(f"  expected post root {data['expected_root']}\n  claimed  post root {data['claimed_root']}")
    for name, (expected, claimed) in data["header"].items():
        out.print(f"  header {name}: expected {expected}, claimed {claimed}")
    if data["diverges"]:
        d = data["diverges"]
        out.print(f"first divergence: after index {d['from']}, at or before index {d['to']}")
        for c in data.get("candidates", []):
            out.print(f"  candidate transaction {c['index']}: {c['kind']}")
    txn = data.get("transaction")
    if txn:
        out.print(f"transaction {txn['index']}: [bold]{txn['kind']}[/] {json.dumps(txn['tx'])}")
        if txn["rejected"]:
            out.print(f"  [red]rejected by the rules:[/] {txn['rejected']} (the batch counts it as applied)")
        else:
            out.print(f"  expected root after {txn['expected_root_after']}")
            if txn["claimed_root_after"]:
                out.print(f"  claimed  root after {txn['claimed_root_after']}")
        t = Table("leaf", "identity", "before", "expected after")
        for leaf in txn["leaves"]:
            t.add_row(leaf["kind"], short(leaf["identity"], 16), json.dumps(leaf["before"]),
                      json.dumps(leaf["expected"]))
        out.print(t)


# --- keys ---------------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(ctx: typer.Context, force: Annotated[bool, typer.Option(help="Replace an existing key.")] = False,
                as_json: JsonFlag = False) -> None:
    """Create a new operator key in the key file (mode 0600)."""
    settings = settings_of(ctx)
    with handled(settings):
        address = keyfile.write_key(settings.key_file, keyfile.create_key(), overwrite=force)
    if not emit({"address": "0x" + address.hex(), "key_file": str(settings.key_file)}, as_json):
        out.print(f"created {settings.key_file} for 0x{address.hex()}")


@keys_app.command("import")
def keys_import(
    ctx: typer.Context,
    private_key: Annotated[str | None, typer.Argument(help="64 hex digits; asked for (hidden) if left out.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing key.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import an existing private key into the key file (mode 0600)."""
    settings = settings_of(ctx)
    with handled(settings):
        text = private_key if private_key is not None else typer.prompt("private key", hide_input=True, err=True)
        address = keyfile.write_key(settings.key_file, keyfile.parse_private_key(text), overwrite=force)
    if not emit({"address": "0x" + address.hex(), "key_file": str(settings.key_file)}, as_json):
        out.print(f"imported the key of 0x{address.hex()} into {settings.key_file}")


@keys_app.command("show")
def keys_show(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The operator address in the key file."""
    from contracts_spec.crypto import address_of_private_key

    settings = settings_of(ctx)
    with handled(settings):
        address = address_of_private_key(keyfile.load_key(settings.key_file))
    if not emit({"address": "0x" + address.hex(), "key_file": str(settings.key_file)}, as_json):
        out.print(f"0x{address.hex()}  ({settings.key_file})")


@quiet_broken_pipe
def main() -> None:
    app()


if __name__ == "__main__":
    main()
