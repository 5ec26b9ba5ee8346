"""``wirechat bench compare``: every figure of two runs side by side, and the CLI around it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench import cli as bench_cli
from bench.compare import compare, figures, format_changes, load_results
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
        "targets": [{"name": "custom send p50 <= 1.5x tcp_echo p50", "value": p50 / 100}],
    }


def test_figures_are_named_by_their_row_and_metric() -> None:
    names = figures(run(150.0, 2000.0, 147))
    assert names["latency custom send memory cross p50_us"] == 150.0
    assert names["load grpc send memory open@50% achieved_per_s"] == 2000.0
    key = "sizes transport=grpc op=send phase=steady body_bytes=32 recipients=1 text=ascii"
    assert names[f"{key} c2s_bytes"] == 147.0
    assert names["target custom send p50 <= 1.5x tcp_echo p50"] == 1.5
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
    assert changes["load grpc send memory open@50% achieved_per_s"].pct == pytest.approx(25.0)
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


def test_format_lines_up_old_new_and_change() -> None:
    text = format_changes(compare(run(150.0, 2000.0, 147), run(120.0, 2500.0, 147)))
    header, *lines = text.splitlines()
    assert header.split() == ["old", "new", "change", "figure"]
    p50 = next(line for line in lines if line.endswith("latency custom send memory cross p50_us"))
    assert p50.split()[:3] == ["150", "120", "-20.0%"]


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
