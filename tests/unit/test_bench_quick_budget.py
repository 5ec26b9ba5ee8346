"""``make bench-quick`` within issue 10's two minutes (item 5), without dropping what CI must
run: the quick plan keeps a step of every part, the run says plainly when it overran its
budget (counting the plots and report, not only the steps), a round's servers can start at
once and each unit adopts its own, and the bytes on the wire are one step for every wire
transport. No server, no timing."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bench import cli, run_phases, run_servers
from bench.config import FULL, QUICK, TINY, all_transports
from bench.run_steps import BYTES_LABEL
from bench.runner import BenchRun
from transports import registry
from wirechat.launch import ServerProcess


@pytest.fixture(autouse=True)
def _scratch_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A BenchRun makes a scratch directory (removed by execute); keep it in tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def bench_run(tmp_path: Path, plan: Any = QUICK) -> BenchRun:
    return BenchRun(plan, list(all_transports()), tmp_path, command="test", progress=False)


def labels(tmp_path: Path, plan: Any = QUICK) -> list[str]:
    return [step.label for step in bench_run(tmp_path, plan).steps()]


# -- what the quick plan still runs -----------------------------------------------------------
def test_the_quick_plan_keeps_a_step_of_every_part_ci_runs(tmp_path: Path) -> None:
    steps = labels(tmp_path)
    last = f"r{QUICK.rounds}"
    for transport in registry.TRANSPORTS:
        for round_ in range(1, QUICK.rounds + 1):
            assert f"r{round_} {transport}/memory: latency" in steps
        assert f"{last} {transport}/sqlite: latency" in steps
        assert f"{last} {transport}/memory: load closed" in steps
        assert f"r1 {transport}/memory: deliver x1" in steps
        # the fan-out to 10: 10 samples, measured once, in the last round
        assert [s for s in steps if s.endswith(f" {transport}/memory: deliver x10")] == [
            f"{last} {transport}/memory: deliver x10"
        ]
    for transport in registry.WIRE_TRANSPORTS:
        assert f"{last} {transport}/memory: load 50%" in steps
    for ref in bench_run(tmp_path).refs:  # the closed loop only (the full plan climbs too)
        assert f"{last} {ref}: load closed" in steps
    # each scene keeps its quick variant (issue 10 item 5), and the bytes are measured once
    phases = {step.phase for step in bench_run(tmp_path).steps()}
    for scene in (
        run_phases.GENERATOR,
        run_phases.POPULATION,
        run_phases.PROFILES,
        run_phases.TLS,
        run_phases.BYTES,
        run_phases.PAYLOADS,
    ):
        assert scene in phases
    assert steps.count(BYTES_LABEL) == 1


def test_the_quick_plan_measures_less_than_the_full_one_and_says_so_in_its_comments() -> None:
    assert QUICK.open_fractions and set(QUICK.open_fractions) < set(FULL.open_fractions)
    assert QUICK.rounds >= 3  # an interval over rounds still means something
    assert QUICK.servers_together and not FULL.servers_together


@pytest.mark.parametrize("plan", [QUICK, TINY], ids=lambda p: p.mode)
def test_a_round_starts_its_servers_first_and_every_unit_still_has_its_start_step(
    tmp_path: Path, plan: Any
) -> None:
    steps = bench_run(tmp_path, plan).steps()
    assert [s.label for s in steps[:2]] == [
        "round 1: fresh client process",
        "round 1: start servers",
    ]
    assert [s.label for s in steps if s.label.endswith(": start servers")] == [
        *(f"round {r + 1}: start servers" for r in range(plan.rounds)),
        "tls: start servers",  # the TLS rows start their own two
    ]
    starts = [s for s in steps if s.label.endswith(": start server")]
    assert starts and all(s.critical and s.phase == run_phases.SERVERS for s in starts)


def test_the_full_plan_starts_each_server_with_its_unit(tmp_path: Path) -> None:
    starts = [label for label in labels(tmp_path, FULL) if label.endswith(": start servers")]
    assert starts == ["tls: start servers"]


# -- a round's servers at once ----------------------------------------------------------------
class FakeServer(ServerProcess):
    """A server that starts no process: start() returns itself or raises."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(["custom"], ":memory:")
        self.fail = fail
        self.started = self.stopped = False

    def start(self) -> FakeServer:
        if self.fail:
            raise RuntimeError("wirechat server did not start: address in use")
        self.started = True
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        self.stopped = True
        return 0


def test_start_together_returns_each_server_or_the_reason_it_did_not_start() -> None:
    good, bad = FakeServer(), FakeServer(fail=True)
    also: list[str] = []
    out = run_servers.start_together(
        {"custom/memory#0": (good, None), "grpc/memory#0": (bad, None)},
        cpus=(),
        also=lambda: also.append("worker"),
    )
    assert out["custom/memory#0"] is good and good.started
    assert isinstance(out["grpc/memory#0"], RuntimeError)
    assert also == ["worker"]


def test_a_unit_adopts_its_server_and_a_failed_start_fails_its_own_step(tmp_path: Path) -> None:
    run = bench_run(tmp_path)
    server = FakeServer()
    run._ready = {
        "custom/memory#0": server,
        "grpc/memory#0": RuntimeError("wirechat server did not start: address in use"),
    }
    run.start_chat("custom/memory#0")
    assert run._servers["custom/memory#0"] is server
    with pytest.raises(RuntimeError, match="address in use"):
        run.start_chat("grpc/memory#0")
    run.stop("custom/memory#0")
    assert server.stopped and not run._ready


# -- the budget check -------------------------------------------------------------------------
def quick_meta(steps_s: float, outputs_s: float) -> dict[str, Any]:
    return {
        "mode": "quick",
        "duration_s": steps_s,
        "outputs_s": outputs_s,
        "loadavg_start": [9.5, 8.0, 7.0],
        "loadavg_end": [11.2, 9.0, 8.0],
        "background": {"other_vcpus": 0.8},
        "phases": [{"phase": run_phases.LATENCY, "s": steps_s, "steps": 1, "skipped": 0}],
    }


def test_a_run_over_its_budget_says_so_counting_the_report_too() -> None:
    meta = quick_meta(112.0, 12.0)  # the steps alone are within 120 s; the run is not
    use = run_phases.budget_use(meta)
    assert use is not None and use["over"] and use["run_s"] == 124.0
    verdict = run_phases.budget_verdict(meta)
    assert verdict.startswith("OVER BUDGET: this quick run took 124.0 s, 4.0 s more than")
    assert "load average 9.5 at the start and 11.2 at the end" in verdict
    assert "0.80 vCPUs" in verdict


def test_a_run_within_its_budget_says_what_it_had_to_spare() -> None:
    verdict = run_phases.budget_verdict(quick_meta(80.0, 8.0), total_s=90.0)
    assert verdict.startswith("Budget: 90 s of 120 s for a quick run")
    assert "30 s to spare" in verdict and "start-up" in verdict
    assert run_phases.budget_verdict({"mode": "tiny", "duration_s": 5.0}) == ""


def test_the_command_prints_the_overrun_on_stdout_and_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = {"meta": quick_meta(100.0, 10.0), "errors": []}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert cli.summarize(tmp_path, total_s=131.0) == 0  # said, not failed on
    out, err = capsys.readouterr()
    assert "OVER BUDGET: this quick run took 131.0 s, 11.0 s more than issue 10's 120 s" in out
    assert "OVER BUDGET" in err


def test_the_phase_table_shows_each_phases_cpu_beside_its_wall_time() -> None:
    rows = run_phases.tally([(run_phases.BYTES, 10.0, 15.0), (run_phases.LATENCY, 4.0, 4.0)])
    assert rows[0] == {
        "phase": run_phases.LATENCY,
        "s": 4.0,
        "cpu_s": 4.0,
        "steps": 1,
        "skipped": 0,
    }
    text = run_phases.text_table({"mode": "quick", "phases": rows})
    assert "CPU   15.0 s = 1.5 vCPUs" in text
    section = run_phases.section({"meta": {"mode": "quick", "phases": rows, "duration_s": 14}})
    assert "| CPU s |" in section and "Budget: 14 s of 120 s" in section


# -- a server's start-up ----------------------------------------------------------------------
def test_a_built_in_command_does_not_load_the_plugins_but_help_lists_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wirechat import cli as wirechat_cli

    plugins = wirechat_cli._plugins
    assert {"bench", "web"} <= set(plugins())  # the bench and the web UI are plugins
    assert "bench" in wirechat_cli.build_parser().format_help()

    def no_plugins() -> dict[str, Any]:
        raise AssertionError("a built-in command loaded the plugins")

    monkeypatch.setattr(wirechat_cli, "_plugins", no_plugins)
    assert wirechat_cli.main(["transports"]) == 0  # as `wirechat server` starts, every time
    assert "custom" in capsys.readouterr().out
