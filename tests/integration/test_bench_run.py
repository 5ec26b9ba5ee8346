"""A tiny bench against real servers: every part runs, and lands in results.json and REPORT.md.

The ``tiny`` plan (bench/config.py) measures a handful of samples of everything the full bench
does: every transport and reference server as its own process, latency, push delivery, load
steps, bytes on the wire, the same-vCPU rows. Only the shape of the output is checked, never a
timing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.config import ALL_TRANSPORTS, TINY
from bench.plots import FIGURES
from bench.runner import run_bench
from bench.stats import PERCENTILES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

LATENCY_KEYS = {"transport", "op", "store", "placement", "body_bytes", "fanout", "n", *PERCENTILES}
LOAD_KEYS = {
    "transport",
    "op",
    "store",
    "mode",
    "offered_per_s",
    "achieved_per_s",
    "p50_us",
    "p99_us",
    "server_cpu_us_per_op",
    "client_cpu_us_per_op",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    return run_bench(TINY, list(ALL_TRANSPORTS), out, command="pytest tiny bench", progress=False)


@pytest.fixture(scope="module")
def results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def rows(results: dict[str, Any], section: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in results[section] if all(r.get(k) == v for k, v in match.items())]


def test_every_step_ran(results: dict[str, Any]) -> None:
    assert results["errors"] == []
    assert results["meta"]["skipped"] == {}
    assert set(results["meta"]["transports"]) == set(ALL_TRANSPORTS)


def test_meta_says_what_ran_where(results: dict[str, Any]) -> None:
    meta = results["meta"]
    assert meta["mode"] == "tiny" and meta["command"] == "pytest tiny bench"
    for key in ("started_at", "finished_at", "git_commit", "python", "cpu_count", "plan"):
        assert meta[key] is not None
    assert {"grpcio", "protobuf", "uvloop"} <= set(meta["versions"])
    assert {"server_cpu", "client_cpu", "main", "generator"} <= set(meta["placement"])


def test_latency_rows_cover_every_transport_and_op(results: dict[str, Any]) -> None:
    for row in results["latency"]:
        assert LATENCY_KEYS <= set(row), row["transport"]
        assert row["n"] > 0 and row["p50_us"] > 0
        assert row["p50_us"] <= row["p99_us"] <= row["p999_us"]
    for transport in ("custom", "grpc", "loopback"):
        for store in ("memory", "sqlite"):
            ops = {r["op"] for r in rows(results, "latency", transport=transport, store=store)}
            assert {"signup", "login", "logout", "list_accounts", "send", "ack"} <= ops
            assert {"delete_account", "deliver", "deliver_all"} <= ops
        fanouts = {r["fanout"] for r in rows(results, "latency", transport=transport, op="deliver")}
        assert fanouts == set(TINY.deliver)
    for ref in ("tcp_echo", "grpc_echo", "tcp_floor"):
        places = {r["placement"] for r in rows(results, "latency", transport=ref, op="echo")}
        assert places == {"cross", "same"}
    send = rows(results, "latency", transport="custom", op="send", placement="cross")[0]
    assert send["body_bytes"] == 32 and send["server_cpu_us_per_op"] > 0


def test_load_rows_step_up_from_a_closed_loop_rate(results: dict[str, Any]) -> None:
    for row in results["load"]:
        assert LOAD_KEYS <= set(row)
        assert row["completed"] > 0 and row["errors"] == 0
    for transport in ("custom", "grpc", "tcp_echo", "grpc_echo", "tcp_floor"):
        steps = rows(
            results,
            "load",
            transport=transport,
            store="memory" if transport in ("custom", "grpc") else "none",
        )
        assert [r["mode"] for r in steps] == ["closed", "open"]
        closed, opened = steps
        assert opened["offered_per_s"] == pytest.approx(closed["achieved_per_s"] * 0.5, rel=0.01)
    assert rows(results, "load", transport="loopback", mode="closed")


def test_sizes_come_from_the_wire_module(results: dict[str, Any]) -> None:
    for transport in ("custom", "grpc"):
        send = rows(results, "sizes", transport=transport, op="send", phase="steady", body_bytes=32)
        assert send and send[0]["c2s_bytes"] > 32
    assert results["payload_sizes"]


def test_targets_are_evaluated(results: dict[str, Any]) -> None:
    assert len(results["targets"]) == 4
    assert {t["status"] for t in results["targets"]} <= {"PASS", "MISS"}


def test_report_and_plots_are_written(run_dir: Path) -> None:
    report = (run_dir / "REPORT.md").read_text()
    assert "## Targets" in report and "pytest tiny bench" in report
    for name in FIGURES:
        assert (run_dir / name).stat().st_size > 1000
        assert f"]({name})" in report
    latest = run_dir.parent / "latest"
    assert latest.resolve() == run_dir.resolve()
