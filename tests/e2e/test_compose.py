"""The deployment in docker/, checked without Docker: the compose file against the code it runs
(entry points, flags, settings, required settings, volumes, health checks), the image's
Dockerfile and entry point, and the README's one settings table. The network itself runs in
test_compose_network.py, started exactly as compose starts it.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
import typer
import yaml
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
IMAGE = "rampart:local"
# The image's own tools (docker/<name>.py installed as rampart-<name> by the Dockerfile)
IMAGE_TOOLS = {"rampart-entrypoint": "entrypoint.py", "rampart-healthcheck": "healthcheck.py",
               "rampart-devnet": "devnet.py"}
LONG_RUNNING = {"rampart-l1", "rampart-sequencer", "rampart-oracle", "rampart-verifier"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# --- reading the deployment -------------------------------------------------------------------------


def load_module(name: str) -> ModuleType:
    """One of docker/*.py as a module (they are scripts in the image, not package modules)."""
    spec = importlib.util.spec_from_file_location(f"rampart_docker_{name}", DOCKER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = load_module("entrypoint")

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation over every string of the parsed file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        have = env.get(name)
        unset = have is None or (op is not None and op.startswith(":") and have == "")
        if op is not None and op.endswith("?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op is not None and op.endswith("-") and unset:
            return arg
        return have or ""

    return _VAR.sub(sub, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    return dict(interpolate(doc, {"POSTGRES_PASSWORD": "pw", **(env or {})}))


def scripts() -> dict[str, str]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def rampart_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == IMAGE}


def command_of(svc: dict[str, Any]) -> list[str]:
    cmd = svc["command"]
    return [str(c) for c in (cmd.split() if isinstance(cmd, str) else cmd)]


def environment_of(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def mounts_of(svc: dict[str, Any]) -> list[tuple[str, PurePosixPath, bool]]:
    """(source, container path, read-only) for each volume of a service."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v["source"], PurePosixPath(v["target"]), bool(v.get("read_only"))))
            continue
        parts = v.split(":")
        out.append((parts[0], PurePosixPath(parts[1]), len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def under(path: PurePosixPath, mounts: list[tuple[str, PurePosixPath, bool]], writable: bool) -> bool:
    return any(path.is_relative_to(target) and (not ro or not writable) for _, target, ro in mounts)


# --- the code's own definitions of flags and settings -----------------------------------------------


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def argparse_parser(main: Callable[[list[str]], Any]) -> argparse.ArgumentParser:
    """The parser a CLI's main builds, caught at its parse_args (nothing else of main runs)."""

    def grab(self: argparse.ArgumentParser, *a: Any, **k: Any) -> Any:
        raise _Captured(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", grab):
        try:
            main([])
        except _Captured as c:
            return c.parser
    raise AssertionError(f"{main} built no argparse parser")


def argparse_main(role: str) -> Callable[[list[str]], Any]:
    if role in IMAGE_TOOLS:
        return load_module(IMAGE_TOOLS[role].removesuffix(".py")).main  # type: ignore[no-any-return]
    module, func = scripts()[role].split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def parse_args(role: str, args: list[str]) -> Any:
    """Parse a command line with the role's own parser or typer app; fails on anything it refuses."""
    if role == "rampart-verifier":
        from verifier.cli import app

        group = typer.main.get_command(app)
        ctx = group.make_context(role, list(args))
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        rest = [*protected, *ctx.args]
        name, cmd, sub_args = group.resolve_command(ctx, rest)  # type: ignore[attr-defined]
        assert cmd is not None, f"{role}: no command in {args}"
        cmd.make_context(name, sub_args, parent=ctx)
        return name
    parser = argparse_parser(argparse_main(role))
    try:
        return parser.parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"{role} refuses {args}") from exc


def settings_class(role: str) -> type[BaseSettings] | None:
    from l1_mock.settings import Settings as L1Settings
    from sequencer.settings import Settings as SequencerSettings
    from verifier.settings import Settings as VerifierSettings

    return {"rampart-l1": L1Settings, "rampart-sequencer": SequencerSettings,
            "rampart-verifier": VerifierSettings}.get(role)


def setting_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> field name, as pydantic-settings reads them."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {(prefix + f).upper(): f for f in cls.model_fields}


def oracle_variables() -> dict[str, str]:
    """RAMPART_ORACLE_* -> the rampart-oracle flag the entry point turns it into."""
    parser = argparse_parser(argparse_main("rampart-oracle"))
    out = {entrypoint.ORACLE_KEY_FILES: "--keys"}
    for action in parser._actions:
        long = [o for o in action.option_strings if o.startswith("--")]
        if long and long[0] != "--help":
            out[entrypoint.ORACLE_PREFIX + long[0][2:].upper().replace("-", "_")] = long[0]
    return out


def accepted_variables(role: str) -> set[str]:
    """Every RAMPART_ variable a role reads: its settings, plus what the image's entry point reads."""
    if role == "rampart-oracle":
        return set(oracle_variables())
    cls = settings_class(role)
    names = set(setting_names(cls)) if cls else set()
    if role == "rampart-sequencer":
        names.add(entrypoint.SEQUENCER_KEY_FILE)
    return names


def source_variables() -> set[str]:
    """RAMPART_ names the package reads outside its settings classes (os.environ, typer's envvar),
    in its tracked files: work in progress that is not committed yet does not count."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    dirs = [p.rstrip("*") for p in include["include"]]
    try:
        listed = subprocess.run(["git", "ls-files", "--", *dirs], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split()
        files = [ROOT / f for f in listed if f.endswith(".py")]
    except (OSError, subprocess.CalledProcessError):
        files = [f for d in dirs for f in (ROOT / d).rglob("*.py")]
    found: set[str] = set()
    for f in files:
        if f.exists():
            found |= set(re.findall(r"\bRAMPART_[A-Z0-9_]*[A-Z0-9]\b", f.read_text()))
    return found


def all_variables() -> set[str]:
    return set().union(source_variables(), *(accepted_variables(r) for r in LONG_RUNNING))


def build_settings(role: str, env: dict[str, str]) -> Any:
    """The role's settings from exactly this environment (pydantic validates every value)."""
    cls = settings_class(role)
    if cls is None:
        return None
    names = setting_names(cls)
    with mock.patch.dict("os.environ", {k: v for k, v in env.items() if k in names}, clear=True):
        return cls()


# --- the compose file against the code ---------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def services_by_role(compose: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, svc in rampart_services(compose).items():
        yield name, command_of(svc)[0], svc


def test_the_network_has_every_part(compose: dict[str, Any]) -> None:
    roles = [(command_of(s)[:2], n) for n, s in rampart_services(compose).items()]
    assert sum(cmd[0] == "rampart-l1" for cmd, _ in roles) == 1
    assert sum(cmd[0] == "rampart-sequencer" for cmd, _ in roles) == 1
    assert sum(cmd[0] == "rampart-oracle" for cmd, _ in roles) == 1
    assert sum(cmd == ["rampart-verifier", "run"] for cmd, _ in roles) == 3
    assert compose["services"]["postgres"]["image"].startswith("postgres:")


def test_every_command_is_an_entry_point_with_flags_the_code_accepts(compose: dict[str, Any]) -> None:
    entry = scripts()
    for name, role, svc in services_by_role(compose):
        # Verify the role is a console script of the package (or a tool the image installs)
        assert role in entry or role in IMAGE_TOOLS, f"{name}: {role} is no entry point"
        if role in entry:
            module, func = entry[role].split(":")
            assert callable(getattr(importlib.import_module(module), func)), f"{name}: {entry[role]}"
        parse_args(role, command_of(svc)[1:])


def test_every_variable_is_a_setting_the_code_reads_with_a_valid_value(compose: dict[str, Any]) -> None:
    for name, role, svc in services_by_role(compose):
        env = environment_of(svc)
        unknown = {k for k in env if k.startswith("RAMPART_")} - accepted_variables(role)
        assert not unknown, f"{name} sets variables {role} does not read: {sorted(unknown)}"
        assert set(env) <= accepted_variables(role), f"{name}: only RAMPART_ settings configure a role"
        build_settings(role, env)
        if role == "rampart-oracle":
            flags = [x for k, v in env.items() if k != entrypoint.ORACLE_KEY_FILES
                     for x in (oracle_variables()[k], v)]
            parse_args(role, flags + ["--keys", "11" * 32])


def required(role: str, env: dict[str, str]) -> dict[str, bool]:
    """What a role needs to work in this network, beyond what the code refuses to start without:
    a database that outlives the container, a bind others can reach, the base layer's address, a
    key of its own (never the dev default), the genesis on the base layer's first start."""
    s = build_settings(role, env)
    if role == "rampart-l1":
        return {"genesis": s.genesis is not None, "PostgreSQL db": s.db.startswith("postgresql"),
                "reachable bind": s.host not in LOOPBACK}
    if role == "rampart-sequencer":
        return {"key": bool(env.get("RAMPART_SEQUENCER_KEY") or env.get(entrypoint.SEQUENCER_KEY_FILE)),
                "PostgreSQL db": s.db.startswith("postgresql"), "reachable bind": s.host not in LOOPBACK,
                "base layer": "://l1:" in s.l1_url}
    if role == "rampart-verifier":
        return {"key file": "RAMPART_VERIFIER_KEY_FILE" in env, "PostgreSQL db": s.db.startswith("postgresql"),
                "base layer": "://l1:" in s.l1_url}
    if role == "rampart-oracle":
        keys = {entrypoint.ORACLE_KEY_FILES, "RAMPART_ORACLE_KEYS"}
        return {"signer keys": bool(keys & set(env)),
                "sequencer": "://sequencer:" in env.get("RAMPART_ORACLE_SEQUENCER", ""),
                "no dev signers": "RAMPART_ORACLE_DEV_SIGNERS" not in env}
    return {}


def test_every_setting_the_network_needs_is_given(compose: dict[str, Any]) -> None:
    for name, role, svc in services_by_role(compose):
        cls = settings_class(role)
        if cls is not None:
            missing = [f for f, info in cls.model_fields.items() if info.is_required()
                       and (cls.model_config.get("env_prefix", "") + f).upper() not in environment_of(svc)]
            assert not missing, f"{name}: required settings not given: {missing}"
        needs = required(role, environment_of(svc))
        assert all(needs.values()), f"{name} lacks {[k for k, ok in needs.items() if not ok]}"
    # the sequencer's settings pass its own safety check
    seq = next(s for _, r, s in services_by_role(compose) if r == "rampart-sequencer")
    build_settings("rampart-sequencer", {**environment_of(seq), "RAMPART_SEQUENCER_KEY": "22" * 32}).check()


def paths_of(role: str, env: dict[str, str], args: list[str]) -> tuple[list[str], list[str]]:
    """(paths the service writes, paths it only reads), as the code's settings and flags name them."""
    writes: list[str] = []
    reads: list[str] = []
    s = build_settings(role, env)
    if s is not None and s.db.startswith("sqlite:///"):
        writes.append(s.db.removeprefix("sqlite:///"))  # and its -wal/-shm beside it
    if role == "rampart-l1" and s.genesis is not None:
        reads.append(str(s.genesis))
    if role == "rampart-sequencer":
        reads += [env[entrypoint.SEQUENCER_KEY_FILE]] if entrypoint.SEQUENCER_KEY_FILE in env else []
    if role == "rampart-verifier":
        reads.append(str(s.key_file))
    if role == "rampart-oracle":
        reads += [f for f in env.get(entrypoint.ORACLE_KEY_FILES, "").split(",") if f]
    if role == "rampart-devnet":
        ns = parse_args(role, args)
        if ns.command == "init":
            writes += [str(p) for p in (ns.genesis, ns.addresses, ns.sequencer_key, ns.governance_key,
                                        *ns.oracle_key, *ns.verifier_key)]
        else:
            reads.append(str(ns.addresses))
    return writes, reads


def test_every_volume_covers_what_its_service_writes_and_reads(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, svc in compose["services"].items():
        for source, _, _ in mounts_of(svc):
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"
    for name, role, svc in services_by_role(compose):
        # Verify the root filesystem is read-only: a write outside a volume fails loudly
        assert svc.get("read_only") is True, f"{name} must run with a read-only root filesystem"
        mounts = mounts_of(svc)
        writes, reads = paths_of(role, environment_of(svc), command_of(svc)[1:])
        for p in writes:
            assert PurePosixPath(p).is_absolute() and under(PurePosixPath(p), mounts, writable=True), \
                f"{name} writes {p} outside its writable volumes"
        for p in reads:
            assert PurePosixPath(p).is_absolute() and under(PurePosixPath(p), mounts, writable=False), \
                f"{name} reads {p}, which no volume provides"
    pg = compose["services"]["postgres"]
    assert any(str(t) == "/var/lib/postgresql/data" and not ro for _, t, ro in mounts_of(pg))


def test_each_verifier_has_its_own_key_and_database(compose: dict[str, Any]) -> None:
    verifiers = [s for _, r, s in services_by_role(compose) if r == "rampart-verifier"]
    keys = {src for s in verifiers for src, t, _ in mounts_of(s)
            if PurePosixPath(environment_of(s)["RAMPART_VERIFIER_KEY_FILE"]).is_relative_to(t)}
    dbs = {environment_of(s)["RAMPART_VERIFIER_DB"] for s in verifiers}
    assert len(keys) == len(dbs) == len(verifiers) == 3
    created = compose["services"]["postgres"]["environment"]["POSTGRES_MULTIPLE_DATABASES"].split()
    for svc in rampart_services(compose).values():
        for k, v in environment_of(svc).items():
            if k.endswith("_DB") and v.startswith("postgresql"):
                assert v.rsplit("/", 1)[1] in created, f"{k}={v}: the init script does not create it"


def test_health_checks_ask_the_service_itself(compose: dict[str, Any]) -> None:
    for name, role, svc in services_by_role(compose):
        if svc.get("restart") == "no":
            assert role == "rampart-devnet" and "healthcheck" not in svc
            continue
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: exec form, no shell"
        if role == "rampart-verifier":
            assert test[1:] == ["rampart-verifier", "status", "--json"]
            continue
        assert test[1] == "rampart-healthcheck" and test[2] == role.removeprefix("rampart-"), name
        if role in ("rampart-l1", "rampart-sequencer"):
            s = build_settings(role, environment_of(svc))
            assert test[3] == f"http://127.0.0.1:{s.port}", f"{name}: checks another port than it serves"
    # a dependency on readiness names a service that has a health check
    for name, svc in compose["services"].items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in compose["services"][dep], f"{name} waits on {dep}, which has no check"
            else:
                assert cond["condition"] == "service_completed_successfully"
                assert compose["services"][dep].get("restart") == "no"


def test_no_secret_is_in_the_compose_file(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"\b(0x)?[0-9a-fA-F]{64}\b", text), "a private key in the compose file"
    raw = yaml.safe_load(text)
    assert raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    for svc in rampart_services(compose).values():
        env = environment_of(svc)
        assert "RAMPART_SEQUENCER_KEY" not in env and "RAMPART_ORACLE_KEYS" not in env


# --- the image --------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_pinned_slim_and_unprivileged() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "multi-stage"
    for image in froms:
        # Verify each base is pinned: a digest or an exact x.y.z tag
        assert "@sha256:" in image or re.search(r":\d+\.\d+\.\d+", image), f"unpinned base {image}"
    assert "slim" in froms[-1]
    final = text[text.rindex("\nFROM"):]
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["rampart-entrypoint"\]', final, re.M)
    for tool, source in IMAGE_TOOLS.items():
        assert (DOCKER / source).exists() and re.search(rf"^RUN for tool in .*\b{tool.removeprefix('rampart-')}\b", text, re.M)
    assert '"/src/docker/$tool.py" "/opt/rampart/bin/rampart-$tool"' in text
    assert not re.search(r"^(ENV|ARG)\s.*(KEY|PASSWORD|SECRET)", text, re.M | re.I), "a secret in the image"


def test_build_context_is_an_allowlist() -> None:
    lines = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines()
             if x.strip() and not x.startswith("#")]
    assert lines[0] == "*", "everything is left out unless named"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.rstrip("*") for p in packages["include"]} <= allowed
    assert {"pyproject.toml", "README.md"} <= allowed
    assert {f"docker/{s}" for s in IMAGE_TOOLS.values()} <= allowed
    assert not any(x.endswith((".env", ".key", ".json")) or x.startswith(".") for x in allowed)


# --- the image's entry point ------------------------------------------------------------------------------


def key_file(tmp_path: Path, name: str, key: bytes) -> Path:
    from verifier.keys import write_key

    path = tmp_path / name
    write_key(path, key)
    return path


def test_entrypoint_reads_the_sequencer_key_from_its_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, "seq.json", b"\x22" * 32)
    env = {entrypoint.SEQUENCER_KEY_FILE: str(path), "RAMPART_PORT": "8000"}
    assert entrypoint.prepare("rampart-sequencer", ["--port", "1"], env) == ["--port", "1"]
    assert env == {"RAMPART_SEQUENCER_KEY": "22" * 32, "RAMPART_PORT": "8000"}
    both = {entrypoint.SEQUENCER_KEY_FILE: str(path), "RAMPART_SEQUENCER_KEY": "33" * 32}
    with pytest.raises(SystemExit):
        entrypoint.prepare("rampart-sequencer", [], both)
    path.chmod(0o644)
    with pytest.raises(SystemExit):  # readable by others: refused, as the verifier refuses it
        entrypoint.prepare("rampart-sequencer", [], {entrypoint.SEQUENCER_KEY_FILE: str(path)})


def test_entrypoint_turns_oracle_variables_into_flags_the_feeder_accepts(tmp_path: Path) -> None:
    files = [key_file(tmp_path, f"o{i}.json", bytes([i + 1]) * 32) for i in range(3)]
    env = {"RAMPART_ORACLE_SEQUENCER": "http://s:1", "RAMPART_ORACLE_STEP_PPM": "500",
           entrypoint.ORACLE_KEY_FILES: ",".join(map(str, files))}
    args = entrypoint.prepare("rampart-oracle", ["--interval", "2"], env)
    ns = parse_args("rampart-oracle", args)
    from sequencer import oracle_feeder

    feeder = oracle_feeder.parse(args)  # the values as the feeder checks and reads them
    assert (feeder.sequencer, feeder.step_ppm, feeder.interval) == ("http://s:1", 500, 2.0)
    assert ns.keys.split(",") == [(bytes([i + 1]) * 32).hex() for i in range(3)]
    assert feeder.signer_keys() == [bytes([i + 1]) * 32 for i in range(3)]
    with pytest.raises(SystemExit):  # keys from two places: refused, not silently one of them
        entrypoint.prepare("rampart-oracle", [], {**env, "RAMPART_ORACLE_KEYS": "11" * 32})
    with pytest.raises(AssertionError):  # a variable that names no flag fails at start, loudly
        parse_args("rampart-oracle", entrypoint.prepare("rampart-oracle", [], {"RAMPART_ORACLE_NOPE": "1"}))


def test_entrypoint_runs_package_roles_in_process_and_other_programs_as_they_are() -> None:
    assert entrypoint.console_script("rampart-verifier") is not None
    assert entrypoint.console_script("rampart-healthcheck") is None
    for role in LONG_RUNNING:
        assert entrypoint.console_script(role).value == scripts()[role]


# --- the README's one table ---------------------------------------------------------------------------------


def test_readme_documents_every_setting_once_in_one_table() -> None:
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(RAMPART_[A-Z0-9_]+)`", text, re.M)
    assert len(rows) == len(set(rows)), "a setting documented twice"
    expected = all_variables()
    assert set(rows) == expected, (f"missing from the README: {sorted(expected - set(rows))}; "
                                   f"not read by the code: {sorted(set(rows) - expected)}")
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| `RAMPART_"))
    block = lines[first:first + len(rows)]
    assert all(line.startswith("| `RAMPART_") for line in block), "the settings are one table"


# --- the dev key generator -----------------------------------------------------------------------------------


def test_devnet_init_creates_keys_once_and_refuses_a_genesis_of_other_keys(tmp_path: Path) -> None:
    from contracts_spec.params import genesis_from_json
    from verifier.keys import load_key, write_key

    devnet = load_module("devnet")
    k = tmp_path / "keys"
    args = ["init", f"--genesis={tmp_path}/g/genesis.json", f"--addresses={tmp_path}/g/addresses.json",
            f"--sequencer-key={k}/seq.json", f"--governance-key={k}/gov.json",
            *[f"--oracle-key={k}/o{i}.json" for i in range(3)], f"--verifier-key={k}/v1.json"]
    devnet.main(args)
    keys = {p.name: load_key(p) for p in k.iterdir()}  # every key file is 0600, or load_key refuses it
    genesis = genesis_from_json((tmp_path / "g" / "genesis.json").read_text())
    assert genesis.oracle_quorum == 2 and len(genesis.oracle_signers) == 3 and genesis.preset.name == "dev"
    devnet.main(args)  # a restart keeps every key and the genesis
    assert {p.name: load_key(p) for p in k.iterdir()} == keys
    assert genesis_from_json((tmp_path / "g" / "genesis.json").read_text()) == genesis
    (k / "seq.json").unlink()  # a lost key volume: a new key would not be the genesis sequencer
    with pytest.raises(SystemExit, match="other sequencer or oracle keys"):
        devnet.main(args)
    assert not (k / "seq.json").exists(), "no key is made up for a genesis that names another"
    write_key(k / "seq.json", b"\x33" * 32)  # another key in its place
    with pytest.raises(SystemExit, match="other sequencer or oracle keys"):
        devnet.main(args)
