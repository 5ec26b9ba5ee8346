"""Hypervisor steal on every timing row: read from recorded /proc/stat snapshots (bench.meta),
carried by the CPU meter's rows and merged over rounds, shown beside `other vCPUs` in
REPORT.md and counted by its busy-machine warnings. No timing: the snapshots are fixed text."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench import endpoints, meta, report, rounds
from bench.latency import _sum_cpu
from tests.unit.bench_rows import custom_send_row
from tests.unit.test_bench_report import SAMPLE, lat, load

HZ = meta.CLK_TCK


def stat(user: int, system: int, steal: int) -> str:
    """A /proc/stat as the kernel writes it (two spaces after "cpu", a line per vCPU
    after it), with these tick counts on the machine's line."""
    return (
        f"cpu  {user} 7 {system} 900000 721 0 8679 {steal} 0 0\n"
        f"cpu0 {user // 2} 3 {system // 2} 450000 354 0 4034 {steal // 2} 0 0\n"
        "intr 123 0 9\n"
    )


#: Two snapshots 2 s apart: processes ran 1.5 s of user and 0.5 s of system time, the
#: hypervisor stole 0.6 s (0.3 vCPUs on average).
BEFORE = stat(user=100 * HZ, system=30 * HZ, steal=4 * HZ)
AFTER = stat(user=100 * HZ + 3 * HZ // 2, system=30 * HZ + HZ // 2, steal=4 * HZ + 3 * HZ // 5)


def test_the_machine_line_of_proc_stat_is_read_kind_by_kind() -> None:
    ticks = meta.machine_cpu(BEFORE)
    assert dict(zip(meta.CPU_KINDS, ticks, strict=True)) == {
        "user": 100 * HZ,
        "nice": 7,
        "system": 30 * HZ,
        "idle": 900000,
        "iowait": 721,
        "irq": 0,
        "softirq": 8679,
        "steal": 4 * HZ,
    }
    assert meta.machine_seconds(BEFORE) == {"machine": 130 + 7 / HZ, "steal": 4.0}


def test_a_file_that_is_not_proc_stat_is_refused_and_measures_nothing() -> None:
    with pytest.raises(ValueError, match="cpu line"):
        meta.machine_cpu("intr 123 0 9\n")
    with pytest.raises(ValueError):
        meta.machine_cpu("cpu  1 2 3\n")  # a kernel without the steal column
    assert meta.machine_seconds("cpu0 1 2 3 4 5 6 7 8\n") == {}
    assert meta.background_cpu({"wall": 0.0, "ours": 0.0}, {"wall": 2.0, "ours": 0.0}) == {
        "other_vcpus": None,
        "steal_vcpus": None,
    }


def test_steal_and_other_work_between_two_snapshots_are_vcpus_on_average() -> None:
    """Over 2 s: 2 s of processes' time of which ours took 1.2 s leaves 0.4 vCPUs of other
    work; 0.6 s stolen is 0.3 vCPUs."""
    start = {"wall": 10.0, "ours": 5.0, **meta.machine_seconds(BEFORE)}
    end = {"wall": 12.0, "ours": 6.2, **meta.machine_seconds(AFTER)}
    assert meta.background_cpu(start, end) == {"other_vcpus": 0.4, "steal_vcpus": 0.3}


def test_the_cpu_meter_gives_each_row_the_steal_over_its_own_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The meter reads /proc/stat at its start and at ``elapsed()``: the row's steal is what
    the hypervisor took between the two, per second of the row's own wall time."""
    import os

    snapshots = iter([BEFORE, AFTER])
    monkeypatch.setattr(endpoints, "machine_seconds", lambda: meta.machine_seconds(next(snapshots)))
    meter = endpoints.CpuMeter(os.getpid())
    cpu = meter.elapsed()
    wall = cpu["wall_s"]
    assert wall is not None and wall > 0
    assert cpu["steal_vcpus"] == round(0.6 / wall, 3)
    row = endpoints.cpu_fields(cpu, 100)
    assert row["steal_vcpus"] == cpu["steal_vcpus"]
    assert row["other_vcpus"] == cpu["other_vcpus"]  # the old field is kept beside it


def test_blocks_of_one_row_weigh_their_steal_by_their_wall_time() -> None:
    """The lean row pools its blocks' meters: steal is a rate, averaged, not added up."""
    parts: list[dict[str, float | None]] = [
        {"wall_s": 1.0, "server_cpu_s": 0.5, "other_vcpus": 0.0, "steal_vcpus": 0.4},
        {"wall_s": 3.0, "server_cpu_s": 1.5, "other_vcpus": 0.0, "steal_vcpus": 0.0},
    ]
    total = _sum_cpu(parts)
    assert total["steal_vcpus"] == pytest.approx(0.1)
    assert total["server_cpu_s"] == pytest.approx(2.0)


def test_the_headline_row_carries_the_median_steal_of_its_rounds() -> None:
    group = [
        custom_send_row(round=r, n=100, p50_us=100.0, other_vcpus=0.0, steal_vcpus=steal)
        for r, steal in enumerate((0.0, 0.2, 0.05))
    ]
    merged = rounds.merge_rounds(group)
    assert merged["steal_vcpus"] == pytest.approx(0.05)
    assert [r["steal_vcpus"] for r in merged["rounds"]] == [0.0, 0.2, 0.05]


def _column(text: str, heading: str, first_cell: str) -> list[str]:
    """The cells under ``heading`` in the rows of the first table having that column whose
    first cell is ``first_cell``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if heading in cells:
            at = cells.index(heading)
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                found = [c.strip() for c in row.strip("|").split("|")]
                if found[0] == first_cell:
                    rows.append(found[at])
            return rows
    raise AssertionError(f"no table with a {heading!r} column")


def _with_rows(latency: list[dict[str, Any]], loads: list[dict[str, Any]]) -> dict[str, Any]:
    results = copy.deepcopy(SAMPLE)
    results["latency"] = [r for r in results["latency"] if r["transport"] != "grpc"] + latency
    results["load"] = [r for r in results["load"] if r["transport"] != "grpc"] + loads
    return results


def test_each_timing_row_shows_its_steal_beside_other_vcpus_flagged_from_the_threshold() -> None:
    stolen = lat("grpc", "send", 500.0, other_vcpus=0.01, steal_vcpus=0.15)
    quiet = load("grpc", "closed", 5000.0, other_vcpus=0.01, steal_vcpus=0.14)
    crowded = load("grpc", "open", 2500.0, other_vcpus=0.01, steal_vcpus=0.4)
    text = report.render(_with_rows([stolen], [quiet, crowded]))
    assert _column(text, "steal vCPUs", "grpc")[0] == "0.15 ⚠"  # the round-trip table
    assert _column(text, "other vCPUs", "grpc")[0] == "0.01"
    load_part = text[text.index("## Throughput and latency under load") :]
    assert "0.14" in _column(load_part, "steal vCPUs", "grpc")  # saturation: below it
    open_part = load_part[load_part.index("### Open-loop steps") :]
    assert _column(open_part, "steal vCPUs", "grpc") == ["0.40 ⚠"]


def test_rows_from_before_steal_was_recorded_show_a_dash() -> None:
    text = report.render(SAMPLE)  # its rows have neither figure
    assert set(_column(text, "steal vCPUs", "custom")) == {"—"}


@pytest.mark.parametrize(
    ("other", "steal", "busy"),
    [(0.02, 0.0, False), (0.02, 0.09, False), (0.02, 0.1, True), (0.8, 0.0, True)],
)
def test_the_header_warns_of_a_busy_machine_for_steal_as_for_other_work(
    other: float, steal: float, busy: bool
) -> None:
    results = copy.deepcopy(SAMPLE)
    results["meta"]["background"] = {"other_vcpus": other, "steal_vcpus": steal}
    header = report.render(results).split("How to read it", 1)[0]
    assert ("the machine was busy" in header) is busy
