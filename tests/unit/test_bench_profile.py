"""The CPU profile scene: py-spy's collapsed stacks read into self time, areas and an SVG
flame graph; and py-spy really attaching to a running Python process here."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from bench import flame

RAW = """\
main (app.py);serve (transports/custom/_server.py);send (core/service.py) 30
main (app.py);serve (transports/custom/_server.py) 10
main (app.py);Runner.run (asyncio/runners.py) 60
"""


def test_collapsed_stacks_give_self_time_and_areas() -> None:
    stacks = flame.parse_collapsed(RAW)
    assert sum(stacks.values()) == 100
    assert flame.self_time(stacks)[0] == ("Runner.run (asyncio/runners.py)", 60)
    # the loop's own frame stands for the C below it (uvloop, grpc's core, system calls)
    assert dict(flame.by_area(stacks)) == {"loop/C": 60, "core": 30, "transports": 10}


def test_the_flame_graph_is_an_svg_with_a_box_per_frame(tmp_path: Path) -> None:
    results = {
        "profiles": [
            {
                "transport": "custom",
                "samples": 100,
                "seconds": 1.0,
                "rate_hz": 100,
                "achieved_per_s": 5000.0,
                "server_cpu_us_per_op": 50.0,
                "other_vcpus": 0.0,
                "stacks": flame.parse_collapsed(RAW),
            }
        ]
    }
    (path,) = flame.draw_flames(results, tmp_path)
    svg = ET.parse(path).getroot()
    titles = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("send (core/service.py) — 30 samples, 30.0%") for t in titles)
    assert len(titles) == 5  # all, main, serve, send, Runner.run
    text = flame.section(results, [path.name])
    assert "[flame graph](flame_custom.svg)" in text
    assert "| `Runner.run (asyncio/runners.py)` | 60.0% | 30.0 |" in text  # 60 % of 50 µs


BUSY = """
import time
def spin_here():
    end = time.time() + 30
    while time.time() < end:
        sum(range(1000))
print("ready", flush=True)
spin_here()
"""


def test_py_spy_attaches_to_a_running_python_and_sees_its_function(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        stacks = flame.record(child.pid, 1.0, 100, tmp_path / "raw.txt")
    finally:
        child.kill()
        child.wait(10)
    assert sum(stacks.values()) > 10
    assert any("spin_here" in stack for stack in stacks)


def test_the_idle_executor_thread_is_set_aside() -> None:
    stacks = flame.parse_collapsed(
        RAW + "Thread.run (threading.py);_worker (concurrent/futures/thread.py) 25\n"
    )
    kept, idle = flame.split_idle(stacks)
    assert idle == 25 and sum(kept.values()) == 100
