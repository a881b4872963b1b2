"""The oracle feeder process's code against a real sequencer: N signers, a quorum forms the price;
reports from strangers, from the future or for an old time are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts_spec import eip712
from sequencer import oracle_feeder

from .conftest import BTC, Net


def test_feeder_replays_a_file_and_quorum_sets_the_price(net: Net, tmp_path: Path) -> None:
    prices = tmp_path / "prices.jsonl"
    prices.write_text('{"prices": {"0": 500000, "1": 30000}}\n{"market": 0, "price": 501000}\n')
    oracle_feeder.main(["--sequencer", net.seq.url, "--dev-signers", "3", "--file", str(prices), "--steps", "1",
                        "--interval", "0.05"])
    markets = {m["symbol"]: m for m in net.http.get("/v1/markets").json()}
    assert markets["BTC-USD"]["oraclePrice"] == 500_000 and markets["ETH-USD"]["oraclePrice"] == 30_000
    net.advance(5)
    oracle_feeder.main(["--sequencer", net.seq.url, "--dev-signers", "2", "--start", "0=500000", "--step-ppm", "0",
                        "--steps", "1", "--interval", "0.05"])
    assert net.http.get("/v1/markets/BTC-USD").json()["oracleTime"] == net.now()


def test_bad_reports_are_refused(net: Net) -> None:
    preset, now = net.genesis.preset, net.now()

    def wire(key: bytes, price: int, t: int) -> dict[str, object]:
        r = eip712.sign_oracle_report(preset, key, BTC, price, t)
        return {"market": BTC, "price": price, "time": t, "signature": "0x" + r.signature.hex()}

    results = net.http.post("/v1/oracle/reports", json={"reports": [
        wire(net.keys["mallory"], 1, now), wire(net.keys["oracle-0"], 1, now + 100)]}).json()["results"]
    assert [r["code"] for r in results] == ["unknown_signer", "future_report"]
    net.oracle(BTC, 500_000)
    results = net.http.post("/v1/oracle/reports", json={"reports": [wire(net.keys["oracle-2"], 1, now)]}).json()
    assert results["results"][0]["code"] == "stale_report"
    assert net.http.get("/v1/markets/0").json()["oraclePrice"] == 500_000


def test_the_feeder_reads_each_reports_result_and_says_what_was_refused(net: Net, capsys: pytest.CaptureFixture[str]
                                                                         ) -> None:
    url = net.seq.url
    # three signers, quorum two: the third report comes after the price is set, which is no refusal
    oracle_feeder.main(["--sequencer", url, "--dev-signers", "3", "--start", "0=500000", "--step-ppm", "0",
                        "--steps", "1", "--interval", "0.05"])
    out, err = capsys.readouterr()
    assert json.loads(out) == {"time": net.now(), "prices": {"0": 500_000}}
    assert err == "rampart-oracle: 1 step posted: 1 accepted, 0 refused; reports: 3 accepted, 0 refused\n"

    # a key that is no registered signer next to one that is: the step is refused (no price), said once
    net.advance(5)
    keys = ",".join("0x" + net.keys[n].hex() for n in ("oracle-0", "mallory"))
    with pytest.raises(SystemExit) as ended:
        oracle_feeder.main(["--sequencer", url, "--keys", keys, "--start", "0=600000", "--step-ppm", "0",
                            "--steps", "1", "--interval", "0.05"])
    assert ended.value.code == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"time": net.now(), "prices": {}, "refused": {"0": "unknown_signer"}}
    assert err.splitlines() == [
        f"rampart-oracle: the sequencer at {url} refuses reports: unknown_signer: not a registered oracle signer "
        f"(market 0, time {net.now()}; said once per reason)",
        "rampart-oracle: 1 step posted: 0 accepted, 1 refused; reports: 1 accepted, 1 refused (unknown_signer 1)"]
    assert net.http.get("/v1/markets/0").json()["oraclePrice"] == 500_000  # nothing changed the price

    # report times from the wall clock, ahead of the sequencer's (the base layer's, held at genesis time):
    # every report refused on every step, the reason said once, not once a step
    with pytest.raises(SystemExit) as ended:
        oracle_feeder.main(["--sequencer", url, "--dev-signers", "2", "--start", "0=700000,1=30000", "--step-ppm", "0",
                            "--steps", "2", "--interval", "0.05", "--clock", "wall"])
    assert ended.value.code == 1
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["prices"], line["refused"]) for line in lines] == [({}, {"0": "future_report", "1": "future_report"})] * 2
    said = err.splitlines()
    assert len(said) == 2 and said[0].startswith(f"rampart-oracle: the sequencer at {url} refuses reports: "
                                                 "future_report: report time ")
    assert said[1] == ("rampart-oracle: 2 steps posted: 0 accepted, 2 refused; "
                       "reports: 0 accepted, 8 refused (future_report 8)")
    assert net.http.get("/v1/markets/0").json()["oraclePrice"] == 500_000
