"""``wirechat bench compare``: every figure of two runs side by side, and the CLI around it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench import cli as bench_cli
from bench.compare import (
    compare,
    describe,
    exit_status,
    figures,
    format_changes,
    load_results,
    machine_warning,
    summary,
    u_test,
)
from transports import registry
from wirechat.cli import main as wirechat_main


def run(p50: float, rate: float, c2s: int, *, extra_latency: bool = False) -> dict[str, Any]:
    latency = [
        {
            "transport": "custom",
            "op": "send",
            "store": "memory",
            "placement": "cross",
            "fanout": None,
            "p50_us": p50,
            "p99_us": p50 * 3,
            "hist": "HISTFAAAA...",  # not a figure
        }
    ]
    if extra_latency:
        latency.append(
            {
                "transport": "custom",
                "op": "deliver",
                "store": "memory",
                "placement": "cross",
                "fanout": 10,
                "p50_us": 200.0,
            }
        )
    return {
        "meta": {"mode": "quick"},
        "latency": latency,
        "load": [
            {
                "transport": "grpc",
                "op": "send",
                "store": "memory",
                "mode": "open",
                "fraction": 0.5,
                "offered_per_s": rate,
                "achieved_per_s": rate,
                "overloaded": False,
            }
        ],
        "sizes": [
            {
                "transport": "grpc",
                "op": "send",
                "phase": "steady",
                "body_bytes": 32,
                "recipients": 1,
                "text": "ascii",
                "c2s_bytes": c2s,
                "c2s_range": [c2s, c2s + 10],
            }
        ],
        "targets": [{"name": "custom send p50 <= 1.2x tcp_echo p50", "value": p50 / 100}],
    }


def test_figures_are_named_by_their_row_and_metric() -> None:
    names = figures(run(150.0, 2000.0, 147))
    assert names["latency custom send memory cross p50_us"] == 150.0
    assert names["load grpc send memory open@50% engine=client achieved_per_s"] == 2000.0
    key = "sizes transport=grpc op=send phase=steady body_bytes=32 recipients=1 text=ascii"
    assert names[f"{key} c2s_bytes"] == 147.0
    assert names["target custom send p50 <= 1.2x tcp_echo p50"] == 1.5
    assert not any("hist" in name or "overloaded" in name for name in names)


def test_the_lean_clients_row_and_the_ladder_are_figures_of_their_own() -> None:
    results = run(150.0, 2000.0, 147)
    lean = dict(results["latency"][0], client="lean", p50_us=140.0)
    results["latency"].append(lean)
    results["ladder"] = [
        {"transport": "grpc", "p50_us": 500.0, "delta_p50_us": 300.0, "c2s_bytes": 147}
    ]
    names = figures(results)
    assert names["latency custom send memory cross p50_us"] == 150.0
    assert names["latency custom send memory cross client=lean p50_us"] == 140.0
    assert names["ladder grpc p50_us"] == 500.0 and names["ladder grpc c2s_bytes"] == 147.0
    assert not any("delta" in name for name in names)  # a delta follows from two figures


def test_compare_reports_the_change_of_every_figure() -> None:
    changes = {c.figure: c for c in compare(run(150.0, 2000.0, 147), run(120.0, 2500.0, 147))}
    assert changes["latency custom send memory cross p50_us"].pct == pytest.approx(-20.0)
    assert changes[
        "load grpc send memory open@50% engine=client achieved_per_s"
    ].pct == pytest.approx(25.0)
    key = "sizes transport=grpc op=send phase=steady body_bytes=32 recipients=1 text=ascii"
    assert changes[f"{key} c2s_bytes"].pct == 0.0


def test_figures_in_only_one_run_are_shown_as_new_or_gone() -> None:
    text = format_changes(
        compare(run(150.0, 2000.0, 147), run(150.0, 2000.0, 147, extra_latency=True))
    )
    line = next(line for line in text.splitlines() if "deliver" in line)
    assert line.split()[:3] == ["—", "200", "new"]
    text = format_changes(
        compare(run(150.0, 2000.0, 147, extra_latency=True), run(150.0, 2000.0, 147))
    )
    assert next(line for line in text.splitlines() if "deliver" in line).split()[:3] == [
        "200",
        "—",
        "gone",
    ]


def closed_step(achieved: float, engine: str | None, **kw: Any) -> dict[str, Any]:
    """A closed-loop load row of custom; ``engine`` None: a row from before the lean
    generators (no ``engine`` key)."""
    row: dict[str, Any] = {
        "transport": "custom",
        "op": "send",
        "store": "memory",
        "mode": "closed",
        "fraction": None,
        "offered_per_s": None,
        "achieved_per_s": achieved,
        "server_cpu_us_per_op": 1e6 / achieved,
    }
    if engine is not None:
        row["engine"] = engine
    row.update(kw)
    return row


def with_load(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"meta": {"mode": "quick"}, "load": list(rows)}


CLOSED = "load custom send memory closed"


def test_a_closed_step_measured_by_two_generators_keeps_both_rows() -> None:
    names = figures(with_load(closed_step(17000.0, "client"), closed_step(50000.0, "lean-frames")))
    # the lean generator's row no longer overwrites the product client's
    assert names[f"{CLOSED} engine=client achieved_per_s"] == 17000.0
    assert names[f"{CLOSED} engine=lean-frames achieved_per_s"] == 50000.0


def test_an_older_run_without_engine_is_compared_with_the_product_clients_row() -> None:
    old = with_load(closed_step(16000.0, None))  # e.g. the committed reports/reference
    new = with_load(closed_step(17600.0, "client"), closed_step(50000.0, "lean-frames"))
    changes = {c.figure: c for c in compare(old, new)}
    client = changes[f"{CLOSED} engine=client achieved_per_s"]
    assert (client.old, client.new) == (16000.0, 17600.0)
    assert client.pct == pytest.approx(10.0)
    lean = changes[f"{CLOSED} engine=lean-frames achieved_per_s"]
    assert (lean.old, lean.new) == (None, 50000.0)  # new, not compared with the client's 16 k
    assert lean.pct is None and not lean.significant and not lean.regression


def test_an_open_step_driven_by_another_generator_is_new_and_gone_not_compared() -> None:
    step = {"mode": "open", "fraction": 0.5}
    old = with_load(closed_step(8000.0, None, **step, offered_per_s=8000.0))
    new = with_load(closed_step(25000.0, "lean-frames", **step, offered_per_s=25000.0))
    changes = compare(old, new)
    by_name = {c.figure: c for c in changes}
    gone = by_name["load custom send memory open@50% engine=client achieved_per_s"]
    new_row = by_name["load custom send memory open@50% engine=lean-frames achieved_per_s"]
    assert (gone.old, gone.new) == (8000.0, None)
    assert (new_row.old, new_row.new) == (None, 25000.0)
    assert not any(c.old is not None and c.new is not None for c in changes)
    text = format_changes(changes)
    line = next(x for x in text.splitlines() if x.endswith("engine=lean-frames achieved_per_s"))
    assert line.split()[:3] == ["—", "25,000", "new"]
    line = next(x for x in text.splitlines() if x.endswith("engine=client achieved_per_s"))
    assert line.split()[:3] == ["8,000", "—", "gone"]
    assert exit_status(changes) == 0
    assert "figures are in one run only (new or gone)" in summary(changes)


def test_format_lines_up_old_new_and_change() -> None:
    text = format_changes(compare(run(150.0, 2000.0, 147), run(120.0, 2500.0, 147)))
    header, *lines = text.splitlines()
    assert header.split() == ["old", "new", "change", "p", "n", "figure"]
    p50 = next(line for line in lines if line.endswith("latency custom send memory cross p50_us"))
    # measured once on each side: the change is shown, but nothing to test it with
    assert p50.split()[:5] == ["150", "120", "-20.0%", "—", "1/1"]


# -- rounds: medians, intervals, the U-test, the exit status -----------------------------------
def rounds_run(p50s: list[float], *, c2s: int = 49, cpu: float = 90.0) -> dict[str, Any]:
    """A schema-2 run: the custom send row with one entry per round, a deterministic byte row."""
    rounds = [
        {"round": i, "p50_us": v, "p99_us": v * 3, "server_cpu_us_per_op": cpu}
        for i, v in enumerate(p50s)
    ]
    row = {
        "transport": "custom",
        "op": "send",
        "store": "memory",
        "placement": "cross",
        "p50_us": sorted(p50s)[len(p50s) // 2],
        "p99_us": sorted(p50s)[len(p50s) // 2] * 3,
        "server_cpu_us_per_op": cpu,
        "rounds": rounds,
    }
    size = {
        "transport": "custom",
        "op": "send",
        "phase": "steady",
        "body_bytes": 32,
        "recipients": 1,
        "text": "ascii",
        "samples": 5,
        "c2s_bytes": c2s,
        "s2c_bytes": 14,
        "rounds_agree": True,
    }
    meta = {"mode": "full", "rounds": {"count": len(p50s)}, "git_commit": "abc"}
    return {"meta": meta, "latency": [row], "sizes": [size]}


P50 = "latency custom send memory cross p50_us"
C2S = "sizes transport=custom op=send phase=steady body_bytes=32 recipients=1 text=ascii c2s_bytes"


def by_name(changes: list[Any]) -> dict[str, Any]:
    return {c.figure: c for c in changes}


def test_rounds_that_overlap_are_not_significant_and_do_not_fail() -> None:
    old = rounds_run([140.0, 150.0, 145.0, 160.0, 152.0])
    new = rounds_run([148.0, 139.0, 158.0, 151.0, 146.0])
    changes = compare(old, new)
    p50 = by_name(changes)[P50]
    assert p50.p_value is not None and p50.p_value > 0.05
    assert not p50.significant and not p50.regression
    line = next(x for x in format_changes(changes).splitlines() if x.endswith(P50))
    assert " ~ " in line and "[140, 160]" in line and "5/5" in line
    assert exit_status(changes) == 0


def test_a_slower_build_is_a_significant_regression() -> None:
    old = rounds_run([140.0, 150.0, 145.0, 148.0, 152.0])
    new = rounds_run([170.0, 175.0, 168.0, 181.0, 172.0])  # ~17 % slower in every round
    changes = compare(old, new)
    p50 = by_name(changes)[P50]
    assert p50.p_value == pytest.approx(2 / 252)  # the smallest p that 5 + 5 rounds allow
    assert p50.significant and p50.regression
    assert exit_status(changes) == 1
    assert "regressions" in summary(changes) and P50 in summary(changes)


def test_rounds_that_do_not_overlap_reach_the_smallest_p_even_with_ties() -> None:
    """Two rounds with the same p50 (HdrHistogram's buckets make that common) must not push a
    build slower in every round over the gate's p: scipy's normal approximation said 0.012."""
    old = rounds_run([84.0, 90.0, 94.0, 94.0, 110.0])
    new = rounds_run([446.0, 480.0, 495.0, 495.0, 946.0])
    p50 = by_name(compare(old, new))[P50]
    assert p50.p_value == pytest.approx(2 / 252) and p50.regression
    assert u_test((1.0, 2.0, 2.0), (2.0, 3.0, 4.0)) > 0.05  # a tie across the samples counts


def test_a_faster_build_or_a_small_slowdown_does_not_fail() -> None:
    old = rounds_run([140.0, 150.0, 145.0, 148.0, 152.0])
    faster = rounds_run([100.0, 104.0, 99.0, 103.0, 101.0])
    assert by_name(compare(old, faster))[P50].significant
    assert exit_status(compare(old, faster)) == 0
    slightly = rounds_run([160.0, 161.0, 159.5, 162.0, 163.0])  # significant, but < 10 % worse
    change = by_name(compare(old, slightly))[P50]
    assert change.significant and not change.regression
    assert exit_status(compare(old, slightly)) == 0


def test_only_the_send_figures_gate_other_operations_are_shown_but_do_not_fail() -> None:
    """A whole run drifting on a shared machine moves rows like SQLite's delete_account by
    +150 % between two runs of one commit: such a change is called significant, not a failure."""
    old = rounds_run([140.0, 150.0, 145.0, 148.0, 152.0])
    new = rounds_run([140.0, 150.0, 145.0, 148.0, 152.0])
    for results, scale in ((old, 1.0), (new, 2.5)):
        deleting = dict(results["latency"][0], op="delete_account", store="sqlite")
        deleting["rounds"] = [dict(r, p50_us=r["p50_us"] * scale) for r in deleting["rounds"]]
        deleting["p50_us"] *= scale
        results["latency"].append(deleting)
    changes = by_name(compare(old, new))
    drifted = changes["latency custom delete_account sqlite cross p50_us"]
    assert drifted.significant and drifted.worse_pct == pytest.approx(150.0)
    assert not drifted.regression and exit_status(list(changes.values())) == 0


def test_byte_figures_are_exact_and_a_bigger_send_fails() -> None:
    same = by_name(compare(rounds_run([1.0, 2.0]), rounds_run([1.0, 2.0])))[C2S]
    assert same.exact and not same.significant
    bigger = compare(rounds_run([1.0, 2.0]), rounds_run([1.0, 2.0], c2s=60))
    assert by_name(bigger)[C2S].regression and exit_status(bigger) == 1
    line = next(x for x in format_changes(bigger).splitlines() if x.endswith(C2S))
    assert "+22.4%" in line and "exact" in line


def test_an_unstable_or_multimodal_figure_carries_a_warning() -> None:
    old = rounds_run([100.0, 150.0, 90.0, 160.0, 120.0])  # spread ~25 %
    new = rounds_run([120.0, 121.0, 119.0, 122.0, 120.0])
    new["latency"][0]["modes"] = [80.0, 160.0]
    notes = by_name(compare(old, new))[P50].notes()
    assert any(n.startswith("spread old") for n in notes)
    assert "multimodal new" in notes


def test_an_old_results_file_without_rounds_is_compared_as_one_round() -> None:
    old = run(150.0, 2000.0, 147)  # schema 1: no rounds
    new = rounds_run([100.0, 101.0, 99.0, 102.0, 100.0])
    p50 = by_name(compare(old, new))[P50]
    assert p50.p_value is None and not p50.significant and not p50.regression
    assert "no rounds" in describe(old) and "5 rounds" in describe(new)


def test_wirechat_bench_compare_exits_1_on_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(rounds_run([140.0, 150.0, 145.0, 148.0, 152.0])))
    new.write_text(json.dumps(rounds_run([170.0, 175.0, 168.0, 181.0, 172.0])))
    assert wirechat_main(["bench", "compare", str(old), str(new)]) == 1
    assert "regressions" in capsys.readouterr().out
    assert wirechat_main(["bench", "compare", str(old), str(old)]) == 0


def test_results_load_from_a_file_or_its_run_directory(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(run(1.0, 1.0, 1)))
    assert load_results(tmp_path) == load_results(tmp_path / "results.json")


def test_wirechat_bench_compare_prints_the_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old", tmp_path / "new.json"
    old.mkdir()
    (old / "results.json").write_text(json.dumps(run(150.0, 2000.0, 147)))
    new.write_text(json.dumps(run(165.0, 2000.0, 147)))
    assert wirechat_main(["bench", "compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "latency custom send memory cross p50_us" in out and "+10.0%" in out


def test_runs_on_different_cpus_are_named_and_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intel, amd, unknown = run(150.0, 2000.0, 147), run(150.0, 2000.0, 147), run(1.0, 1.0, 1)
    intel["meta"].update(cpu_model="Intel(R) Xeon(R) Processor", cpu_count=2)
    amd["meta"].update(cpu_model="AMD EPYC", cpu_count=2)
    assert "AMD EPYC, 2 vCPUs" in describe(amd)
    assert machine_warning(intel, intel) is None
    assert machine_warning(intel, unknown) is None  # an older run without the field
    warning = machine_warning(intel, amd)
    assert warning is not None and "different machines" in warning and "AMD EPYC" in warning
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(intel))
    new.write_text(json.dumps(amd))
    assert wirechat_main(["bench", "compare", str(old), str(new)]) == 0  # a warning, no gate
    assert "WARNING: the runs ran on different machines" in capsys.readouterr().out
    assert wirechat_main(["bench", "compare", str(old), str(old)]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_compare_of_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wirechat_main(["bench", "compare", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "wirechat bench compare:" in capsys.readouterr().err


def test_bench_options_parse() -> None:
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    args = parser.parse_args(["--quick", "--transports", "custom,tcp_echo", "--out", "x"])
    assert (args.quick, args.transports, args.out, args.bench_command) == (
        True,
        "custom,tcp_echo",
        "x",
        None,
    )
    assert parser.parse_args([]).transports == "all"


def test_transport_lists_are_checked() -> None:
    assert bench_cli.parse_transports("grpc, tcp_floor") == ["grpc", "tcp_floor"]
    assert "custom" in bench_cli.parse_transports("all")
    with pytest.raises(ValueError, match="unknown transport"):
        bench_cli.parse_transports("custom,carrier-pigeon")


def test_every_registry_transport_and_its_reference_row_can_be_asked_for() -> None:
    everything = bench_cli.parse_transports("all")
    for entry in registry.BY_NAME.values():
        assert bench_cli.parse_transports(entry.name) == [entry.name]
        assert entry.name in everything
        if entry.reference:
            assert entry.reference in everything
    assert "tcp_floor" in everything


def test_unknown_transport_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert wirechat_main(["bench", "--transports", "smoke-signals"]) == 2
    assert "unknown transport" in capsys.readouterr().err


def test_a_byte_figure_that_varied_within_its_run_is_not_called_exact() -> None:
    old, new = rounds_run([1.0, 2.0]), rounds_run([1.0, 2.0], c2s=60)
    for results in (old, new):
        size = results["sizes"][0]
        del size["rounds_agree"]  # not re-measured in rounds: its calls decide
        size["c2s_range"], size["s2c_range"] = [49, 75], [14, 14]  # e.g. a gRPC first call
    change = by_name(compare(old, new))[C2S]
    assert not change.exact and not change.regression
