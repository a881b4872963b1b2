"""Every console program whose stdout is closed early (`rampart-demo | head -1`) ends quietly:
exit code 141 (128 + SIGPIPE) or 0, nothing on stderr, never a BrokenPipeError traceback
(l1_mock/cli_common.quiet_broken_pipe). The pipes here are real: read one line and close, or
closed before the program writes at all (then every write fails, whatever the machine's speed)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from contracts_spec.params import genesis_to_json
from l1_mock.cli_common import STDOUT_CLOSED, quiet_broken_pipe
from sequencer.scenario import Keys, dev_genesis

from .conftest import free_port


def script(name: str) -> str:
    """The installed console script (pyproject's [project.scripts]) next to this interpreter."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / name).exists():
            return str(folder / name)
    pytest.skip(f"{name} is not installed")


def env(tmp: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAMPART_")}
    return {**clean, "RAMPART_TRADER_HOME": str(tmp)}


def closed_at_once(args: list[str], tmp: Path) -> tuple[int, str]:
    """Run with a stdout pipe nobody reads (closed before the program writes); (exit code, stderr)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(tmp), cwd=tmp)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        return proc.wait(120), err
    finally:
        if proc.poll() is None:  # pragma: no cover - only if it went on despite its stdout
            proc.kill()
            proc.wait(10)


def test_the_demo_piped_into_head(tmp_path: Path) -> None:
    proc = subprocess.Popen([script("rampart-demo")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env(tmp_path))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = proc.wait(120)
    assert first == b"Rampart spec demo: one batch executed by contracts_spec\n"
    # 141 when it wrote after the close, 0 when all of it fit in the pipe before: quiet either way
    assert code in (0, STDOUT_CLOSED) and err == "", (code, err)
    assert closed_at_once([script("rampart-demo")], tmp_path) == (STDOUT_CLOSED, "")


@pytest.mark.parametrize("args", [
    ["rampart-trader", "--json", "keys", "list"],  # print()
    ["rampart-trader", "keys", "list"],  # rich
    ["rampart-trader", "--help"],
    ["rampart-verifier", "--help"],
    ["rampart-harness", "scenarios"],
], ids=lambda a: " ".join(a))
def test_typer_programs_end_with_141(args: list[str], tmp_path: Path) -> None:
    assert closed_at_once([script(args[0]), *args[1:]], tmp_path) == (STDOUT_CLOSED, "")


@pytest.mark.parametrize("name", ["rampart-l1", "rampart-sequencer", "rampart-oracle"])
def test_argparse_help_to_a_closed_stdout_is_quiet(name: str, tmp_path: Path) -> None:
    code, err = closed_at_once([script(name), "--help"], tmp_path)
    assert code in (0, STDOUT_CLOSED) and err == "", (code, err)


def test_a_server_whose_stdout_is_closed_ends_quietly(tmp_path: Path) -> None:
    """rampart-l1 says where it listens on stdout: with nobody reading, it ends there, quietly."""
    (tmp_path / "genesis.json").write_text(genesis_to_json(dev_genesis(Keys(), genesis_time=1_700_000_000)))
    code, err = closed_at_once([script("rampart-l1"), "--genesis", str(tmp_path / "genesis.json"),
                                "--db", f"sqlite:///{tmp_path / 'l1.db'}", "--port", str(free_port())], tmp_path)
    assert (code, err) == (STDOUT_CLOSED, "")


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden() -> None:
    @quiet_broken_pipe
    def main() -> None:
        raise BrokenPipeError(32, "a worker's pipe")

    with pytest.raises(BrokenPipeError):
        main()
