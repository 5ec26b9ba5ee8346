"""``python -m bench.refs NAME`` serves only the reference servers of bench/refs: every other
module of the package (the lean clients, the lean load generator) is refused by name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bench.refs
from bench.refs import __main__ as refs_main

REFS = Path(bench.refs.__file__).parent


def _defines_start(path: Path) -> bool:
    """The module defines ``start`` (read from its source: importing a reference pulls in
    grpc or websockets)."""
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "start"
        for node in tree.body
    )


def test_every_module_is_a_server_or_listed_as_not_one() -> None:
    modules = sorted(p.stem for p in REFS.glob("*.py"))
    servers = [m for m in modules if m not in refs_main.NOT_SERVERS]
    assert "lean_load" in modules and "lean_load" not in servers
    for name in servers:
        assert name == refs_main.FLOOR or _defines_start(REFS / f"{name}.py"), name
    # and every module is named in the package's docstring
    for name in modules:
        if not name.startswith("__"):
            assert f"``{name}``" in (bench.refs.__doc__ or ""), name


@pytest.mark.parametrize("name", ["lean_load", "lean_custom", "clients"])
def test_a_module_that_is_not_a_server_is_refused(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        refs_main.main([name])
    assert exited.value.code == 2
    assert f"no reference server called {name!r}" in capsys.readouterr().err
