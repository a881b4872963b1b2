"""The fault matrix under pytest: `rampart-harness matrix --json` on one network of real processes
(base layer, sequencer with dev-only fault injection, two verifiers, the sequencer's stand-in
defender, dishonest challengers), game clocks driven by the base layer's dev time advance. Every
scenario must end with its expected winner and balances equal to the honest replay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUDGET = 600  # seconds: the whole matrix on a 2-core machine


@pytest.mark.timeout(BUDGET + 120)
def test_every_scenario_ends_as_expected(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "matrix", "--json", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=BUDGET + 60, env={**os.environ})
    elapsed = time.monotonic() - started
    assert done.stdout.strip(), done.stderr[-6000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    scenarios = report["scenarios"]
    assert len(scenarios) >= 23
    wrong = [s for s in scenarios if s["winner"] != s["expected_winner"] or not s["balances_match_honest_replay"]]
    detail = (tmp_path / "matrix-full.json").read_text() if wrong else ""
    assert not wrong, f"{wrong}\n{detail[-8000:]}"
    assert done.returncode == 0
    for s in scenarios:
        assert set(s) == {"name", "expected_winner", "winner", "detected_by", "moves", "seconds",
                          "balances_match_honest_replay"}
        if s["expected_winner"] == "challenger":
            assert s["detected_by"], s  # a verifier (or the base layer itself) caught it
    assert elapsed < BUDGET, f"the matrix took {elapsed:.0f} s"
    assert Path(report["picture"]).read_text().startswith("<!doctype html>")
