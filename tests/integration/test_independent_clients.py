"""bench.refs.independent: clients written from the contracts alone measure the same server
as the product's clients, one row per transport (issue 8's p50 cross-check)."""

from __future__ import annotations

import os
import re

import pytest

from bench.refs import independent


def test_every_transport_gets_its_cross_check_row(capsys: pytest.CaptureFixture[str]) -> None:
    independent.main(["--pairs", "2", "--block", "20"])
    out = capsys.readouterr().out
    rows = {m[1]: m for m in re.finditer(r"^\| ([a-z-]+) \| ([\d.]+) \| ([\d.]+) \| ", out, re.M)}
    assert set(rows) == {"websocket", "grpc-stream", "grpc"}, out
    for name, row in rows.items():
        assert float(row[2]) > 0 and float(row[3]) > 0, name
    assert "bare grpc.aio stub" in out  # the gRPC row splits its gap


def test_a_transport_without_an_independent_client_is_refused() -> None:
    with pytest.raises(SystemExit):
        independent.main(["custom"])


def test_the_caller_keeps_its_vcpus() -> None:
    before = os.sched_getaffinity(0)
    independent.main(["--pairs", "1", "--block", "5", "websocket"])
    assert os.sched_getaffinity(0) == before
