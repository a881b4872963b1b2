#!/usr/bin/env python3
"""The image's entry point: the command names the role, a console script of the rampart package
(rampart-l1, rampart-sequencer, rampart-oracle, rampart-verifier) run in this process, or any
other program (rampart-devnet, rampart-healthcheck, sh), run as it is.

Keys are read here, at run time, from files named by the environment, so no key is in the image,
the compose file or a command line. `rampart-oracle` reads no environment itself: its flags come
from RAMPART_ORACLE_<FLAG> variables here (RAMPART_ORACLE_STEP_PPM=500 is --step-ppm 500).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import MutableMapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

DIST = "rampart"
# Variables this entry point reads (the README's settings table lists them with the code's)
SEQUENCER_KEY_FILE = "RAMPART_SEQUENCER_KEY_FILE"  # key file -> RAMPART_SEQUENCER_KEY
ORACLE_KEY_FILES = "RAMPART_ORACLE_KEY_FILES"  # comma-separated key files -> rampart-oracle --keys
ORACLE_PREFIX = "RAMPART_ORACLE_"  # RAMPART_ORACLE_<FLAG> -> rampart-oracle --<flag>


def fail(message: str) -> None:
    print(f"rampart-entrypoint: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def read_key_hex(path: str) -> str:
    """The private key in a key file, refused when others can read it (verifier.keys rules)."""
    from verifier.keys import KeyFileError, load_key

    try:
        return load_key(Path(path)).hex()
    except KeyFileError as exc:
        fail(str(exc))
        raise


def console_script(name: str) -> Any:
    """The package's console script called `name`, or None."""
    for ep in entry_points(group="console_scripts", name=name):
        if ep.dist is None or ep.dist.name == DIST:
            return ep
    return None


def oracle_flags(environ: MutableMapping[str, str]) -> list[str]:
    """rampart-oracle flags from RAMPART_ORACLE_* variables; the key files become --keys."""
    flags: list[str] = []
    for var in sorted(environ):
        if var.startswith(ORACLE_PREFIX) and var != ORACLE_KEY_FILES:
            flags += ["--" + var.removeprefix(ORACLE_PREFIX).lower().replace("_", "-"), environ[var]]
    files = [f for f in environ.get(ORACLE_KEY_FILES, "").split(",") if f.strip()]
    # Verify the signer keys come from one place: argparse would silently keep the last --keys
    if files and environ.get(ORACLE_PREFIX + "KEYS"):
        fail(f"give {ORACLE_PREFIX}KEYS or {ORACLE_KEY_FILES}, not both")
    if files:
        flags += ["--keys", ",".join(read_key_hex(f.strip()) for f in files)]
    return flags


def prepare(role: str, args: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """The role's arguments after reading keys into its environment (which is changed in place)."""
    if role == "rampart-sequencer" and environ.get(SEQUENCER_KEY_FILE):
        # Verify the key is given once: two sources that disagree would be a silent choice
        if environ.get("RAMPART_SEQUENCER_KEY"):
            fail(f"give RAMPART_SEQUENCER_KEY or {SEQUENCER_KEY_FILE}, not both")
        environ["RAMPART_SEQUENCER_KEY"] = read_key_hex(environ.pop(SEQUENCER_KEY_FILE))
    if role == "rampart-oracle":
        return oracle_flags(environ) + args  # flags given on the command line win over the environment
    return args


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a role without its own SIGTERM handler stops as on Ctrl-C


def main() -> None:
    if len(sys.argv) < 2:
        scripts = sorted(ep.name for ep in entry_points(group="console_scripts") if ep.name.startswith("rampart-"))
        fail("give a command: " + ", ".join(scripts))
    role, args = sys.argv[1], sys.argv[2:]
    args = prepare(role, args, os.environ)
    ep = console_script(role)
    if ep is None:
        os.execvp(role, [role, *args])
    signal.signal(signal.SIGTERM, interrupt)
    sys.argv = [role, *args]
    sys.exit(ep.load()())


if __name__ == "__main__":
    main()
