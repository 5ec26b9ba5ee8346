"""The load figures name the generator where a transport has load rows from two of them
(custom, protobuf-tcp: the product client's closed loop beside the lean frame generator's),
so no two bars or lines carry the same label."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench import plots

REGISTRY = [
    {"name": "custom", "label": "custom binary", "wire": True, "reference": "tcp_echo",
     "isolates": "", "ladder": True},
    {"name": "grpc", "label": "gRPC unary", "wire": True, "reference": "grpc_echo",
     "isolates": "one call per command", "ladder": True},
]  # fmt: skip


def load(transport: str, mode: str, achieved: float, engine: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "transport": transport,
        "op": "echo" if transport.endswith("_echo") else "send",
        "store": "none" if transport.endswith("_echo") else "memory",
        "mode": mode,
        "fraction": None if mode == "closed" else 0.5,
        "offered_per_s": None if mode == "closed" else achieved,
        "achieved_per_s": achieved,
        "completed": 1000,
        "p50_us": 300.0,
        "p99_us": 900.0,
        "server_cpu_us_per_op": 1e6 / achieved,
        "client_cpu_us_per_op": 1e6 / achieved / 2,
    }
    if engine is not None:  # a row from before the lean generators has no engine
        row["engine"] = engine
    return row


RESULTS: dict[str, Any] = {
    "meta": {"registry": REGISTRY},
    "load": [
        load("custom", "closed", 17000.0, "client"),
        load("custom", "closed", 50000.0, "lean-frames"),
        load("custom", "open", 25000.0, "lean-frames"),
        load("custom", "closed", 900.0, "client") | {"store": "sqlite"},  # not drawn
        load("grpc", "closed", 5000.0, "client"),
        load("grpc", "open", 2500.0, "client"),
        load("tcp_echo", "closed", 60000.0, "lean"),
        load("tcp_echo", "open", 30000.0, "lean"),
    ],
}


def legend_of(ax: Axes) -> list[str]:
    """The texts of an axes' legend (it has one: every load figure draws it)."""
    box = ax.get_legend()
    assert box is not None
    return [t.get_text() for t in box.get_texts()]


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """The figures the plot functions draw, kept open instead of saved."""
    figs: list[Figure] = []

    def keep(fig: Figure, path: Path) -> Path:
        figs.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    yield figs
    for fig in figs:
        plots.plt.close(fig)


def test_cpu_per_op_names_the_generator_of_each_pair_of_bars(
    drawn: list[Figure], tmp_path: Path
) -> None:
    assert plots.cpu_per_op(RESULTS, tmp_path / "cpu.png") is not None
    (ax,) = drawn[0].axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [
        "custom\n(ChatClient)\nsend",
        "custom\n(lean gen.)\nsend",
        "grpc\nsend",  # one generator: no need to say which
        "tcp_echo\necho",
    ]
    assert len(set(ticks)) == len(ticks)
    assert "lean frame generator" in ax.get_title()
    # the server bars are each row's own figure, in the ticks' order
    server = [bar.get_height() for bar in ax.containers[0]]
    assert server == pytest.approx([1e6 / 17000, 1e6 / 50000, 1e6 / 5000, 1e6 / 60000])


def test_cpu_per_op_of_a_run_with_one_generator_per_transport_reads_as_before(
    drawn: list[Figure], tmp_path: Path
) -> None:
    older = {
        "meta": {"registry": REGISTRY},
        "load": [load("custom", "closed", 17000.0, None), load("grpc", "closed", 5000.0, None)],
    }
    plots.cpu_per_op(older, tmp_path / "cpu.png")
    (ax,) = drawn[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["custom\nsend", "grpc\nsend"]
    assert "lean" not in ax.get_title()


def test_load_curves_name_the_generator_of_a_transport_measured_by_two(
    drawn: list[Figure], tmp_path: Path
) -> None:
    assert plots.load_curves(RESULTS, tmp_path / "load.png") is not None
    lat, thr = drawn[0].axes
    names = legend_of(thr)
    assert names[0] == "custom binary (custom) (lean gen.)"
    assert "gRPC unary (grpc)" in names and "tcp_echo" in names
    latency = legend_of(lat)
    assert len(set(latency)) == len(latency)


def test_load_curves_draw_two_generators_open_rows_as_two_lines(
    drawn: list[Figure], tmp_path: Path
) -> None:
    both = {
        "meta": {"registry": REGISTRY},
        "load": [
            load("custom", "open", 25000.0, "lean-frames"),
            load("custom", "open", 8000.0, "client"),
        ],
    }
    plots.load_curves(both, tmp_path / "load.png")
    _, thr = drawn[0].axes
    names = legend_of(thr)
    assert {"custom binary (custom) (lean gen.)", "custom binary (custom) (ChatClient)"} <= set(
        names
    )


def test_a_references_own_client_is_not_called_ours() -> None:
    row = load("tcp_echo", "closed", 60000.0, None)
    assert plots.engine_label(RESULTS, row) == "own client"
    assert plots.engine_label(RESULTS, load("custom", "closed", 1.0, None)) == "ChatClient"
    assert plots.mixed_engines(RESULTS["load"]) == {"custom"}
