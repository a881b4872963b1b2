"""contracts_spec is the spec: it imports nothing with I/O, clocks, randomness or the services."""

import ast
import pathlib

import pytest

SPEC = pathlib.Path(__file__).resolve().parents[2] / "contracts_spec"

FORBIDDEN = {
    "fastapi", "sqlalchemy", "httpx", "asyncio", "time", "random", "secrets", "datetime",
    "socket", "os", "subprocess", "threading", "multiprocessing", "urllib", "requests",
    "uvicorn", "sequencer", "verifier", "l1_mock", "pathlib", "io", "tempfile", "shutil",
    "logging", "sys", "uuid", "pydantic", "typer", "rich",
}

NOT_SPEC: set[str] = set()


def spec_modules() -> list[pathlib.Path]:
    return sorted(p for p in SPEC.rglob("*.py") if p.name not in NOT_SPEC)


def imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            roots.add("__import__")
    return roots


@pytest.mark.parametrize("path", spec_modules(), ids=lambda p: p.name)
def test_spec_module_imports_nothing_impure(path: pathlib.Path) -> None:
    bad = imported_roots(path) & (FORBIDDEN | {"__import__"})
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_check_catches_a_forbidden_import(tmp_path: pathlib.Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import time\nfrom sqlalchemy import select\n")
    assert imported_roots(sample) & FORBIDDEN == {"time", "sqlalchemy"}


def test_spec_files_exist() -> None:
    names = {p.name for p in spec_modules()}
    assert {"stf.py", "state.py", "merkle.py", "codec.py", "eip712.py", "margin.py"} <= names
