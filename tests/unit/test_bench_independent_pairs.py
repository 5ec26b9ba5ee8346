"""Issue 8's p50 targets of every transport's independent clients (bench/refs/independent.py,
the blocking ones; bench/refs/independent_aio.py, the asyncio ones), read from the paired
blocks of the bench's independent step (bench/latency.py run_independent) the way custom's is
read from the lean client's; the step's place in the plan; its rows in the report. Recorded
pairs, no server, no timing."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bench import report, run_phases, targets
from bench.config import QUICK
from bench.refs import INDEPENDENT_TRANSPORTS
from bench.runner import BenchRun
from bench.stats import median_interval
from tests.unit.test_bench_report import SAMPLE, lat

GRPC_NAME = "grpc send p50 within 15% of an independent asyncio client's"
#: websocket's pairs below have no asyncio client's blocks (as results from before stop 24):
#: its target is read against the blocking client, as it was then
WS_NAME = "websocket send p50 within 15% of an independent client's"


def pair(independent: float, chat: float, round_: int = 0, **kw: Any) -> dict[str, Any]:
    return {
        "round": round_,
        "first": "chat",
        "n": 250,
        "independent_p50_us": independent,
        "chat_p50_us": chat,
        "independent_cpu_us": 200.0,
        "chat_cpu_us": 230.0,
        **kw,
    }


def with_rows(rows: list[dict[str, Any]], plan: int = 600) -> dict[str, Any]:
    """The report tests' sample run, measured with independent clients (``plan`` sends)."""
    results = copy.deepcopy(SAMPLE)
    results["meta"]["plan"]["independent"] = plan
    results["latency"] += rows
    return results


def independent(transport: str, pairs: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return lat(transport, "send", 400.0, client="independent", pairs=pairs, **kw)


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in targets.evaluate_targets(results)}


#: grpc: ChatClient 1.19-1.27x grpcio's synchronous stub in every pair of three rounds (while
#: the two pooled rows would read 500 / 400 = 1.25x); a bare grpc.aio stub 1.15x the stub.
GRPC_PAIRS = [
    pair(
        400.0 + i,
        (400.0 + i) * (1.19 + 0.008 * i),
        i // 4,
        bare_p50_us=(400.0 + i) * 1.15,
    )
    for i in range(12)
]
WS_PAIRS = [pair(120.0, 120.0 * (1.03 + 0.01 * (i % 4)), i // 4) for i in range(12)]


def test_each_transport_gets_its_target_from_the_median_of_its_pairs() -> None:
    results = with_rows(
        [
            independent(
                "grpc",
                GRPC_PAIRS,
                client_impl="grpcio's synchronous stub (unary Send)",
                bare_impl="a grpc.aio stub (unary Send)",
            ),
            independent("websocket", WS_PAIRS, client_impl="the websockets blocking client"),
        ]
    )
    found = verdicts(results)
    grpc, ws = found[GRPC_NAME], found[WS_NAME]
    # ChatClient, an asyncio client, is read against the independent asyncio client
    ratios = sorted(p["chat_p50_us"] / p["bare_p50_us"] for p in GRPC_PAIRS)
    assert grpc["value"] == pytest.approx((ratios[5] + ratios[6]) / 2, abs=1e-3)
    low, high, _ = median_interval(ratios)  # type: ignore[misc]
    assert grpc["ci"] == [pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4)]
    assert high < 1.15 and grpc["status"] == "PASS" and ws["status"] == "PASS"
    assert grpc["limit"] == ws["limit"] == 0.15 and grpc["source"] == "issue 8"
    assert "paired blocks in one process, 12 pairs (3 rounds)" in grpc["detail"]
    assert "vs a grpc.aio stub (unary Send)" in grpc["detail"]
    # the blocking client that times the ladder stands beside, with what asyncio costs
    assert (
        "grpcio's synchronous stub (unary Send) (blocking, which times the ladder) reads "
        "405.5 µs, the asyncio client 1.15x it" in grpc["detail"]
    )
    assert "bare" not in ws["detail"] and "asyncio" not in ws["detail"]


def test_a_chatclient_slower_than_the_asyncio_floor_misses() -> None:
    slow = [pair(400.0, 400.0 * 1.4, i // 4, bare_p50_us=400.0 * 1.1 + i) for i in range(12)]
    found = verdicts(with_rows([independent("grpc", slow)]))
    assert found[GRPC_NAME]["status"] == "MISS"


def test_pairs_straddling_the_band_leave_the_target_not_settled() -> None:
    straddling = [pair(100.0, 100.0 * r) for r in (1.05, 1.1, 1.13, 1.17, 1.2, 1.25)]
    found = verdicts(with_rows([independent("grpc-stream", straddling)]))
    name = "grpc-stream send p50 within 15% of an independent client's"
    assert found[name]["status"] == targets.UNSETTLED


def test_custom_client_cpu_is_read_against_the_hand_framed_blocking_client() -> None:
    # the lean client (our codec) spends 40 µs, the hand-framed blocking one 30 µs: the limit
    # reads the leaner, and the lean client's p50 target gives way to the independent one
    cpu = [
        pair(100.0, 110.0, i // 4, independent_cpu_us=30.0, chat_cpu_us=42.0 + i * 0.1)
        | {"bare_p50_us": 104.0, "bare_cpu_us": 33.0}
        for i in range(12)
    ]
    lean = {"lean_p50_us": 100.0, "chat_p50_us": 110.0, "lean_cpu_us": 40.0, "chat_cpu_us": 42.0}
    results = with_rows([independent("custom", cpu)])
    for row in results["latency"]:
        if row.get("client") == "lean":
            row["pairs"] = [{**lean, "round": i // 4, "n": 250} for i in range(12)]
    found = verdicts(results)
    target = found[targets.INDEPENDENT_CPU_NAME]
    assert target["value"] == pytest.approx(42.55 / 30.0, abs=1e-3)
    assert target["status"] == "MISS" and target["limit"] == 1.3
    assert targets.LEAN_CPU_NAME not in found and targets.LEAN_P50_NAME not in found
    assert found["custom send p50 within 15% of an independent asyncio client's"]["value"]


def test_the_floor_ratio_comes_from_the_echo_blocks_beside_the_pairs() -> None:
    # the unpaired rows would read 500 / 100 = 5x; the pairs, each with the echo's block
    # beside it at the same moment, read ChatClient 1.1x the echo
    echoed = [
        pair(400.0, 110.0 + i, i // 4, bare_p50_us=105.0, echo_p50_us=100.0) for i in range(12)
    ]
    found = verdicts(with_rows([independent("grpc", echoed, bare_impl="a grpc.aio stub")]))
    target = found[targets.floor_p50_name("grpc", "grpc_echo", 1.15)]
    assert target["value"] == pytest.approx(1.155, abs=1e-3)  # median of 1.10 .. 1.21
    assert target["source"] == "issue 10" and target["status"] == targets.UNSETTLED
    assert "grpc_echo's own client against its echo 100.0 µs" in target["detail"]
    assert "a grpc.aio stub reads 1.05x the echo one" in target["detail"]
    assert "each client its own server, the two on one vCPU" in target["detail"]


def test_a_planned_transport_without_its_row_is_not_applicable_never_a_pass() -> None:
    found = verdicts(with_rows([independent("websocket", WS_PAIRS)]))
    for transport in INDEPENDENT_TRANSPORTS:
        if transport != "websocket":  # measured: its pairs say which client it is read against
            assert targets.independent_p50_name(transport) in found
    assert found[GRPC_NAME]["status"] == "n/a"
    assert found[WS_NAME]["status"] == "PASS"


def test_a_run_from_before_the_independent_step_has_no_such_target() -> None:
    names = [t["name"] for t in targets.evaluate_targets(SAMPLE)]
    assert not [n for n in names if "independent client" in n]
    # the lean client's targets are still there, and still named as before
    assert "custom send p50 within 15% of a lean client's" in names


def test_the_latency_table_shows_each_independent_row_after_its_transport() -> None:
    results = with_rows([independent("grpc", GRPC_PAIRS), independent("websocket", WS_PAIRS)])
    text = report.render(results)
    table = text[text.index("## Latency, one request in flight") :]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    names = [line.split(" | ")[0][2:] for line in lines]
    assert names.index("grpc (independent client)") == names.index("grpc") + 1
    assert names.index("websocket (independent client)") == names.index("websocket") + 1
    assert GRPC_NAME in text and "600 by each independent client" in text


# -- the step in the plan ---------------------------------------------------------------------
def test_the_quick_plan_measures_each_independent_client_in_every_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # BenchRun's scratch directory
    chosen = ["custom", *INDEPENDENT_TRANSPORTS]
    run = BenchRun(QUICK, chosen, tmp_path, command="test", progress=False)
    steps = run.steps()
    found = [s for s in steps if s.label.endswith(": independent client")]
    assert sorted(s.label for s in found) == sorted(
        f"r{r + 1} {t}/memory: independent client"
        for r in range(QUICK.rounds)
        for t in INDEPENDENT_TRANSPORTS
    )
    assert {s.phase for s in found} == {run_phases.LATENCY}
    assert run_phases.phase_of_label("r1 grpc/memory: independent client") == run_phases.LATENCY
    # each round's independent step follows its transport's latency step, on its server
    labels = [s.label for s in steps]
    for s in found:
        assert labels.index(s.label.replace("independent client", "latency")) < labels.index(
            s.label
        )


def test_the_independent_clients_are_the_ones_the_plan_names() -> None:
    from bench.refs.independent import INDEPENDENT
    from bench.refs.independent_aio import BARE

    assert tuple(INDEPENDENT) == INDEPENDENT_TRANSPORTS
    assert set(BARE) == set(INDEPENDENT)  # a blocking and an asyncio client of each
    assert all(cls.LIBRARY for cls in (*INDEPENDENT.values(), *BARE.values()))
