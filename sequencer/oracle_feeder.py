"""`rampart-oracle`: a separate process holding N oracle signer keys that posts signed price
reports to the sequencer, which forms the spec's OraclePrice once a quorum signed.

Prices come from a path (a deterministic random walk from a start price per market, seeded)
or from a replayed file of JSON lines {"market": 0, "price": 500000} (one step per line; a
line may hold several markets as {"prices": {"0": 500000, "1": 30000}}). Report times follow
the sequencer's clock (GET /v1/time, the base layer's time) unless --clock wall.

A bad flag, an unreadable prices file or a sequencer on another chain than --preset is one line
and exit code 2. A sequencer that does not answer yet is waited for (said once; SIGINT or SIGTERM
end the wait, and the feeder between steps); one that stops answering is said once per outage.

The sequencer answers each report on its own (accepted, or refused with a code: a key that is no
registered signer, a time after its clock, ...). A step is accepted when none of its reports was
refused (a signer's report that arrives once the quorum already set that price is not a refusal);
stdout gets one JSON line per step with the prices accepted (and `refused`: market -> code, if any);
each refusal reason is said once on stderr, and the end is a summary of steps and reports accepted
and refused. Exit code 0 when every step was accepted, 1 when any was refused.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, BeforeValidator, Field, field_validator

from contracts_spec import eip712
from contracts_spec.crypto import is_private_key
from contracts_spec.params import PRESETS
from contracts_spec.types import Preset
from l1_mock.cli_common import (
    HttpUrl,
    Voice,
    first_line,
    flag_names,
    load_settings,
    named_by,
    quiet_broken_pipe,
    stopped_by_signals,
    wait_until_up,
)
from sequencer.scenario import ORACLE_NAMES

PROG = "rampart-oracle"
_VOICE = Voice(PROG)
say, fail = _VOICE.say, _VOICE.fail


def walk(start: dict[int, int], step_ppm: int, seed: int) -> Iterator[dict[int, int]]:
    """A seeded random walk: each step moves each price by at most step_ppm, never below 1."""
    rng = random.Random(seed)
    prices = dict(start)
    while True:
        yield dict(prices)
        for m, p in prices.items():
            move = p * rng.randint(-step_ppm, step_ppm) // 1_000_000
            prices[m] = max(1, p + move)


PRICE_LINE = '{"market": 0, "price": 500000} or {"prices": {"0": 500000, "1": 30000}}'


def load_prices(path: Path) -> list[dict[int, int]]:
    """Every step of a prices file, read and checked at once (ValueError naming the bad line)."""
    steps = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            doc = json.loads(line)
            if "prices" in doc:
                step = {int(m): int(p) for m, p in doc["prices"].items()}
            else:
                step = {int(doc["market"]): int(doc["price"])}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(f"line {n} is not a price line ({PRICE_LINE})") from None
        if not step or min(step) < 0 or min(step.values()) < 1:
            raise ValueError(f"line {n}: markets are ids from 0 and prices at least 1 tick")
        steps.append(step)
    return steps


def sign_reports(preset: Preset, keys: list[bytes], prices: dict[int, int], t: int) -> list[dict[str, Any]]:
    out = []
    for market, price in sorted(prices.items()):
        for key in keys:
            r = eip712.sign_oracle_report(preset, key, market, price, t)
            out.append({"market": market, "price": price, "time": t, "signature": "0x" + r.signature.hex()})
    return out


class Feeder:
    def __init__(self, url: str, keys: list[bytes], preset: Preset, clock: str = "sequencer") -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.keys = keys
        self.preset = preset
        self.clock = clock
        self.last_time = 0

    def domain(self) -> dict[str, Any]:
        """The sequencer's EIP-712 domain (its chain), the first thing asked of it."""
        r = self.http.get("/v1/domain")
        r.raise_for_status()
        return dict(r.json())

    def now(self) -> int:
        if self.clock == "wall":
            return int(time.time())
        r = self.http.get("/v1/time")
        r.raise_for_status()
        return int(r.json()["time"])

    def post(self, prices: dict[int, int]) -> Step | None:
        """Post one step at the current time and read the sequencer's answer to each report; None
        if the clock has not moved since the last one."""
        t = self.now()
        if t <= self.last_time:
            return None
        reports = sign_reports(self.preset, self.keys, prices, t)
        r = self.http.post("/v1/oracle/reports", json={"reports": reports})
        r.raise_for_status()
        self.last_time = t
        return read_results(t, prices, reports, r.json())

    def close(self) -> None:
        self.http.close()


@dataclass
class Step:
    """The sequencer's answer to one step's reports."""

    time: int
    prices: dict[int, int]
    accepted: int = 0  # reports accepted (gathered towards the quorum, or forming the price)
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (market, code, message)
    priced: set[int] = field(default_factory=set)  # markets whose price this step set

    @property
    def ok(self) -> bool:
        return not self.refused

    def line(self) -> dict[str, Any]:
        """The step's stdout line: the prices accepted, and the refused markets with their codes."""
        bad = {m: code for m, code, _ in self.refused}
        out: dict[str, Any] = {"time": self.time, "prices": {m: p for m, p in self.prices.items() if m not in bad}}
        if bad:
            out["refused"] = bad
        return out


def read_results(t: int, prices: dict[int, int], reports: list[dict[str, Any]], answer: Any) -> Step:
    """Each report's result in the 200 answer of POST /v1/oracle/reports, in the order sent. A
    stale_report for a price this very request set is a surplus signer's, not a refusal."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != len(reports):
        raise ValueError(f"the answer holds no result per report: {str(answer)[:200]}")
    step = Step(t, prices)
    for report, result in zip(reports, results, strict=True):
        market = int(report["market"])
        if isinstance(result, dict) and result.get("status") == "ok":
            step.accepted += 1
            if result.get("applied"):
                step.priced.add(market)
        elif isinstance(result, dict) and result.get("code") == "stale_report" and market in step.priced:
            step.accepted += 1
        else:
            code = str(result.get("code", "refused")) if isinstance(result, dict) else "refused"
            message = str(result.get("message", "")) if isinstance(result, dict) else str(result)
            step.refused.append((market, code, message))
    return step


@dataclass
class Tally:
    """What the feeder posted and what the sequencer did with it: the final summary."""

    steps_ok: int = 0
    steps_refused: int = 0
    reports_ok: int = 0
    reports_refused: Counter[str] = field(default_factory=Counter)
    said: set[str] = field(default_factory=set)

    @property
    def posted(self) -> int:
        return self.steps_ok + self.steps_refused

    def add(self, step: Step, url: str) -> None:
        if step.ok:
            self.steps_ok += 1
        else:
            self.steps_refused += 1
        self.reports_ok += step.accepted
        for market, code, message in step.refused:
            self.reports_refused[code] += 1
            self.once(code, f"the sequencer at {url} refuses reports: {code}: {first_line(message)[:300]} "
                            f"(market {market}, time {step.time}; said once per reason)")

    def refused_step(self, code: str, line: str) -> None:
        """A whole step refused (an HTTP error answer): counted, its reason said once."""
        self.steps_refused += 1
        self.once(code, line)

    def once(self, code: str, line: str) -> None:
        if code not in self.said:
            self.said.add(code)
            say(line)

    def summary(self) -> str:
        reports = f"reports: {self.reports_ok} accepted, {sum(self.reports_refused.values())} refused"
        if self.reports_refused:
            reports += " (" + ", ".join(f"{code} {n}" for code, n in sorted(self.reports_refused.items())) + ")"
        steps = "1 step" if self.posted == 1 else f"{self.posted} steps"
        return f"{steps} posted: {self.steps_ok} accepted, {self.steps_refused} refused; {reports}"


def _private_keys(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        keys = [bytes.fromhex(k.strip().removeprefix("0x")) for k in value.split(",") if k.strip()]
    except ValueError:
        raise ValueError("private keys are 32 bytes of hex each, comma-separated") from None
    if not keys or not all(map(is_private_key, keys)):
        raise ValueError("private keys are 32 bytes of hex each (within the secp256k1 order), comma-separated")
    return keys


def _start_prices(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        start = {int(m): int(p) for m, p in (kv.split("=") for kv in value.split(",") if kv.strip())}
    except ValueError:
        raise ValueError("not market=ticks pairs such as 0=500000,1=30000") from None
    if not start or min(start) < 0 or min(start.values()) < 1:
        raise ValueError("markets are ids from 0 and prices at least 1 tick, such as 0=500000,1=30000")
    return start


class FeederSettings(BaseModel):
    """The feeder's flags, checked (it reads no environment: the image's entry point turns each
    RAMPART_ORACLE_<FLAG> variable into --<flag>)."""

    sequencer: HttpUrl = "http://127.0.0.1:8000"
    preset: str = "dev"
    keys: Annotated[list[bytes], BeforeValidator(_private_keys)] = []
    dev_signers: int | None = Field(None, ge=1, le=len(ORACLE_NAMES))
    start: Annotated[dict[int, int], BeforeValidator(_start_prices)] = {0: 500_000, 1: 30_000}
    step_ppm: int = Field(1000, ge=0, le=1_000_000)
    seed: int = 1
    file: Path | None = None
    interval: float = Field(1.0, gt=0)
    steps: int = Field(0, ge=0)
    clock: Literal["sequencer", "wall"] = "sequencer"

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"not a preset; known: {', '.join(sorted(PRESETS))}")
        return value

    def signer_keys(self) -> list[bytes]:
        if self.keys:
            return self.keys
        from sequencer.scenario import Keys

        dev = Keys()
        return [dev[name] for name in ORACLE_NAMES[: self.dev_signers or 0]]


def parse(argv: list[str] | None) -> FeederSettings:
    """The checked settings; a bad flag is one line naming it and exit code 2."""
    p = argparse.ArgumentParser(prog=PROG, description="Rampart oracle feeder (N signer keys)")
    p.add_argument("--sequencer", help="sequencer URL (default http://127.0.0.1:8000)")
    p.add_argument("--preset", help=f"preset whose EIP-712 domain signs the reports: {', '.join(sorted(PRESETS))} "
                                    "(default dev)")
    p.add_argument("--keys", help="oracle signer private keys, hex, comma-separated")
    p.add_argument("--dev-signers", help=f"use the first N dev oracle keys (oracle-0, oracle-1, ...; N <= "
                                         f"{len(ORACLE_NAMES)})")
    p.add_argument("--start", help="path start prices: market=ticks,... (default 0=500000,1=30000)")
    p.add_argument("--step-ppm", help="largest move per step of the path (default 1000)")
    p.add_argument("--seed", help="seed of the path (default 1)")
    p.add_argument("--file", help="replay prices from this JSON-lines file instead of the path")
    p.add_argument("--interval", help="seconds between steps, > 0 (default 1.0)")
    p.add_argument("--steps", help="stop after N posted steps (default 0: run forever)")
    p.add_argument("--clock", help="report times from the sequencer's clock or the wall clock: sequencer or wall "
                                    "(default sequencer)")
    given = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    settings = load_settings(lambda: FeederSettings(**given), named_by(flag_names(p), given), say, hidden=("keys",))
    if not settings.keys and not settings.dev_signers:
        fail("give --keys (hex, comma-separated) or --dev-signers N")
    return settings


def sequencer_down(exc: Exception) -> str | None:
    """Why the sequencer does not answer (yet), if that is what `exc` says: no connection, or an
    answer of 5xx (starting up, behind a proxy). Anything else is not waited for."""
    if isinstance(exc, httpx.TransportError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500:
        return f"HTTP {exc.response.status_code}"
    return None


def check_chain(feeder: Feeder, domain: dict[str, Any], preset_name: str) -> None:
    """The sequencer verifies reports under its own EIP-712 domain: ours must be the same."""
    preset = feeder.preset
    try:
        chain, contract = int(domain["chainId"]), str(domain["verifyingContract"]).lower()
    except (KeyError, TypeError, ValueError):
        fail(f"{feeder.url} does not answer as a Rampart sequencer (GET /v1/domain: {str(domain)[:200]})")
    if chain != preset.chain_id or contract != "0x" + preset.rollup_address.hex():
        fail(f"--preset {preset_name} signs for chain {preset.chain_id}, but the sequencer at {feeder.url} runs "
             f"chain {chain} (rollup {contract})")


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> None:
    settings = parse(argv)
    try:
        prices = iter(load_prices(settings.file)) if settings.file else walk(settings.start, settings.step_ppm,
                                                                               settings.seed)
    except OSError as exc:
        fail(f"--file {settings.file}: cannot be read: {exc.strerror or exc}")
    except ValueError as exc:
        fail(f"--file {settings.file}: {exc}")
    feeder = Feeder(settings.sequencer, settings.signer_keys(), PRESETS[settings.preset], settings.clock)
    url = feeder.url
    pause = min(settings.interval * 5, 5.0)
    tally = Tally()
    try:
        with stopped_by_signals() as stop:
            try:
                domain = wait_until_up(feeder.domain, sequencer_down,
                                       lambda reason: say(f"waiting for the sequencer at {url} ({reason})"), stop, pause)
            except (httpx.HTTPError, ValueError) as exc:
                fail(f"{url} does not answer as a Rampart sequencer: {first_line(exc)[:200]}")
            if domain is None:
                return  # stopped while waiting
            check_chain(feeder, domain, settings.preset)
            away = False  # said once per outage, not once per step
            step = next(prices, None)
            while step is not None and not stop.is_set():
                try:
                    result = feeder.post(step)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    reason = sequencer_down(exc) if isinstance(exc, httpx.HTTPError) else None
                    if reason is None:
                        code = _refusal_code(exc)
                        tally.refused_step(code, f"the sequencer at {url} refuses steps: {first_line(exc)[:300]} "
                                                 "(said once per reason)")
                    elif not away:
                        say(f"the sequencer at {url} does not answer ({reason}); retrying every {settings.interval} s")
                    away = reason is not None
                    result = None
                else:
                    if away:
                        say(f"the sequencer at {url} answers again")
                        away = False
                if result is not None:
                    tally.add(result, url)
                    print(json.dumps(result.line()), flush=True)
                    if settings.steps and tally.posted >= settings.steps:
                        break
                    step = next(prices, None)
                stop.wait(settings.interval)
    finally:
        feeder.close()
    say(tally.summary())
    if tally.steps_refused:
        raise SystemExit(1)


def _refusal_code(exc: Exception) -> str:
    """The error code of a refused request (the API's {"error": {"code"}}), or what failed."""
    if isinstance(exc, httpx.HTTPStatusError):
        try:
            return str(exc.response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return f"http_{exc.response.status_code}"
    return type(exc).__name__


if __name__ == "__main__":
    main()
