"""Adding a transport is one folder plus one registry entry, and nothing else changes.

In a scratch copy of the project we add a sixth transport, ``scratch``: its own folder (a
package serving the custom protocol's drivers under another name, with its byte counter) and
one ``Entry`` in ``transports/registry.py``. Nothing else is edited. Then, run from that copy:
``wirechat server --help`` lists it, a server serves it, the conformance suite collects every
Rule for it, and a tiny bench measures it and puts it in results.json, REPORT.md and a plot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]

SCRATCH_PACKAGE = '''"""A throwaway transport: the custom protocol's drivers under another name."""

from transports.custom import open_client, start_server

__all__ = ["open_client", "start_server"]
'''

SCRATCH_ENTRY = """    Entry(
        "scratch",
        "scratch (throwaway)",
        "transports.scratch",
        "a throwaway transport added by a test",
        default_port=7099,
        isolates="nothing: a copy of custom under another name",
        reference="tcp_echo",
        wire_account="transports.custom._bytes:accounts",
    ),
)
"""


def _tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return [name.decode() for name in listed if name and not name.startswith(b"reports/")]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("scratch-project")
    for name in _tracked_files():
        source = ROOT / name
        if source.is_file():
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (copy / "transports" / "scratch").mkdir()
    (copy / "transports" / "scratch" / "__init__.py").write_text(SCRATCH_PACKAGE)
    registry = copy / "transports" / "registry.py"
    text = registry.read_text()
    start = text.index("ENTRIES: tuple[Entry, ...] = (")
    end = text.index("\n)\n", start)  # the tuple's closing parenthesis
    registry.write_text(text[:end] + "\n" + SCRATCH_ENTRY + text[end + 3 :])
    return copy


def run(copy: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_the_cli_lists_and_serves_the_new_transport(scratch: Path) -> None:
    helped = run(scratch, "-m", "wirechat", "server", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "scratch" in helped.stdout and "--scratch-port" in helped.stdout
    listed = run(scratch, "-m", "wirechat", "transports")
    assert "scratch" in listed.stdout
    served = run(
        scratch,
        "-c",
        "import asyncio, sys\n"
        "from wirechat.launch import ServerProcess\n"
        "from transports import registry\n"
        "async def main():\n"
        "    with ServerProcess(['scratch', 'custom'], ':memory:') as server:\n"
        "        a = registry.get('scratch').open_client(server.addresses['scratch'])\n"
        "        b = registry.get('custom').open_client(server.addresses['custom'])\n"
        "        await a.connect(); await b.connect()\n"
        "        await a.signup('scratch_a', 'pw-secret-1')\n"
        "        await b.signup('scratch_b', 'pw-secret-1')\n"
        "        await a.send(['scratch_b'], 'across')\n"
        "        print((await b.next_message(10)).body)\n"
        "        await a.close(); await b.close()\n"
        "asyncio.run(main())\n",
    )
    assert served.returncode == 0, served.stderr
    assert served.stdout.strip() == "across"


def test_the_conformance_suite_runs_every_rule_on_it(scratch: Path) -> None:
    collected = run(scratch, "-m", "pytest", "tests/conformance", "--collect-only", "-q")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    ids = collected.stdout.splitlines()
    on_custom = {i.replace("custom", "TRANSPORT") for i in ids if "[custom]" in i}
    on_scratch = {i.replace("scratch", "TRANSPORT") for i in ids if "[scratch]" in i}
    assert on_custom and on_scratch == on_custom  # every per-transport test, nothing less
    assert any("scratch-to-custom" in i for i in ids)  # and the cross-transport pairs


def test_the_bench_measures_and_plots_it(scratch: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    benched = run(
        scratch,
        "-m",
        "wirechat",
        "bench",
        "--plan",
        "tiny",
        "--transports",
        "scratch,tcp_echo",
        "--out",
        str(out),
        "--no-progress",
        timeout=500,
    )
    assert benched.returncode == 0, benched.stderr[-3000:]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and p.name != "latest"]
    results = json.loads((run_dir / "results.json").read_text())
    measured = {row["transport"] for section in ("latency", "sizes") for row in results[section]}
    assert "scratch" in measured
    assert "scratch (throwaway)" in (run_dir / "REPORT.md").read_text()
    assert list(run_dir.glob("*.png"))
