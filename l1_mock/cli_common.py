"""What Rampart's command-line programs share, so each says the same thing the same way: a bad
setting is one line per setting naming its flag or variable and exit code 2, never a traceback;
a service that waits for another (started after it, or restarting) says so once and stops on
SIGINT or SIGTERM meanwhile; a database URL is shown without its password; a stdout closed early
(`rampart-demo | head -1`) ends the program quietly with exit code 141.

It lives here because every program (rampart-l1, -sequencer, -oracle, -verifier, -trader,
-harness) already depends on this package, the base layer's client among it.
"""

from __future__ import annotations

import argparse
import functools
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, ParamSpec, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError

from l1_mock.client import L1Error

if TYPE_CHECKING:
    from contracts_spec.types import Genesis

T = TypeVar("T")
P = ParamSpec("P")

BAD_SETTINGS = 2  # the exit code of a refused setting (and of other configuration errors)
STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (a container's
    cpuset, `taskset`), which `os.cpu_count()` ignores, so a pool is never sized for the host."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


# --- values every program checks alike ---------------------------------------------------------------


def http_url(value: str) -> str:
    """An http(s) URL with a host (and a port within range, if any)."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL such as http://127.0.0.1:8000")
    return value


def database_url(value: str) -> str:
    """A SQLAlchemy URL (sqlite:///file.db, postgresql+psycopg://user@host/db)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError("not a SQLAlchemy URL such as sqlite:///rampart.db") from None
    return value


HttpUrl = Annotated[str, AfterValidator(http_url)]
DatabaseUrl = Annotated[str, AfterValidator(database_url)]
Port = Annotated[int, Field(ge=1, le=65535)]


def shown_url(url: str) -> str:
    """A database URL fit for a log line: its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(an unreadable URL)"


def first_line(text: object) -> str:
    """The first line of an error's text (SQLAlchemy and tracebacks add more)."""
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


class Voice:
    """How a program speaks up: `PROG: line` on stderr, and `fail` ends it with that line."""

    def __init__(self, prog: str) -> None:
        self.prog = prog

    def say(self, line: str) -> None:
        print(f"{self.prog}: {line}", file=sys.stderr, flush=True)

    def fail(self, line: str, code: int = BAD_SETTINGS) -> NoReturn:
        self.say(line)
        raise SystemExit(code)


def read_genesis(path: Path, where: str, fail: Callable[[str], NoReturn]) -> Genesis:
    """The genesis in a JSON file, or `fail` with one line saying why not (`where`: how to name
    the file to the user, e.g. "--genesis path")."""
    from contracts_spec.errors import BadGenesis
    from contracts_spec.params import genesis_from_json

    try:
        return genesis_from_json(path.read_text())
    except OSError as exc:
        fail(f"{where}: cannot be read: {exc.strerror or exc}")
    except BadGenesis as exc:
        fail(f"{where}: not a genesis: {exc}")


# --- a bad setting -------------------------------------------------------------------------------------


def setting_errors(exc: ValidationError, name: Callable[[str], str], hidden: Collection[str] = ()) -> list[str]:
    """One line per bad setting: who set it (`name(field)`), what is wrong, and the value given
    (except for the `hidden` fields: keys and URLs that may hold a password)."""
    lines = []
    for e in exc.errors():
        field = "_".join(str(part) for part in e["loc"])
        line = f"{name(field)}: {e['msg'].removeprefix('Value error, ')}"
        if field not in hidden and e["type"] != "missing":
            line += f", got {e.get('input')!r}"
        lines.append(line)
    return lines


def load_settings(make: Callable[[], T], name: Callable[[str], str], say: Callable[[str], None],
                  hidden: Collection[str] = ()) -> T:
    """`make()` (a pydantic settings model); a bad value is `say`-ed, one line per setting, and the
    program exits with BAD_SETTINGS before anything started."""
    try:
        return make()
    except ValidationError as exc:
        for line in setting_errors(exc, name, hidden):
            say(line)
        raise SystemExit(BAD_SETTINGS) from None


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each setting's flag, by the attribute argparse stores it in (--l1 for l1_url)."""
    return {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}


def named_by(flags: Mapping[str, str], given: Collection[str], env_prefix: str | None = None) -> Callable[[str], str]:
    """A setting's name as the user gave it: its flag when given on the command line, else its
    variable (env_prefix + FIELD) when the program reads its environment, else its flag."""

    def name(field: str) -> str:
        if field in given or env_prefix is None:
            return flags.get(field, field)
        return env_prefix + field.upper()

    return name


# --- waiting for another service -------------------------------------------------------------------------


@contextmanager
def stopped_by_signals() -> Iterator[threading.Event]:
    """An event SIGINT and SIGTERM set while inside; the previous handlers come back after. (Off
    the main thread, where Python takes no handler, only the event.)"""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def l1_unreachable(exc: Exception) -> str | None:
    """Why the base layer does not answer, if that is what `exc` says (else None)."""
    return exc.message if isinstance(exc, L1Error) and exc.code == "unreachable" else None


def wait_until_up(attempt: Callable[[], T], down: Callable[[Exception], str | None], say: Callable[[str], None],
                  stop: threading.Event, pause: float) -> T | None:
    """`attempt()` again every `pause` seconds while it fails because a service does not answer
    yet (`down(exc)` gives the reason, None for any other failure, which is raised); `say(reason)`
    the first time only. None if `stop` is set meanwhile."""
    waiting = False
    while True:
        try:
            return attempt()
        except Exception as exc:
            reason = down(exc)
            if reason is None:
                raise
            if not waiting:
                say(reason)
                waiting = True
        if stop.wait(pause):
            return None


# --- a reader that went away ----------------------------------------------------------------------------


def quiet_broken_pipe(main: Callable[P, T]) -> Callable[P, T]:
    """A console entry point that ends quietly when its stdout is closed early (`| head -1`):
    exit code STDOUT_CLOSED, no traceback and no "Exception ignored" at exit (stdout is pointed at
    /dev/null, the recipe of Python's signal docs). A BrokenPipeError from anything but stdout
    (a socket, a worker's pipe) is not hidden. Click/typer and rich catch it themselves and exit 1
    (click marks stdout with its flush wrapper, rich points it at /dev/null): that exit is turned
    into the same code."""

    @functools.wraps(main)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        before = _stdout_identity()
        try:
            result = main(*args, **kwargs)
            sys.stdout.flush()  # what is still buffered fails here, not at the interpreter's exit
            return result
        except BrokenPipeError:
            if not _stdout_broken():
                raise
        except SystemExit as exc:
            if not (exc.code == 1 and _closed_by_a_library(before)) and _flushed():
                raise
        _silence_stdout()
        raise SystemExit(STDOUT_CLOSED) from None

    return run


def _stdout_identity() -> tuple[int, int] | None:
    try:
        st = os.fstat(_stdout_fd())
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _stdout_fd() -> int:
    return sys.__stdout__.fileno() if sys.__stdout__ is not None else 1


def _closed_by_a_library(before: tuple[int, int] | None) -> bool:
    """Whether click (its flush wrapper on sys.stdout) or rich (stdout's descriptor moved from
    what it was to /dev/null) ended the program over a closed stdout."""
    if type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper":
        return True
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    now = _stdout_identity()
    return now != before and now == (null.st_dev, null.st_ino)


def _flushed() -> bool:
    """Flush stdout: False if its reader is gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return not _stdout_broken()
    except (OSError, ValueError):
        pass
    return True


def _stdout_broken() -> bool:
    """Whether stdout is a pipe whose reader is gone (then writing it fails with EPIPE)."""
    try:
        poll = select.poll()
        poll.register(_stdout_fd(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no stdout: assume it is
        return True


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush has somewhere to go."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, _stdout_fd())
        os.close(devnull)
    except (OSError, ValueError):
        pass
