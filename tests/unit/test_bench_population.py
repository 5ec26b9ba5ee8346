"""The population scene: its seeded workload, its verdicts, its report, and one small real run
(loopback: the population and the service in this process)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from bench import population
from bench.population import PopulationPlan, _Scene, _workload, overloaded
from core.types import Delivery

PLAN = PopulationPlan(sessions=50, rates=(100.0,), step_s=0.5, transports=None)


def test_sends_go_to_one_to_ten_distinct_other_users() -> None:
    names = [f"u{i}" for i in range(50)]
    ops = _workload(7, 2000, names, PLAN)
    sends = [op for op in ops if op.recipients]
    assert sends and len(sends) < len(ops)  # list_accounts are mixed in
    for op in sends:
        assert 1 <= len(op.recipients) <= 10
        assert len(set(op.recipients)) == len(op.recipients)
        assert names[op.sender] not in op.recipients
    assert {len(op.recipients) for op in sends} == set(range(1, 11))
    share = (len(ops) - len(sends)) / len(sends)
    assert 0.05 < share < 0.15  # list_accounts at a tenth of the send rate
    assert _workload(7, 2000, names, PLAN) == ops  # seeded: the same mix every run


def test_a_step_is_overloaded_when_pushes_go_missing_or_the_tail_explodes() -> None:
    fine = {"pushes_expected": 1000, "pushes_missing": 0, "push_p99_us": 20_000.0}
    assert not overloaded(fine)
    assert overloaded({**fine, "pushes_missing": 50})
    assert overloaded({**fine, "push_p99_us": 2_000_000.0})
    assert overloaded({**fine, "overloaded": True})


def _row(transport: str, rate: float, p99: float) -> dict[str, object]:
    return {
        "transport": transport,
        "sessions": 1000,
        "offered_sends_per_s": rate,
        "achieved_ops_per_s": rate * 1.1,
        "push_p50_us": p99 / 3,
        "push_p99_us": p99,
        "push_p999_us": p99 * 2,
        "pushes": 100,
        "pushes_missing": 0,
        "errors": 0,
        "op_p99_us": 900.0,
        "op_queue_p99_us": 200.0,
        "op_sent_fraction": 1.0,
        "server_cpu_util": 0.5,
        "client_cpu_util": 0.6,
        "rss_per_session_kib": 12.5,
        "other_vcpus": 0.01,
    }


def test_the_report_gives_the_target_its_verdict(tmp_path: Path) -> None:
    results = {"population": [_row("custom", 250, 9_000), _row("custom", 1000, 40_000)]}
    text = population.section(results, ["population.png"])
    assert "**PASS**" in text and "40,000" in text
    assert "population.png" in text
    results["population"][1]["push_p99_us"] = 60_000.0
    assert "**MISS**" in population.section(results, [])
    assert population.plot(results, tmp_path / "population.png") is not None
    assert (tmp_path / "population.png").stat().st_size > 0


def test_without_the_target_row_the_report_says_so() -> None:
    text = population.section({"population": [_row("grpc", 250, 9_000)]}, [])
    assert "not measured in this run" in text


async def test_a_small_population_gets_every_push() -> None:
    """20 in-process sessions at 50 sends/s: every push arrives and is timed, no errors."""
    plan = PopulationPlan(sessions=20, rates=(50.0,), step_s=0.4, transports=None, drain_s=5.0)
    job = {
        "target": {"kind": "chat", "transport": "loopback", "db": ":memory:"},
        "plan": {**plan.__dict__},
        "prefix": "t",
        "seed": 3,
    }
    (row,) = await population.run_population(job)
    assert row["errors"] == 0 and row["pushes_missing"] == 0
    assert row["pushes"] == row["pushes_expected"] > 0
    assert row["sends"] + row["list_accounts"] == round(50 * 1.1 * 0.4)
    assert row["push_p50_us"] is not None and row["push_p99_us"] >= row["push_p50_us"]
    assert row["in_process"] and row["sessions"] == 20


class _LatePushes:
    """A stand-in session whose pushes reach its recipients ``delay`` after the send's reply
    (the first send's at once), as on a real server the reply can beat the fan-out."""

    def __init__(self, name: str, everyone: dict[str, _LatePushes], delay: float) -> None:
        self.name, self.everyone, self.delay = name, everyone, delay
        self.inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        self.sends = 0

    async def send(self, recipients: tuple[str, ...], body: str) -> None:
        delay = self.delay if any(c.sends for c in self.everyone.values()) else 0.0
        self.sends += 1
        for name in recipients:
            delivery = Delivery(message_id=1, sender=self.name, body=body, sent_at_ms=0)
            asyncio.get_running_loop().call_later(
                delay, self.everyone[name].inbox.put_nowait, delivery
            )

    async def list_accounts(self, pattern: str, limit: int) -> None:
        return None

    async def messages(self) -> AsyncIterator[Delivery]:
        while True:
            yield await self.inbox.get()


async def test_the_drain_waits_for_pushes_that_arrive_after_the_last_reply() -> None:
    """The pushes catching up with the sends early in a step must not end the drain: the
    last sends' pushes, arriving after every reply, are waited for and counted."""
    plan = PopulationPlan(sessions=4, rates=(50.0,), step_s=0.2, transports=None, drain_s=2.0)
    names = [f"u{i}" for i in range(plan.sessions)]
    everyone: dict[str, _LatePushes] = {}
    for name in names:
        everyone[name] = _LatePushes(name, everyone, delay=0.2)
    scene = _Scene("stand-in", os.getpid(), plan)
    scene.members = list(everyone.values())

    async def read(session: _LatePushes) -> None:
        async for delivery in session.messages():
            scene.pushed_body(delivery.body)

    readers = [asyncio.ensure_future(read(c)) for c in everyone.values()]
    try:
        row = await scene.step(5, 50.0, 0, names)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    assert row["sends"] > 1 and row["errors"] == 0
    assert row["pushes_missing"] == 0
    assert row["pushes"] == row["pushes_expected"] > 0


def test_the_report_says_when_the_clients_were_the_bottleneck() -> None:
    """By their lateness, not their CPU: the open loop busy-polls before each operation, so
    the clients' vCPU reads busy whatever their work."""
    late = _row("custom", 1000, 2_000) | {"op_queue_p99_us": 5_000.0, "server_cpu_util": 0.3}
    text = population.section({"population": [_row("custom", 250, 900), late]}, [])
    target_line = next(line for line in text.splitlines() if line.startswith("Target"))
    assert "**PASS**" in target_line and "dispatch p99 5,000 µs" in target_line
    rows = [line for line in text.splitlines() if line.startswith("| custom")]
    assert "**generator**" in rows[1] and "**generator**" not in rows[0]
    busy_on_time = _row("custom", 1000, 2_000) | {"client_cpu_util": 1.0}
    text = population.section({"population": [busy_on_time]}, [])
    assert not any("dispatch p99" in line for line in text.splitlines() if "Target" in line)
    (row,) = [line for line in text.splitlines() if line.startswith("| custom")]
    assert "**generator**" not in row and "| neither |" in row
    unsent = _row("custom", 1000, 2_000) | {"op_sent_fraction": 0.5}
    assert population.limited_by(unsent) == "**generator**"
    assert population.limited_by(_row("custom", 2000, 9_000) | {"server_cpu_util": 0.95}) == (
        "server"
    )


def test_an_overloaded_step_is_not_read_as_limited_by_either_process() -> None:
    behind = _row("grpc", 1000, 1_500_000) | {"pushes_missing": 50, "overloaded": True}
    text = population.section({"population": [behind]}, [])
    (row,) = [line for line in text.splitlines() if line.startswith("| grpc")]
    assert "| overloaded |" in row and "neither" not in row
