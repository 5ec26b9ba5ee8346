"""The Targets, the ladder, REPORT.md and the plots, from a small fixed results dict.

The sample's ``meta.registry`` is what the registry said when the run was made, so these
tests read the same transports whatever the registry holds today.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bench import plots, report, targets
from bench.ladder import format_ladder, ladder
from bench.report import TIMES as X

REGISTRY = [
    {"name": "loopback", "label": "loopback", "wire": False, "reference": None,
     "isolates": "", "ladder": False},
    {"name": "custom", "label": "custom binary", "wire": True, "reference": "tcp_echo",
     "isolates": "", "ladder": True},
    {"name": "protobuf-tcp", "label": "protobuf on TCP", "wire": True, "reference": "tcp_echo",
     "isolates": "encoding", "ladder": True},
    {"name": "grpc-stream", "label": "gRPC bidi stream", "wire": True,
     "reference": "grpc_stream_echo", "isolates": "HTTP/2 and the gRPC runtime", "ladder": True},
    {"name": "grpc", "label": "gRPC unary", "wire": True, "reference": "grpc_echo",
     "isolates": "one call per command", "ladder": True},
    {"name": "websocket", "label": "WebSocket + JSON", "wire": True, "reference": "ws_echo",
     "isolates": "beside the ladder", "ladder": False},
]  # fmt: skip


def lat(transport: str, op: str, p50: float, **kw: Any) -> dict[str, Any]:
    row = {
        "transport": transport,
        "op": op,
        "store": "none" if op == "echo" else "memory",
        "placement": "in-process" if transport == "loopback" else "cross",
        "body_bytes": 32 if op in ("send", "echo", "deliver", "deliver_all") else None,
        "fanout": None,
        "n": 1000,
        "min_us": p50 / 2,
        "mean_us": p50 * 1.1,
        "max_us": p50 * 20,
        "p50_us": p50,
        "p90_us": p50 * 1.5,
        "p99_us": p50 * 3,
        "p999_us": p50 * 10,
        "spectrum": [[q, p50 * (1 + q / 50)] for q in (0.0, 50.0, 90.0, 99.0, 99.9)],
        "server_cpu_us_per_op": p50 / 3,
        "client_cpu_us_per_op": p50 / 4,
    }
    row.update(kw)
    return row


def load(transport: str, mode: str, achieved: float, **kw: Any) -> dict[str, Any]:
    row = {
        "transport": transport,
        "op": "echo" if transport.endswith(("_echo", "_floor")) else "send",
        "store": "none" if transport.endswith(("_echo", "_floor")) else "memory",
        "placement": "cross",
        "mode": mode,
        "fraction": None if mode == "closed" else 0.5,
        "offered_per_s": None if mode == "closed" else achieved,
        "achieved_per_s": achieved,
        "completed": 1000,
        "errors": 0,
        "timeouts": 0,
        "overloaded": False,
        "p50_us": 300.0,
        "p90_us": 500.0,
        "p99_us": 900.0,
        "p999_us": 2000.0,
        "server_cpu_us_per_op": 1e6 / achieved,
        "client_cpu_us_per_op": 1e6 / achieved / 2,
        "dispatch_lag_p99_us": None if mode == "closed" else 3.0,
    }
    row.update(kw)
    return row


def size(transport: str, op: str, c2s: int, s2c: int, phase: str = "steady", **kw: Any):  # type: ignore[no-untyped-def]
    row = {
        "transport": transport,
        "op": op,
        "phase": phase,
        "body_bytes": 32 if op == "send" else None,
        "recipients": 1 if op == "send" else None,
        "text": "ascii" if op == "send" else None,
        "c2s_bytes": c2s,
        "s2c_bytes": s2c,
        "c2s_payload": c2s - 3,
        "c2s_framing": 3,
        "c2s_headers": 0,
        "c2s_control": 0,
        "s2c_payload": s2c - 3,
        "s2c_framing": 3,
        "s2c_headers": 0,
        "s2c_control": 0,
        "samples": 15,
        "disturbed": 0,
    }
    row.update(kw)
    return row


SAMPLE: dict[str, Any] = {
    "schema": 1,
    "meta": {
        "started_at": "2025-01-01T00:00:00+00:00",
        "mode": "quick",
        "command": "wirechat bench --quick",
        "duration_s": 95.0,
        "git_commit": "0123456789abcdef",
        "git_dirty": False,
        "python": "3.11.7",
        "versions": {"grpcio": "1.85.3", "protobuf": "7.36.2", "uvloop": "0.23.0"},
        "cpu_model": "AMD EPYC",
        "cpu_count": 2,
        "platform": "Linux",
        "placement": {"server_cpu": 0, "client_cpu": 1, "main": "different vCPUs"},
        "plan": {"warmup": 50, "connections": 4, "depth": 8, "closed_s": 1.0, "open_s": 1.0},
        "background": {"other_vcpus": 0.02, "steal_vcpus": 0.0},
        "skipped": {},
        "transports": [e["name"] for e in REGISTRY] + ["tcp_echo", "grpc_echo", "tcp_floor"],
        "registry": REGISTRY,
    },
    "latency": [
        lat("custom", "send", 150.0),
        lat("custom", "send", 140.0, client="lean", client_cpu_us_per_op=25.0),
        lat("protobuf-tcp", "send", 160.0),
        lat("grpc-stream", "send", 300.0),
        lat("websocket", "send", 250.0),
        lat("grpc", "send", 500.0),
        lat("loopback", "send", 20.0),
        lat("tcp_echo", "echo", 125.0),
        lat("grpc_echo", "echo", 440.0),
        lat("tcp_floor", "echo", 60.0),
        lat("custom", "login", 400.0),
        lat("custom", "send", 60.0, placement="same"),
        lat("custom", "deliver", 200.0, fanout=10, n=500),
        lat("custom", "deliver_all", 260.0, fanout=10, n=50),
    ],
    "load": [
        load("custom", "closed", 30000.0),
        load("custom", "open", 15000.0),
        load("grpc", "closed", 5000.0),
        load("grpc", "open", 2500.0),
        load("tcp_echo", "closed", 60000.0),
        load("custom", "closed", 18000.0, store="sqlite"),
    ],
    "sizes": [
        size("custom", "send", 49, 11),
        size("protobuf-tcp", "send", 51, 14),
        size("grpc-stream", "send", 80, 75),
        size("grpc", "send", 147, 73),
        size("grpc", "send", 176, 73, phase="first"),
        size("custom", "send", 49, 11, phase="first"),
        size("custom", "logout", 3, 3),
        size("grpc", "logout", 132, 89),
        size("custom", "send", 1036, 11, body_bytes=1024),
        size("grpc", "send", 1150, 73, body_bytes=1024),
    ],
    "payload_sizes": [
        {
            "op": "send",
            "direction": "c2s",
            "body_bytes": 32,
            "recipients": 1,
            "text": "ascii",
            "note": None,
            "text_bytes": 44,
            "custom_message": "SEND",
            "custom_bytes": 46,
            "custom_frame_bytes": 49,
            "protobuf_message": "SendRequest",
            "protobuf_bytes": 48,
            "grpc_message_bytes": 53,
        }
    ],
    "errors": [],
}


def verdicts_by_name(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in targets.evaluate_targets(results)}


def test_targets_are_judged_from_the_runs_own_numbers() -> None:
    verdicts = verdicts_by_name(SAMPLE)
    expected = {
        # each transport against the reference its registry entry names, by issue 10's
        # limits: within 1.2x of its own reference row, our gRPC within 1.15x of grpc_echo
        "custom send p50 <= 1.2x tcp_echo p50": ("PASS", 1.2),  # 150 / 125: at the limit
        "protobuf-tcp send p50 <= 1.2x tcp_echo p50": ("MISS", 1.28),  # 160 / 125
        "grpc-stream send p50 <= 1.2x grpc_stream_echo p50": ("n/a", None),  # no echo row
        "grpc send p50 <= 1.15x grpc_echo p50": ("PASS", 500 / 440),
        "websocket send p50 <= 1.2x ws_echo p50": ("n/a", None),
        # the product's client against the lean independent one on the same server
        "custom send p50 within 15% of a lean client's": ("PASS", 150 / 140),
        "custom client CPU per send <= 1.3x a lean client's": ("MISS", 37.5 / 25),
        "custom send saturation >= 3x grpc": ("PASS", 6.0),  # 30000 / 5000
        # group commit: the SQLite file store's best step against the memory store's
        "custom SQLite send saturation >= 0.7x the memory store's": ("MISS", 0.6),  # 18k / 30k
        "custom steady send bytes <= 1/4 of grpc": ("MISS", 60 / 220),  # above a quarter
    }
    assert list(verdicts) == list(expected)
    for name, (status, value) in expected.items():
        assert verdicts[name]["status"] == status, name
        assert verdicts[name]["value"] == (
            None if value is None else pytest.approx(value, abs=1e-3)
        )


def test_a_slower_transport_misses_its_target() -> None:
    results = copy.deepcopy(SAMPLE)
    results["latency"][0]["p50_us"] = 170.0
    results["load"][0]["achieved_per_s"] = 14000.0  # closed loop
    results["load"][1]["achieved_per_s"] = 14500.0  # an open step did a little better
    verdicts = verdicts_by_name(results)
    assert verdicts["custom send p50 <= 1.2x tcp_echo p50"]["status"] == "MISS"
    # 170 / 140 is more than 15 % away from the lean client's p50
    assert verdicts["custom send p50 within 15% of a lean client's"]["status"] == "MISS"
    saturation = verdicts["custom send saturation >= 3x grpc"]
    assert saturation["status"] == "MISS"
    assert saturation["value"] == pytest.approx(14500 / 5000)  # the best step counts


def test_a_target_built_on_disturbed_rows_says_so() -> None:
    results = copy.deepcopy(SAMPLE)
    tcp_echo = next(r for r in results["latency"] if r["transport"] == "tcp_echo")
    tcp_echo["other_vcpus"] = 0.7  # measured while the machine was busy
    verdicts = verdicts_by_name(results)
    custom = verdicts["custom send p50 <= 1.2x tcp_echo p50"]
    assert custom["disturbed"] and "other processes used 0.70 vCPUs" in custom["detail"]
    assert not verdicts["grpc send p50 <= 1.15x grpc_echo p50"]["disturbed"]
    assert "0.70 ⚠" in report.render(results)


def test_a_missing_figure_is_not_applicable_rather_than_a_pass() -> None:
    results = copy.deepcopy(SAMPLE)
    results["latency"] = [
        r for r in results["latency"] if r["transport"] != "tcp_echo" and not r.get("client")
    ]
    results["sizes"] = []
    verdicts = verdicts_by_name(results)
    assert verdicts["custom send p50 <= 1.2x tcp_echo p50"]["status"] == "n/a"
    assert verdicts["custom send p50 <= 1.2x tcp_echo p50"]["value"] is None
    assert verdicts["custom send p50 within 15% of a lean client's"]["status"] == "n/a"
    assert verdicts["custom steady send bytes <= 1/4 of grpc"]["status"] == "n/a"


def test_a_transport_not_asked_for_gets_no_target() -> None:
    results = copy.deepcopy(SAMPLE)
    results["meta"]["transports"] = ["custom", "tcp_echo"]
    names = [t["name"] for t in targets.evaluate_targets(results)]
    assert "websocket send p50 <= 1.2x ws_echo p50" not in names
    assert "custom send p50 <= 1.2x tcp_echo p50" in names


def test_the_ladder_names_each_steps_cause_and_delta() -> None:
    rungs = ladder(SAMPLE)
    assert [(r["transport"], r["on_ladder"], r["from"]) for r in rungs] == [
        ("custom", True, None),
        ("protobuf-tcp", True, "custom"),
        ("grpc-stream", True, "protobuf-tcp"),
        ("grpc", True, "grpc-stream"),
        ("websocket", False, "custom"),  # beside the ladder: read against its first rung
    ]
    stream = rungs[2]
    assert stream["isolates"] == "HTTP/2 and the gRPC runtime"
    assert (stream["c2s_bytes"], stream["s2c_bytes"], stream["total_bytes"]) == (80, 75, 155)
    assert stream["delta_total_bytes"] == 155 - 65
    assert stream["delta_p50_us"] == 300.0 - 160.0
    assert stream["server_cpu_us"] == pytest.approx(100.0)  # the latency row's (p50 / 3)
    assert stream["delta_client_cpu_us"] == pytest.approx(75.0 - 40.0)
    assert rungs[3]["p50_us_x_first"] == pytest.approx(500 / 150, 1e-3)
    assert rungs[4]["total_bytes"] is None and rungs[4]["delta_p50_us"] == 100.0
    text = format_ladder(rungs)
    assert "grpc-stream -> grpc: one call per command" in text
    assert "websocket (beside)" in text


def test_each_rung_is_timed_by_its_independent_client_with_chatclient_beside() -> None:
    results = copy.deepcopy(SAMPLE)
    sync = "grpcio's synchronous stub (unary Send)"
    results["latency"].append(lat("grpc", "send", 420.0, client="independent", client_impl=sync))
    results["latency"].append(lat("custom", "send", 90.0, client="lean"))  # not a rung's timer
    rungs = {r["transport"]: r for r in ladder(results)}
    grpc = rungs["grpc"]
    assert (grpc["p50_us"], grpc["chat_p50_us"], grpc["timed_by"]) == (420.0, 500.0, sync)
    assert grpc["delta_p50_us"] == 420.0 - 300.0  # the step from grpc-stream's ChatClient row
    assert grpc["server_cpu_us"] == pytest.approx(140.0)  # the independent row's (p50 / 3)
    custom = rungs["custom"]  # no independent row: ChatClient times the rung
    assert (custom["p50_us"], custom["timed_by"]) == (150.0, "ChatClient")
    text = report.render(results, [])
    assert f"grpc: {sync}" in text and "ChatClient p50 µs" in text


def test_report_has_the_ladder_table_and_the_gap_in_words() -> None:
    text = report.render(SAMPLE, ["ladder.png"])
    assert "## Where the cost goes" in text and "](ladder.png)" in text
    assert "| grpc-stream | HTTP/2 and the gRPC runtime (from protobuf-tcp) | 80 | 75 |" in text
    assert "| websocket (beside) |" in text
    # p50 from custom 150 to grpc 500: +350, of which grpc-stream's step is +140 (40 %)
    assert "grpc-stream +140 µs (40%)" in text


def test_report_has_every_section_and_the_ratios_to_each_floor() -> None:
    text = report.render(SAMPLE, ["latency_spectrum.png", "load.png"])
    for heading in (
        "## Targets",
        "## Latency, one request in flight",
        "## Push delivery",
        "## Placement: same vCPU vs different vCPUs",
        "## Throughput and latency under load",
        "## Bytes on the wire",
        "## Payload sizes",
    ):
        assert heading in text
    assert "`wirechat bench --quick`" in text
    assert "**different vCPUs**" in text
    # custom 150 µs over tcp_echo 125 µs; grpc 500 over grpc_echo 440; loopback has no floor.
    assert "| custom | send | 1,000 | 150.0 |" in text
    assert "| custom (lean client) | send | 1,000 | 140.0 |" in text
    assert f"1.20{X} tcp_echo" in text
    assert f"1.14{X} grpc_echo" in text
    assert f"2.50{X}" in text  # custom over tcp_floor (60 µs)
    # Saturation relative to gRPC, and the targets table.
    assert f"| custom | memory | product client | — | 30,000 | 6.00{X} |" in text
    assert "| **MISS** |" in text and "| **PASS** |" in text


def test_report_links_only_the_plots_that_exist() -> None:
    text = report.render(SAMPLE, ["load.png"])
    assert "](load.png)" in text
    assert "latency_spectrum.png" not in text


def test_report_lists_failed_steps_and_warns_about_a_busy_machine() -> None:
    results = copy.deepcopy(SAMPLE)
    results["errors"] = [{"step": "grpc/memory: latency", "group": "g", "error": "Boom: x\ntb"}]
    results["meta"]["background"] = {"other_vcpus": 0.8, "steal_vcpus": 0.0}
    text = report.render(results)
    assert "## Errors" in text and "**grpc/memory: latency**: `Boom: x`" in text
    assert "the machine was busy" in text


def test_size_table_keeps_one_row_per_op_phase_and_transport() -> None:
    rows = targets.standard_size_rows(SAMPLE["sizes"], SAMPLE)
    keys = [(r["op"], r["phase"], r["transport"], r["body_bytes"]) for r in rows]
    assert keys == [
        ("logout", "steady", "custom", None),
        ("logout", "steady", "grpc", None),
        ("send", "first", "custom", 32),
        ("send", "first", "grpc", 32),
        ("send", "steady", "custom", 32),  # the 32 B row, not the 1 KiB one
        ("send", "steady", "protobuf-tcp", 32),  # the registry's order
        ("send", "steady", "grpc-stream", 32),
        ("send", "steady", "grpc", 32),
    ]


def test_table_formats_numbers_and_missing_values() -> None:
    text = report.table(["a", "n"], [["x", 1234567], ["y", None]])
    assert text.splitlines() == ["| a | n |", "|---|---:|", "| x | 1,234,567 |", "| y | — |"]


def test_every_plot_is_drawn_to_a_png(tmp_path: Path) -> None:
    written = plots.draw_all(SAMPLE, tmp_path)
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A figure of a scene the sample has no rows for (a population, say) declines: it
    # returns None rather than failing; every other one is drawn.
    for name in set(plots.FIGURES) - {p.name for p in written}:
        assert plots.FIGURES[name](SAMPLE, tmp_path / name) is None, name
    assert {"ladder.png", "latency_spectrum.png", "load.png", "trend.png"} <= {
        p.name for p in written
    }


def test_every_transport_keeps_one_colour_whatever_the_run_measured() -> None:
    full = plots.colours(SAMPLE)
    names = [e["name"] for e in REGISTRY] + ["tcp_echo", "grpc_echo", "tcp_floor"]
    assert set(names) <= set(full)
    assert len({full[n] for n in names}) == len(names)  # no two rows share a colour
    only_grpc = copy.deepcopy(SAMPLE)
    only_grpc["latency"] = [r for r in SAMPLE["latency"] if r["transport"] == "grpc"]
    assert plots.colours(only_grpc)["grpc"] == full["grpc"]


def test_plots_without_data_are_skipped(tmp_path: Path) -> None:
    empty = {"meta": {"registry": REGISTRY}, "latency": [], "load": [], "sizes": []}
    assert plots.draw_all(empty, tmp_path) == []


@pytest.mark.parametrize(
    ("server", "client", "expected"),
    [
        (0.98, 0.67, "server"),
        (0.79, 0.99, "**generator**"),
        (0.84, 0.33, "neither"),  # waiting on the disk, say
        (1.0, None, "the process"),  # loopback
    ],
)
def test_the_saturation_table_says_what_limited_the_step(
    server: float, client: float | None, expected: str
) -> None:
    closed = load("custom", "closed", 1000.0, server_cpu_util=server, client_cpu_util=client)
    assert report.limited_by(closed) == expected


# -- intervals (issue 12) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ci", "better", "limit", "expected"),
    [
        ([1.1, 1.4], "lower", 1.5, "PASS"),  # the whole interval under the limit
        ([1.6, 1.9], "lower", 1.5, "MISS"),  # none of it
        ([1.3, 1.7], "lower", 1.5, "not settled"),  # straddles it
        ([3.2, 4.0], "higher", 3.0, "PASS"),
        ([2.5, 3.5], "higher", 3.0, "not settled"),
        ([0.95, 1.1], "within", 0.15, "PASS"),
        ([1.2, 1.4], "within", 0.15, "MISS"),
        ([1.1, 1.3], "within", 0.15, "not settled"),
        (None, "lower", 1.5, "PASS"),  # one round: the value alone decides
    ],
)
def test_a_target_passes_only_if_its_whole_interval_does(
    ci: list[float] | None, better: str, limit: float, expected: str
) -> None:
    value = 1.2 if ci is None else sum(ci) / 2
    assert targets.judge(value, limit, better, ci) == expected


def rounds_sample() -> dict[str, Any]:
    """SAMPLE with custom's send and tcp_echo's echo measured in four paired rounds."""
    results = copy.deepcopy(SAMPLE)
    per_round = {"custom": [110.0, 120.0, 240.0, 115.0], "tcp_echo": [60.0, 66.0, 132.0, 62.4]}
    for row in results["latency"]:
        values = per_round.get(row["transport"])
        if values and row["op"] in ("send", "echo") and not row.get("client"):
            row["rounds"] = [{"round": i, "p50_us": v} for i, v in enumerate(values)]
            row["ci"] = {"p50_us": [min(values), max(values)]}
    results["targets"] = targets.evaluate_targets(results)
    results["ladder"] = ladder(results)
    return results


def test_a_ratio_target_carries_its_interval_over_paired_rounds() -> None:
    results = rounds_sample()
    target = next(t for t in results["targets"] if t["name"].startswith("custom send p50"))
    low, high = target["ci"]
    assert 1.75 < low <= high < 1.9  # the slow third round slowed both: the ratio holds
    assert target["status"] == "MISS"  # the whole interval is above 1.2
    text = report.render(results)
    assert f"[{low:.2f}, {high:.2f}]" in text
    assert "not settled" in text  # the rule is stated above the table


def test_a_report_says_how_many_rounds_and_what_its_intervals_mean() -> None:
    results = rounds_sample()
    results["meta"]["rounds"] = {"count": 3, "seed": 1, "byte_checks": 1, "orders": []}
    results["latency"][0]["ci_coverage"] = 0.75
    text = report.render(results)
    assert "3 rounds of latency" in text and "75.0%" in text and "quick run" in text
    old = copy.deepcopy(SAMPLE)  # a results file from before rounds still renders
    assert "no intervals" in report.render(old)


def test_the_ladder_steps_carry_intervals_of_their_own() -> None:
    rung = next(r for r in rounds_sample()["ladder"] if r["transport"] == "custom")
    assert rung["p50_us_ci"] == [110.0, 240.0]
    assert rung["from"] is None and rung["delta_p50_us_ci"] is None


def test_the_trend_grows_by_one_entry_per_promoted_run(tmp_path: Path) -> None:
    from bench import trend

    results = rounds_sample()
    results["meta"].update(started_at="2026-11-28T20:00:00+00:00", mode="full", git_commit="c1")
    history = tmp_path / "history.json"
    assert trend.append(results, history) and not trend.append(results, history)
    later = copy.deepcopy(results)
    later["meta"]["started_at"] = "2026-12-01T20:00:00+00:00"
    assert trend.append(later, history)
    runs = trend.load_history(history)
    assert [r["started_at"][:10] for r in runs] == ["2026-11-28", "2026-12-01"]
    assert runs[0]["figures"]["custom"]["p50_ci"] == [110.0, 240.0]
    png = plots.trend_plot(later, tmp_path / "trend.png", history_path=history)
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"


def test_only_a_full_run_is_promoted_to_the_reference(tmp_path: Path) -> None:
    import json

    from bench import trend

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    results = rounds_sample()
    results["meta"].update(mode="quick", started_at="2026-11-28T20:00:00+00:00")
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "REPORT.md").write_text("# report\n")
    reference = tmp_path / "reference"
    with pytest.raises(ValueError, match="only a full run"):
        trend.promote(run_dir, reference=reference)
    trend.promote(run_dir, force=True, reference=reference)
    assert (reference / "REPORT.md").exists() and (reference / "trend.png").exists()
    assert len(trend.load_history(reference / "history.json")) == 1
