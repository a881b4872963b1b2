"""The oracle feeder process's code against a real sequencer: N signers, a quorum forms the price;
reports from strangers, from the future or for an old time are refused."""

from __future__ import annotations

from pathlib import Path

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
