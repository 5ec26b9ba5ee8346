"""The fuzz targets of ``fuzz/`` (one per codec), run briefly as CI runs them.

Each target's contract (events or a coded error, never another exception, bounded buffers) is
checked three ways: its seeds (every example of the protocol documents) replayed in-process,
hypothesis driving the same ``test_one_input`` with random inputs, and atheris (coverage-
guided) running every target for a bounded number of inputs in its own process. ``make fuzz``
is the long run.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))  # (the targets import their helpers as top-level modules)
_spec = importlib.util.spec_from_file_location("wirechat_fuzz_run", FUZZ / "run.py")
assert _spec is not None and _spec.loader is not None
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)
TARGETS: dict[str, ModuleType] = {name: importlib.import_module(name) for name in run.TARGETS}
#: Inputs per target for the atheris run (about 5 s each on this machine).
ATHERIS_RUNS = 6000


@pytest.mark.parametrize("name", TARGETS)
def test_every_seed_keeps_the_contract(name: str) -> None:
    target = TARGETS[name]
    seeds = target.seeds()
    assert len(seeds) >= 10, "the protocol document lost its examples"
    for seed in seeds:
        target.test_one_input(seed)


def _mutate(seed: bytes, flips: list[tuple[int, int]]) -> bytes:
    """A seed with a few bytes changed (past the first two: its scenario and chunk size stay)."""
    data = bytearray(seed)
    for position, value in flips:
        if len(data) > 2:
            data[2 + position % (len(data) - 2)] = value
    return bytes(data)


flips = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)


@pytest.mark.parametrize("name", TARGETS)
def test_random_inputs_keep_the_contract(name: str) -> None:
    target = TARGETS[name]
    seeds = st.sampled_from(target.seeds())

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(st.binary(max_size=600), st.builds(_mutate, seeds, flips)))
    def fuzz(data: bytes) -> None:
        target.test_one_input(data)

    fuzz()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_atheris_finds_nothing_in_a_short_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), "--all", f"--runs={ATHERIS_RUNS}",
         f"--artifacts={tmp_path}"],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert done.stdout.count(": ok,") == len(TARGETS), done.stdout
    assert len(re.findall(r"seed \d+", done.stdout)) == len(TARGETS), done.stdout


def test_a_failing_run_prints_its_inputs_for_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI failure is reproducible from its log alone: the saved input, base64, this run's."""
    started = time.monotonic()
    old = tmp_path / "custom_codec-crash-old"
    old.write_bytes(b"from an earlier run")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    crash = bytes([0x57, 0x43, 0x00, 0xFF, 0x80, 0x80])
    (tmp_path / "custom_codec-crash-1234").write_bytes(crash)
    (tmp_path / "websocket_messages-crash-9").write_bytes(b"another target's")
    run._show_inputs("custom_codec", tmp_path, since=started)
    out = capsys.readouterr().out
    assert "custom_codec-crash-1234" in out and "python fuzz/run.py custom_codec FILE" in out
    shown = re.findall(r"base64: (\S+)", out)
    assert [base64.b64decode(b) for b in shown] == [crash]
