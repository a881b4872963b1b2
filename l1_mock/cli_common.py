"""What Rampart's command-line programs share, so each says the same thing the same way: a bad
setting is one line per setting naming its flag or variable and exit code 2, never a traceback;
a service that waits for another (started after it, or restarting) says so once and stops on
SIGINT or SIGTERM meanwhile; a database URL is shown without its password.

It lives here because every program (rampart-l1, -sequencer, -oracle, -verifier, -trader,
-harness) already depends on this package, the base layer's client among it.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError

from l1_mock.client import L1Error

T = TypeVar("T")

BAD_SETTINGS = 2  # the exit code of a refused setting (and of other configuration errors)


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
