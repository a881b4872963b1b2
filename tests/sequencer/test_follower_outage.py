"""A running sequencer whose base layer goes away and comes back: the follower says once that it
stopped answering (with the error) and once that it answers again (with how long it was away),
not a line or a traceback per poll; /health and /metrics say whether the base layer answers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
from trader_net import Net, Proc, wait_for

from sequencer.scenario import Keys


def health(net: Net) -> dict[str, Any]:
    return dict(httpx.get(net.seq_url + "/health", timeout=10).json())


def l1_up_metric(net: Net) -> float:
    for line in httpx.get(net.seq_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("rampart_l1_up "):
            return float(line.split()[1])
    raise AssertionError("no rampart_l1_up in /metrics")


def test_a_base_layer_outage_is_said_once_when_it_starts_and_once_when_it_ends(tmp_path: Path) -> None:
    net = Net(tmp_path, ("sqlite", None), Keys())
    try:
        net.start()
        alice = net.trader("alice")
        net.fund(alice, 1_000_000)
        h = health(net)
        assert h["l1Up"] is True and h["l1AwaySeconds"] is None and h["l1FailedPolls"] == 0
        assert l1_up_metric(net) == 1

        assert net.l1 is not None
        net.l1.stop()
        # many polls fail (the follower polls every 20 ms): counted, not each logged
        wait_for(lambda: health(net)["l1FailedPolls"] >= 20, "the follower to poll the missing base layer")
        h = health(net)
        assert h["l1Up"] is False and h["l1AwaySeconds"] is not None and h["status"] == "ok"
        assert l1_up_metric(net) == 0

        net.l1 = Proc([sys.executable, "-m", "l1_mock.cli", "--genesis", str(tmp_path / "genesis.json"),
                       "--db", f"sqlite:///{tmp_path / 'l1.db'}", "--port", str(net.l1_port), "--manual-time"],
                      tmp_path / "l1-again.log", net.l1_url + "/info")
        wait_for(lambda: health(net)["l1Up"], "the follower to reach the base layer again")
        h = health(net)
        assert h["l1AwaySeconds"] is None and h["l1FailedPolls"] == 0
        assert l1_up_metric(net) == 1
        net.advance(5)  # it follows again: the new time reaches the sequencer
    finally:
        net.stop()
    log = (tmp_path / "seq.log").read_text()
    away = [line for line in log.splitlines() if "stopped answering" in line]
    back = [line for line in log.splitlines() if "answers again" in line]
    assert len(away) == 1 and len(back) == 1, log[-3000:]
    assert f"base layer at {net.l1_url} stopped answering: unreachable: " in away[0]
    # the error as the poll met it: refused, or reset when the stop caught a request in flight
    assert "Connection refused" in away[0] or "Connection reset" in away[0], away[0]
    assert f"base layer at {net.l1_url} answers again after " in back[0] and " s away (" in back[0]
    assert "Traceback" not in log and "base layer: unreachable" not in log, log[-3000:]
