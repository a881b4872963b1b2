"""`rampart-harness`: the fault matrix, the local network (./start), and the players the harness
runs as their own processes (the sequencer's stand-in defender, a dishonest challenger).

What a user can fix is one line and a non-zero exit, never a traceback: a --workdir that cannot be
made or a --postgres (RAMPART_DB) that is no database URL exits 2; a database that does not
answer, a service of the network that exits or does not answer while it starts, exits 1.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from harness.procs import ServiceExited
from l1_mock.cli_common import (
    BAD_SETTINGS,
    database_url,
    first_line,
    l1_unreachable,
    quiet_broken_pipe,
    shown_url,
)
from l1_mock.client import L1Error

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="Rampart's challenge-game harness: a local network with an injected fault, and the matrix.")
out = Console()
err = Console(stderr=True)


def _fail(line: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
    raise typer.Exit(code)


def _workdir(given: Path | None, prefix: str) -> Path:
    if given is not None:
        try:
            given.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _fail(f"--workdir {given}: {exc.strerror or exc}", BAD_SETTINGS)
        return given
    return Path(tempfile.mkdtemp(prefix=prefix))


def _postgres(given: str | None) -> str | None:
    """The PostgreSQL URL of --postgres, else RAMPART_DB, else None (SQLite): a URL, and a
    database that answers, before any service is started on it."""
    url = given or os.environ.get("RAMPART_DB") or None
    if url is None:
        return None
    name = "--postgres" if given else "RAMPART_DB"
    try:
        database_url(url)
    except ValueError as exc:
        _fail(f"{name}: {exc}", BAD_SETTINGS)
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except (SQLAlchemyError, ImportError) as exc:
        _fail(f"the database at {shown_url(url)} ({name}) does not answer: {first_line(exc)}", 1)
    return url


@contextmanager
def _reported(work: Path) -> Iterator[None]:
    """A network that does not come up (or goes away) as one line naming what and its log."""
    try:
        yield
    except ServiceExited as exc:
        _fail(f"the {exc.name} exited: {exc.last_line} (its log: {exc.log})", 1)
    except TimeoutError as exc:
        _fail(f"{first_line(exc)} (logs in {work})", 1)
    except L1Error as exc:
        reason = l1_unreachable(exc)
        if reason is None:
            raise
        _fail(f"the base layer stopped answering ({reason}); logs in {work}", 1)


@contextmanager
def _base_layer(url: str) -> Iterator[None]:
    """A player's base layer that does not answer, as one line naming it."""
    try:
        yield
    except L1Error as exc:
        reason = l1_unreachable(exc)
        if reason is None:
            raise
        _fail(f"the base layer at {url} does not answer ({reason})", 1)


@app.command()
def matrix(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    only: Annotated[list[str] | None, typer.Option(help="Run the scenarios whose name contains this (repeatable).")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Logs, databases and reports (default: a new temp dir).")] = None,
    postgres: Annotated[str | None, typer.Option(help="Run every service on this PostgreSQL URL.")] = None,
    picture: Annotated[Path | None, typer.Option(help="Where to write one game's picture (HTML).")] = None,
) -> None:
    """Run every scenario on one network of real processes; exit 0 only if each ends as expected."""
    from harness.lab import Lab
    from harness.network import Network, Options
    from harness.report import game_picture, table
    from harness.scenarios import SCENARIOS, run_scenario

    chosen = [s for s in SCENARIOS if not only or any(o.lower() in s.name.lower() for o in only)]
    if not chosen:
        err.print(f"no scenario matches {only}")
        raise typer.Exit(2)
    work = _workdir(workdir, "rampart-matrix-")
    database = _postgres(postgres)
    started = time.monotonic()
    results = []
    net = Network(Options(work, postgres=database, faults=True, batch_interval=0.5))
    _stop_on_signals()
    with _reported(work):
        try:
            net.start()
            lab = Lab(net, liar=any(s.name.startswith(("dishonest", "honest and")) for s in chosen))
            try:
                for s in chosen:
                    if not as_json:
                        err.print(f"[bold]{s.name}[/] …")
                    r = run_scenario(lab, s)
                    results.append(r)
                    if not as_json:
                        err.print(f"  {'[green]ok[/]' if r.ok else '[red]FAIL[/]'} winner {r.winner}, detected by "
                                  f"{r.detected_by}, {r.moves} moves, {r.seconds} s {r.error or ''}")
                shown = _picture(lab, results, picture or work / "game.html", game_picture)
            finally:
                lab.close()
        finally:
            net.stop()
    total = round(time.monotonic() - started, 1)
    full = work / "matrix-full.json"
    full.write_text(json.dumps({"seconds": total, "scenarios": [r.full() for r in results]}, indent=2, default=str))
    ok = bool(results) and all(r.ok for r in results)
    if as_json:
        print(json.dumps({"scenarios": [r.contract() for r in results], "ok": ok, "seconds": total,
                          "details": str(full), "picture": shown}))
    else:
        table(results, out)
        out.print(f"{total} s; details in {full}; a game's picture in {shown}; logs in {work}")
    raise typer.Exit(0 if ok else 1)


def _picture(lab: object, results: list, path: Path, render: object) -> str | None:
    """Each scenario's decisive game drawn in games/; `path` gets the one with the most moves."""
    from harness.lab import Lab

    assert isinstance(lab, Lab)
    drawn: list[tuple[int, str]] = []
    folder = path.parent / "games"
    for i, r in enumerate(results):
        if r.batch_id is None:
            continue
        games = lab.obs.games_on(r.batch_id)
        game = next((g for g in games if g.step is not None), games[0] if games else None)
        if game is None:
            continue
        names = {int(r.step["index"]): r.step["tx"]} if r.step else {}
        page = render(game, lab.obs.block_time, f"{r.name}: {r.what or ''}", names)  # type: ignore[operator]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i + 1:02d}.html").write_text(page)
        drawn.append((r.moves, page))
    if not drawn:
        return None
    path.write_text(max(drawn, key=lambda d: d[0])[1])
    return str(path)


@app.command()
def scenarios() -> None:
    """List the matrix's scenarios."""
    from harness.scenarios import SCENARIOS

    for s in SCENARIOS:
        out.print(f"{s.name}  [dim](expected winner: {s.expected})[/]")


@app.command()
def up(
    postgres: Annotated[str | None, typer.Option(help="PostgreSQL URL (env RAMPART_DB); default SQLite files.")] = None,
    exit_after_demo: Annotated[bool, typer.Option("--exit-after-demo", "--demo-only",
                                                  help="Run the demo to its end, stop everything, exit.")] = False,
    workdir: Annotated[Path | None, typer.Option(help="Databases and logs (default: a new temp dir).")] = None,
) -> None:
    """The local network (./start): base layer, oracle feeder, sequencer, two verifiers, a demo."""
    from harness.demo import run

    database = _postgres(postgres)
    work = _workdir(workdir, "rampart-local-")
    with _reported(work):
        code = run(database, exit_after_demo, work)
    raise typer.Exit(code)


@app.command(hidden=True)
def defend(
    l1: Annotated[str, typer.Option()],
    db: Annotated[str, typer.Option()],
    db_schema: Annotated[str | None, typer.Option()] = None,
    fault_log: Annotated[Path | None, typer.Option()] = None,
    lies_only: Annotated[bool, typer.Option()] = False,
) -> None:
    """The liar's defender: the sequencer's seat in games against the lies faults.py posted."""
    from harness.sides import StandIn

    _logging()
    stop = _stop_on_signals()
    with _base_layer(l1):
        side = StandIn(l1, db, db_schema, fault_log, lies_only, Path(tempfile.gettempdir()))
        try:
            side.run(stop.is_set)
        finally:
            side.close()


@app.command(hidden=True)
def liar(
    l1: Annotated[str, typer.Option()],
    db: Annotated[str, typer.Option()],
    key: Annotated[str, typer.Option()],
    commands: Annotated[Path, typer.Option(help="JSON lines {batch_id, lie_at}: batches to challenge.")],
    db_schema: Annotated[str | None, typer.Option()] = None,
    workdir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """A dishonest challenger: challenges the batches it is told to, with a view wrong after one transaction."""
    from harness.sides import Liar

    _logging()
    stop = _stop_on_signals()
    with _base_layer(l1):
        side = Liar(l1, bytes.fromhex(key.removeprefix("0x")), db, db_schema, workdir or Path(tempfile.gettempdir()))
        try:
            side.serve(commands, stop.is_set)
        finally:
            side.close()


def _logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("rampart").setLevel(logging.INFO)


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT raise KeyboardInterrupt in the main thread (finally blocks stop what we
    started) and set the returned event for loops that poll it."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            return
        stop.set()
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return stop


@quiet_broken_pipe
def main() -> None:
    app()


if __name__ == "__main__":
    main()
