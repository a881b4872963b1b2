"""The README's main command, for real: `./start --exit-after-demo` installs (once), starts the base
layer, the oracle feeder, the sequencer and two verifiers as processes, runs the traders' demo
(orders, a liquidation, a withdrawal claimed on the base layer), stops everything and exits 0.
Every process it started is gone afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_start_runs_the_demo_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = {**os.environ, "VENV": os.environ.get("VENV", sys.prefix)}
    env.pop("RAMPART_DB", None)
    done = subprocess.run([str(ROOT / "start"), "--exit-after-demo", "--workdir", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=540)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "dave is liquidated" in out, out[-4000:]
    assert "erin claims it on the base layer" in out, out[-4000:]
    assert "all valid" in out and "every process stopped" in out, out[-4000:]
    assert "/docs" in out and "status" in out  # where to look
    pids = [int(p) for p in re.findall(r"pid\s+(\d+)", out)]
    assert len(pids) >= 5  # base layer, sequencer, two verifiers, oracle feeder (and a stand-in defender)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
