"""A tiny bench against real servers: every part runs, and lands in results.json and REPORT.md.

The ``tiny`` plan (bench/config.py) measures a handful of samples of everything the full bench
does: every transport of the registry and every reference row as its own process, latency,
push delivery, load steps, bytes on the wire, the lean reference client, the independent
clients, the same-vCPU rows.
The transports and reference rows are read from the registry, so a new transport is checked
here without touching this file. Only the shape of the output is checked, never a timing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.config import (
    INDEPENDENT_CLIENT,
    LEAN_CLIENT,
    LEAN_TRANSPORT,
    TINY,
    all_transports,
    ref_transports,
)
from bench.plots import FIGURES
from bench.refs import CONTRACT_FLOORS, INDEPENDENT_TRANSPORTS
from bench.refs.independent_aio import BARE
from bench.runner import run_bench
from bench.stats import PERCENTILES
from bench.targets import INDEPENDENT_CPU_NAME, SQLITE_NAME, independent_p50_name
from transports import registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHAT = list(registry.TRANSPORTS)
WIRE = list(registry.WIRE_TRANSPORTS)
REFS = list(ref_transports())

LATENCY_KEYS = {
    "transport",
    "op",
    "store",
    "placement",
    "body_bytes",
    "fanout",
    "n",
    "server_cpu_us_per_op",
    "client_cpu_us_per_op",
    *PERCENTILES,
}
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
CHAT_OPS = {"signup", "login", "logout", "list_accounts", "send", "ack", "delete_account"}
HISTORY_OPS = {"read_history", "mark_read", "list_conversations", "delete_messages"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    return run_bench(TINY, list(all_transports()), out, command="pytest tiny bench", progress=False)


@pytest.fixture(scope="module")
def results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def rows(results: dict[str, Any], section: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in results[section] if all(r.get(k) == v for k, v in match.items())]


def test_every_step_ran(results: dict[str, Any]) -> None:
    assert results["errors"] == []
    assert results["meta"]["skipped"] == {}
    assert set(results["meta"]["transports"]) == set(all_transports())
    assert [e["name"] for e in results["meta"]["registry"]] == CHAT


def test_latency_is_measured_in_rounds_in_a_recorded_shuffled_order(
    results: dict[str, Any],
) -> None:
    rounds = results["meta"]["rounds"]
    assert rounds["count"] == TINY.rounds and len(rounds["orders"]) == TINY.rounds
    first, second = (set(o["order"]) for o in rounds["orders"][:2])
    assert {f"ref:{ref}" for ref in REFS} <= first & second  # every reference row every round
    send = rows(results, "latency", transport="custom", op="send", store="memory", client=None)
    (row,) = [r for r in send if r["placement"] == "cross"]
    assert [r["round"] for r in row["rounds"]] == list(range(TINY.rounds))
    assert row["n"] == sum(r["n"] for r in row["rounds"])
    low, high = row["ci"]["p50_us"]
    assert low <= row["p50_us"] <= high
    checked = [r for r in results["sizes"] if r.get("rounds_checked")]
    assert checked and all(r["rounds_checked"] == 1 + TINY.byte_checks for r in checked)


def test_meta_says_what_ran_where(results: dict[str, Any]) -> None:
    meta = results["meta"]
    assert meta["mode"] == "tiny" and meta["command"] == "pytest tiny bench"
    for key in ("started_at", "finished_at", "git_commit", "python", "cpu_count", "plan"):
        assert meta[key] is not None
    assert {"grpcio", "protobuf", "uvloop"} <= set(meta["versions"])
    assert {"server_cpu", "client_cpu", "main", "generator"} <= set(meta["placement"])


def test_latency_rows_are_whole(results: dict[str, Any]) -> None:
    for row in results["latency"]:
        assert LATENCY_KEYS <= set(row), row["transport"]
        assert row["n"] > 0 and row["p50_us"] > 0
        assert row["p50_us"] <= row["p99_us"] <= row["p999_us"]


@pytest.mark.parametrize("transport", CHAT)
def test_every_transport_has_every_op_with_cpu(results: dict[str, Any], transport: str) -> None:
    for store in ("memory", "sqlite"):
        mine = rows(results, "latency", transport=transport, store=store, client=None)
        assert CHAT_OPS | HISTORY_OPS | {"deliver", "deliver_all"} <= {r["op"] for r in mine}
        for row in mine:  # a few samples: the CPU is there, its size is not checked
            assert row["server_cpu_us_per_op"] >= 0, (row["op"], store)
            if transport in WIRE:  # loopback: client and server are one process
                assert row["client_cpu_us_per_op"] >= 0, (row["op"], store)
    send = rows(results, "latency", transport=transport, op="send", store="memory", client=None)
    assert send[0]["server_cpu_us_per_op"] > 0
    fanouts = {r["fanout"] for r in rows(results, "latency", transport=transport, op="deliver")}
    assert fanouts == set(TINY.deliver)
    assert rows(results, "load", transport=transport, store="memory", mode="closed")


@pytest.mark.parametrize("transport", WIRE)
def test_every_wire_transport_has_load_steps_bytes_and_a_rung(
    results: dict[str, Any], transport: str
) -> None:
    from bench.refs.lean_load import framed_codec
    from bench.refs.lean_ws import speaks_ws

    steps = rows(results, "load", transport=transport, store="memory")
    # the custom-framed transports: the product client's closed loop, then the lean frame
    # generator's (bench/refs/lean_load.py), which the open loop steps from and is driven by;
    # the websocket transport likewise with the lean websocket generator (bench/refs/lean_ws.py)
    if framed_codec(transport) is not None:
        engines = [("closed", "client"), ("closed", "lean-frames"), ("open", "lean-frames")]
    elif speaks_ws(transport):
        engines = [("closed", "client"), ("closed", "lean-ws"), ("open", "lean-ws")]
    else:
        engines = [("closed", "client"), ("open", "client")]
    assert [(r["mode"], r["engine"]) for r in steps] == engines
    closed, opened = steps[-2:]
    assert opened["offered_per_s"] == pytest.approx(closed["achieved_per_s"] * 0.5, rel=0.01)
    for row in steps:
        assert LOAD_KEYS <= set(row)
        assert row["completed"] > 0 and row["errors"] == 0
    send = rows(results, "sizes", transport=transport, op="send", phase="steady", body_bytes=32)
    assert send and send[0]["c2s_bytes"] > 32
    for op in HISTORY_OPS:  # issue 9: the history operations in the per-op byte table
        for phase in ("first", "steady"):
            (row,) = rows(results, "sizes", transport=transport, op=op, phase=phase)
            assert row["c2s_bytes"] > 0 and row["s2c_bytes"] > 0, (op, phase)
    page = rows(results, "sizes", transport=transport, op="read_history", phase="steady")[0]
    assert page["s2c_bytes"] > 50 * 32  # fifty 32-byte bodies
    same = rows(results, "latency", transport=transport, op="send", placement="same")
    assert len(same) == 1
    rung = next(r for r in results["ladder"] if r["transport"] == transport)
    assert rung["on_ladder"] == (transport in registry.LADDER)
    for key in ("c2s_bytes", "s2c_bytes", "p50_us", "server_cpu_us", "client_cpu_us"):
        assert rung[key] is not None and rung[key] > 0, key
    reference = registry.entry(transport).reference
    if reference:
        target = next(t for t in results["targets"] if t["name"].startswith(f"{transport} send"))
        assert reference in target["name"]
        assert target["status"] in ("PASS", "MISS", "not settled")
        assert target["ci"] is not None  # a ratio over paired rounds


@pytest.mark.parametrize("ref", REFS)
def test_every_reference_row_lands(results: dict[str, Any], ref: str) -> None:
    places = {r["placement"] for r in rows(results, "latency", transport=ref, op="echo")}
    assert places == {"cross", "same"}
    echo = rows(results, "latency", transport=ref, op="echo", placement="cross")[0]
    assert echo["body_bytes"] == 32 and echo["client_cpu_us_per_op"] > 0
    steps = rows(results, "load", transport=ref, store="none")
    assert [r["mode"] for r in steps] == ["closed", "open"]
    assert all(r["completed"] > 0 and r["errors"] == 0 for r in steps)


def test_the_lean_client_measured_the_same_server(results: dict[str, Any]) -> None:
    (lean,) = rows(results, "latency", transport=LEAN_TRANSPORT, client=LEAN_CLIENT)
    assert lean["op"] == "send" and lean["store"] == "memory"
    assert lean["n"] == TINY.per_round(TINY.lean) * TINY.rounds
    assert lean["client_cpu_us_per_op"] > 0 and lean["server_cpu_us_per_op"] > 0
    # ChatClient measured in blocks paired with the lean client's, in one process, each round
    assert {p["round"] for p in lean["pairs"]} == set(range(TINY.rounds))
    assert all(p["chat_cpu_us"] > 0 and p["lean_cpu_us"] > 0 for p in lean["pairs"])
    # issue 8's client-CPU limit reads the hand-framed independent blocking client's blocks
    # (leaner than the lean client); the p50 is the independent asyncio client's target
    found = {t["name"]: t for t in results["targets"]}
    assert "paired blocks in one process" in found[INDEPENDENT_CPU_NAME]["detail"]
    assert not [name for name in found if "lean client" in name]


@pytest.mark.parametrize("transport", INDEPENDENT_TRANSPORTS)
def test_the_independent_client_measured_the_same_server(
    results: dict[str, Any], run_dir: Path, transport: str
) -> None:
    # issue 8: a client written from the contract with a stock library, in blocks paired with
    # ChatClient's against the transport's server, every round (bench/latency.py)
    (row,) = rows(results, "latency", transport=transport, client=INDEPENDENT_CLIENT)
    assert row["op"] == "send" and row["store"] == "memory" and row["client_impl"]
    assert row["n"] == TINY.per_round(TINY.independent) * TINY.rounds
    assert {p["round"] for p in row["pairs"]} == set(range(TINY.rounds))
    for p in row["pairs"]:
        assert p["chat_p50_us"] > 0 and p["independent_p50_us"] > 0
        assert p["echo_p50_us"] > 0  # its reference echo, on a server of its own beside
        assert ("bare_p50_us" in p) == (transport in BARE)  # a bare asyncio client
    (target,) = [t for t in results["targets"] if t["name"] == independent_p50_name(transport)]
    assert target["value"] is not None and "paired blocks in one process" in target["detail"]
    assert f"| {transport} (independent client) | send |" in (run_dir / "REPORT.md").read_text()


def test_the_durable_share_pairs_both_stores(results: dict[str, Any], run_dir: Path) -> None:
    # issue 10 item 1: memory and SQLite servers at once, blocks in turn, the first alternating
    pairs = results["durable"]
    assert [p["first"] for p in pairs] == ["memory", "sqlite"][: len(pairs)]
    for p in pairs:
        assert p["memory_per_s"] > 0 and p["sqlite_per_s"] > 0
        assert p["memory_cpu_us"] > 0 and p["sqlite_cpu_us"] > 0
    (target,) = [t for t in results["targets"] if t["name"] == SQLITE_NAME]
    assert target["value"] is not None and f"{len(pairs)} pairs" in target["detail"]
    assert "## The durable share, paired" in (run_dir / "REPORT.md").read_text()


def test_targets_are_evaluated(results: dict[str, Any]) -> None:
    with_reference = [e for e in registry.BY_NAME.values() if e.wire and e.reference]
    # client CPU, one per independent client, saturation, SQLite, bytes
    assert len(results["targets"]) == len(with_reference) + 4 + len(INDEPENDENT_TRANSPORTS)
    # issue 10's floors from the echo blocks paired with ChatClient's (both servers, one vCPU)
    for entry in with_reference:
        (floor,) = [
            t for t in results["targets"] if t["name"].startswith(f"{entry.name} send p50 <=")
        ]
        assert "each client its own server, the two on one vCPU" in floor["detail"], entry.name
        # the contract's own floor beside it where there is one (bench/refs/null_*.py)
        null = CONTRACT_FLOORS.get(entry.name)
        assert ("contract's own floor" in floor["detail"]) == (null is not None), entry.name
        assert null is None or f"bench/refs/{null}.py" in floor["detail"], entry.name
    assert {t["status"] for t in results["targets"]} <= {"PASS", "MISS", "not settled"}
    assert results["payload_sizes"]


def test_report_and_plots_are_written(run_dir: Path) -> None:
    report = (run_dir / "REPORT.md").read_text()
    for op in HISTORY_OPS:  # in the latency table (op, n) and the per-op byte table
        assert f"| {op} | {TINY.per_round(TINY.history) * TINY.rounds} |" in report, op
        assert f"| {op} | steady |" in report and f"| {op} | first |" in report, op
    assert "## Targets" in report and "## Where the cost goes" in report
    assert "pytest tiny bench" in report
    assert f"{TINY.rounds} rounds of latency" in report
    for transport in WIRE:
        assert f"| {transport} |" in report or f"| {transport} (beside) |" in report
    for name in FIGURES:
        assert (run_dir / name).stat().st_size > 1000
        assert f"]({name})" in report
    latest = run_dir.parent / "latest"
    assert latest.resolve() == run_dir.resolve()
