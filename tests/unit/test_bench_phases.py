"""Where the bench's time goes (issue 10 item 5): every step names its phase, a run records
each phase's wall time and the steps it left out, and the report shows the table. The
time-saving rules are checked here too: an open-loop climb stops past saturation, the load's
warm-up overlaps its connections, the population stops past the target's rate. No server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import population, report, run_phases
from bench.config import FULL, QUICK, TINY, all_transports
from bench.load import _warm_up
from bench.run_steps import Step
from bench.runner import BenchRun, StepSkipped, past_saturation


@pytest.fixture(autouse=True)
def _scratch_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A BenchRun makes a scratch directory (removed by execute); keep it in tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def bench_run(tmp_path: Path, plan: Any = TINY, transports: Any = None) -> BenchRun:
    return BenchRun(
        plan, list(transports or all_transports()), tmp_path, command="test", progress=False
    )


@pytest.mark.parametrize("plan", [FULL, QUICK, TINY], ids=lambda p: p.mode)
def test_every_step_of_every_plan_names_a_known_phase(tmp_path: Path, plan: Any) -> None:
    steps = bench_run(tmp_path, plan).steps()
    unknown = [s.label for s in steps if s.phase not in run_phases.PHASES[:-1]]
    assert unknown == []
    # the label-based reading of older runs agrees with the phases the steps name
    assert all(run_phases.phase_of_label(s.label) == s.phase for s in steps)


def test_open_loop_steps_climb_from_the_lowest_rate(tmp_path: Path) -> None:
    steps = bench_run(tmp_path, FULL, ["custom", "tcp_echo"]).steps()
    climb = [s.label for s in steps if s.phase == run_phases.OPEN and "custom/memory" in s.label]
    assert climb == [f"r5 custom/memory: load {f:.0%}" for f in sorted(FULL.open_fractions)]


def test_the_phase_table_sums_each_phase_and_counts_skipped_steps() -> None:
    rows = run_phases.tally(
        [(run_phases.OPEN, 2.0), (run_phases.LATENCY, 5.0), (run_phases.OPEN, 2.5)],
        {run_phases.OPEN: 2},
    )
    assert rows == [
        {"phase": run_phases.LATENCY, "s": 5.0, "steps": 1, "skipped": 0},
        {"phase": run_phases.OPEN, "s": 4.5, "steps": 2, "skipped": 2},
    ]
    meta = {"mode": "quick", "duration_s": 10.0, "phases": rows, "outputs_s": 3.0}
    text = run_phases.text_table(meta)
    assert text.splitlines()[1].split()[:2] == ["latency,", "one"]  # the largest first
    assert "2 skipped" in text
    section = run_phases.section({"meta": meta})
    assert "## Where the bench's time went" in section
    assert "| load: open-loop steps | 2 | 2 | 4.5 | 47% |" in section
    assert "took 3.0 s more" in section


def test_a_run_from_before_phases_is_read_from_its_step_labels() -> None:
    meta = {
        "step_s": {
            "r1 custom/memory: start server": 0.4,
            "r1 custom/memory: latency": 3.0,
            "r5 custom/memory: load 50%": 2.0,
            "r5 custom/memory: load closed": 4.0,
            "tls: grpc": 9.0,
            "custom: profile (py-spy)": 8.0,
        }
    }
    phases = {r["phase"]: r["s"] for r in run_phases.phases_of(meta)}
    assert phases == {
        run_phases.SERVERS: 0.4,
        run_phases.LATENCY: 3.0,
        run_phases.CLOSED: 4.0,
        run_phases.OPEN: 2.0,
        run_phases.PROFILES: 8.0,
        run_phases.TLS: 9.0,
    }
    assert "read from step labels" in run_phases.section({"meta": meta})


def open_row(offered: float, achieved: float, **kw: Any) -> dict[str, Any]:
    return {"offered_per_s": offered, "achieved_per_s": achieved, "completed": 10, **kw}


def test_a_step_is_past_saturation_when_it_cannot_serve_its_rate() -> None:
    assert not past_saturation(open_row(1000.0, 995.0))
    assert not past_saturation(open_row(1000.0, 920.0))  # a noisy step, not saturation
    assert past_saturation(open_row(1000.0, 850.0))
    assert past_saturation(open_row(1000.0, 990.0, overloaded=True))
    assert past_saturation(open_row(1000.0, 990.0, timeouts=3))


def test_an_open_loop_climb_stops_after_the_first_step_past_saturation(tmp_path: Path) -> None:
    run = bench_run(tmp_path, TINY, ["custom"])
    group = "custom/memory#1"
    run._servers[group] = SimpleNamespace(addresses={"custom": ("127.0.0.1", 9)}, pid=1)  # type: ignore[assignment]
    run._capacity[("custom", "memory")] = 10_000.0
    served = {0.5: 5000.0, 0.85: 6000.0}  # the 85 % step serves 6,000 of 8,500 a second
    jobs: list[dict[str, Any]] = []

    def fake_job(placement: Any, job: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        jobs.append(job)
        fraction = job["rate"] / 10_000.0
        timing = {"p50_us": 300.0, "p90_us": 500.0, "p99_us": 900.0, "p999_us": 2000.0}
        return [open_row(job["rate"], served[round(fraction, 2)], mode="open", **timing)]

    run._job = fake_job  # type: ignore[method-assign]
    steps = [
        Step(f"custom/memory: load {f:.0%}", lambda f=f: run.load(group, "open", f), group)
        for f in (0.5, 0.85, 1.0, 1.15)
    ]
    run.steps = lambda: steps  # type: ignore[method-assign]
    results = run.execute()
    assert [j["rate"] for j in jobs] == [5000.0, 8500.0]  # 100 % and 115 % never ran
    assert [r["fraction"] for r in results["load"]] == [0.5, 0.85]
    assert results["errors"] == []
    (phase,) = results["meta"]["phases"]
    assert (phase["phase"], phase["steps"], phase["skipped"]) == (run_phases.OPEN, 2, 2)
    skipped = results["meta"]["skipped_steps"]
    assert [s["step"] for s in skipped] == ["custom/memory: load 100%", "custom/memory: load 115%"]
    assert "the 85% step" in skipped[0]["why"]
    json.dumps(results)  # results.json can hold it
    text = report.render(results)
    assert "Not run: each climb stops" in text and "custom/memory: load 115%" in text


def test_a_disturbed_step_does_not_end_the_climb(tmp_path: Path) -> None:
    run = bench_run(tmp_path, TINY, ["custom"])
    group = "custom/memory#1"
    run._servers[group] = SimpleNamespace(addresses={"custom": ("127.0.0.1", 9)}, pid=1)  # type: ignore[assignment]
    run._capacity[("custom", "memory")] = 10_000.0
    rates: list[float] = []

    def fake_job(placement: Any, job: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        rates.append(job["rate"])  # every step misses its rate, the first while others ran
        return [open_row(job["rate"], job["rate"] / 2, other_vcpus=0.9 if len(rates) == 1 else 0)]

    run._job = fake_job  # type: ignore[method-assign]
    for fraction in (0.5, 0.85, 1.0):
        with contextlib.suppress(StepSkipped):
            run.load(group, "open", fraction)
    assert rates == [5000.0, 8500.0]  # the disturbed 50 % step did not end it; 85 % did


def test_a_skipped_step_is_not_an_error_and_its_group_goes_on(tmp_path: Path) -> None:
    run = bench_run(tmp_path, TINY, ["custom"])
    ran: list[str] = []

    def skip() -> None:
        raise StepSkipped("not worth it")

    steps = [
        Step("custom/memory: load 50%", skip, "g"),
        Step("custom/memory: load closed", lambda: ran.append("closed"), "g"),
    ]
    run.steps = lambda: steps  # type: ignore[method-assign]
    results = run.execute()
    assert ran == ["closed"] and results["errors"] == []


def test_the_load_warm_up_keeps_one_call_in_flight_per_connection() -> None:
    in_flight, most, issued = 0, 0, []

    async def issue(i: int) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        issued.append(i)
        await asyncio.sleep(0)
        in_flight -= 1

    asyncio.run(_warm_up(issue, 10, 4))
    assert sorted(issued) == list(range(10)) and most == 4
    asyncio.run(_warm_up(issue, 0, 4))
    assert len(issued) == 10


def test_the_population_stops_climbing_only_past_the_targets_rate() -> None:
    slow = {"push_p99_us": 300_000.0}
    assert not population.saturated_past_target(slow, 250.0)  # the target's rate comes next
    assert population.saturated_past_target(slow, 1000.0)
    assert not population.saturated_past_target({"push_p99_us": 40_000.0}, 1000.0)
