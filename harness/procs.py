"""Real processes on loopback: free ports, one process group each, logs in files, readiness by
polling, and a stop that leaves nothing running (SIGTERM to the group, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceExited(RuntimeError):
    """A service's process ended while it was waited for: no use waiting longer."""

    def __init__(self, name: str, log: Path, tail: str) -> None:
        super().__init__(f"{name} exited: {tail}")
        self.name, self.log, self.tail = name, log, tail

    @property
    def last_line(self) -> str:
        """What the service said last (its error, when it refused to start)."""
        lines = [line.strip() for line in self.tail.splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


def wait_for(predicate: Callable[[], Any], what: str, bound: float = 60.0, poll: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy (bounded); exceptions count as not yet, except a
    service that exited (ServiceExited), which is raised at once."""
    deadline = time.monotonic() + bound
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ServiceExited:
            raise
        except Exception as exc:  # not ready yet
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}" + (f" (last error: {last!r})" if last else ""))
        time.sleep(poll)


class Proc:
    """One service process in its own process group, with its output in `log`."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str | None] | None = None,
                 ready_url: str | None = None) -> None:
        self.name, self.argv, self.log, self.ready_url = name, argv, log, ready_url
        merged: dict[str, str | None] = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}  # None: not inherited
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, bound: float = 60.0) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n--- start {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=_die_with_parent)
        self.starts += 1
        if self.ready_url is not None:
            url = self.ready_url

            def ready() -> bool:
                self.check_alive()
                return httpx.get(url, timeout=2).status_code < 500

            wait_for(ready, f"{self.name} at {url}", bound)
        return self

    def check_alive(self) -> None:
        """ServiceExited (with the end of its log) if the process is not running."""
        if not self.alive():
            raise ServiceExited(self.name, self.log, self.tail())

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill9(self) -> None:
        """kill -9, the whole group at once (a crash)."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL whatever is left after `grace` seconds."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)  # children that outlived their parent, too
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass


def _die_with_parent() -> None:
    """In the child: if the harness dies (even by kill -9), the kernel kills this process too."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def console(name: str) -> list[str]:
    """The argv prefix of one of our console scripts, in the interpreter running us."""
    modules = {"rampart-l1": "l1_mock.cli", "rampart-sequencer": "sequencer.cli", "rampart-oracle": "sequencer.oracle_feeder",
               "rampart-verifier": "verifier.cli", "rampart-harness": "harness.cli"}
    return [sys.executable, "-m", modules[name]]
