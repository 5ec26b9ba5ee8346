"""bench.refs.independent: clients written from the contracts alone measure the same server
as the product's clients, one row per transport (issue 8's p50 cross-check)."""

from __future__ import annotations

import os
import re

import pytest

from bench.refs import CONTRACT_FLOORS, independent
from tests.unit.test_bench_lean_pairs import assert_three_way_pairs, paired_step_row


def test_every_transport_gets_its_cross_check_row(capsys: pytest.CaptureFixture[str]) -> None:
    independent.main(["--pairs", "2", "--block", "20"])
    out = capsys.readouterr().out
    rows = {m[1]: m for m in re.finditer(r"^\| ([a-z-]+) \| ([\d.]+) \| ([\d.]+) \| ", out, re.M)}
    assert set(rows) == {"custom", "protobuf-tcp", "websocket", "grpc-stream", "grpc"}, out
    for name, row in rows.items():
        assert float(row[2]) > 0 and float(row[3]) > 0, name
    assert out.count("bare asyncio client") == 5  # each row splits its gap


async def test_the_bench_step_pairs_grpcs_three_clients_against_a_real_server() -> None:
    # the bench's step itself, small: 2 pairs of 10 sends, each beside a bare grpc.aio block
    from bench.latency import run_independent

    row = await paired_step_row(run_independent, "grpc")
    assert row["client"] == "independent"
    assert row["client_impl"] == "grpcio's synchronous stub (unary Send)"
    assert_three_way_pairs(row, "independent")


async def test_the_custom_step_has_a_hand_written_client_and_a_bare_asyncio_one() -> None:
    from bench.latency import run_independent

    row = await paired_step_row(run_independent, "custom")
    assert row["client_impl"] == independent.BlockingCustom.LIBRARY
    assert_three_way_pairs(row, "independent")


async def test_the_reference_echo_stands_beside_each_pair_on_its_own_server() -> None:
    # issue 10's floor, paired: tcp_echo's own client against its own server, a block beside
    # every pair, timed (and its server's CPU read) like the others
    from bench.latency import run_independent
    from bench.procs import RefServer
    from wirechat.launch import ServerProcess

    server = ServerProcess(["custom"], ":memory:").start()
    echo = RefServer("tcp_echo").start()
    try:
        assert echo.address is not None
        job = {
            "target": {
                "kind": "chat",
                "transport": "custom",
                "address": list(server.addresses["custom"]),
                "server_pid": server.pid,
            },
            "echo": {"ref": "tcp_echo", "address": list(echo.address), "server_pid": echo.pid},
            "n": 20,
            "warmup": 2,
            "prefix": "le",
            "body": "x" * 32,
        }
        (row,) = await run_independent(job)
    finally:
        echo.stop()
        server.stop()
    for p in row["pairs"]:
        assert sorted(p["order"]) == ["bare", "chat", "echo", "independent"]
        assert p["echo_p50_us"] > 0 and p["echo_cpu_us"] > 0
        assert p["echo_server_cpu_us"] > 0  # the echo server's own CPU, not the chat server's


@pytest.mark.parametrize("transport", sorted(CONTRACT_FLOORS))
async def test_the_contracts_floor_stands_beside_each_pair(transport: str) -> None:
    # issue 10: the bare client against its contract served with no chat behind it (null_chat
    # for gRPC, null_frames for the varint protocols) beside the echo, on a server of its own:
    # the part of the gap to the echo that no server can remove
    from bench.latency import run_independent
    from bench.procs import RefServer
    from transports import registry
    from wirechat.launch import ServerProcess

    ref = registry.entry(transport).reference
    assert ref is not None
    server = ServerProcess([transport], ":memory:").start()
    null = CONTRACT_FLOORS[transport]
    echo, floor = RefServer(ref).start(), RefServer(null).start()
    try:
        assert echo.address is not None and floor.address is not None
        job = {
            "target": {
                "kind": "chat",
                "transport": transport,
                "address": list(server.addresses[transport]),
                "server_pid": server.pid,
            },
            "echo": {"ref": ref, "address": list(echo.address), "server_pid": echo.pid},
            "contract": {
                "ref": null,
                "address": list(floor.address),
                "server_pid": floor.pid,
            },
            "n": 20,
            "warmup": 2,
            "prefix": "nc",
            "body": "x" * 32,
        }
        (row,) = await run_independent(job)
    finally:
        floor.stop()
        echo.stop()
        server.stop()
    for p in row["pairs"]:
        assert sorted(p["order"]) == ["bare", "chat", "contract", "echo", "independent"]
        assert p["contract_p50_us"] > 0 and p["contract_server_cpu_us"] > 0


@pytest.mark.parametrize("name", ["custom", "protobuf-tcp"])
async def test_a_hand_framed_client_sends_what_the_product_stores(name: str) -> None:
    # a hand-framed client is only a cross-check if the server takes its frames as the
    # product's: each send is stored, and waits for its recipient
    from transports import registry
    from wirechat.launch import ServerProcess

    server = ServerProcess([name], ":memory:").start()
    transport = registry.get(name)
    try:
        address = server.addresses[name]
        reader = transport.open_client(address)
        await reader.connect()
        await reader.signup("pbreader", independent.PASSWORD)
        await reader.close()
        client = independent.INDEPENDENT[name](address, "pbwriter", "pbreader", "hi there")
        ids = [client.send() for _ in range(3)]
        client.close()
        reader = transport.open_client(address)
        await reader.connect()
        result = await reader.login("pbreader", independent.PASSWORD)
        await reader.close()
    finally:
        server.stop()
    assert result.pending == 3
    assert 0 < ids[0] < ids[1] < ids[2]  # each SENT decoded: the server's increasing ids


def test_a_transport_without_an_independent_client_is_refused() -> None:
    with pytest.raises(SystemExit):
        independent.main(["nonesuch"])


def test_the_caller_keeps_its_vcpus() -> None:
    before = os.sched_getaffinity(0)
    independent.main(["--pairs", "1", "--block", "5", "websocket"])
    assert os.sched_getaffinity(0) == before
