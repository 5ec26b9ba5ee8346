"""bench/grpc_split.py: the probe that splits the gRPC unary floor. Its shape is checked here,
quickly, against real servers on 127.0.0.1; its figures are not (timing is the bench's)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from bench import grpc_split
from transports.grpc._generated import chat_pb2 as pb


def test_a_short_probe_against_real_servers_gives_every_variant_and_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split.json"
    argv = ["--rounds", "2", "--block", "10", "--lead-in", "2", "--warmup", "3"]
    assert grpc_split.main([*argv, "--budget", "60", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # a round in which our server shed a send (a busy machine) is dropped, not timed
    timed = len(result["rounds"])
    assert timed >= 1 and timed + result["dropped_rounds"] == 2
    assert set(result["variants"]) == set(grpc_split.VARIANTS)
    for name, row in result["variants"].items():
        assert row["p50_us"] > 0 and row["client_cpu_us"] > 0 and row["server_cpu_us"] >= 0
        if name != grpc_split.BASELINE:
            assert row["ratio_to_echo"] > 0 and len(row["interval"]) == 2
    assert [s["step"] for s in result["steps"]] == [s for s, _, _ in grpc_split.STEPS]
    for step in result["steps"]:
        assert step["rounds"] == timed and step["p50_ratio"] > 0
        assert {"client_cpu_us_delta", "server_cpu_us_delta_interval"} <= set(step)
    table = capsys.readouterr().out
    assert "| ours |" in table and "| our server over the floor |" in table


def test_the_baseline_is_added_when_not_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "split.json"
    argv = ["--rounds", "1", "--block", "5", "--lead-in", "1", "--warmup", "1"]
    assert grpc_split.main([*argv, "--variants", "echo_t", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["variants"]) == ["echo", "echo_t"]
    assert [s["of"] for s in result["steps"]] == []  # echo_t's step is against echo_again


def test_an_unknown_variant_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown variants"):
        grpc_split.main(["--variants", "nope"])


async def test_the_split_server_checks_the_token_only_where_it_says() -> None:
    server, port = await grpc_split.start_split("127.0.0.1", 0)
    address = ("127.0.0.1", port)
    token = await grpc_split._signup(address, "t")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = pb.SendRequest(recipients=["r"], body="hi")
            codec = {
                "request_serializer": pb.SendRequest.SerializeToString,
                "response_deserializer": pb.SendReply.FromString,
            }
            unchecked = channel.unary_unary(grpc_split.SEND_METHOD, **codec)
            checked = channel.unary_unary(grpc_split.CHECKED_METHOD, **codec)
            assert (await unchecked(request, timeout=10)).message_id > 0
            metadata = ((grpc_split.SESSION_KEY, token),)
            assert (await checked(request, metadata=metadata, timeout=10)).message_id > 0
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await checked(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            lookup = channel.unary_unary(grpc_split.LOOKUP_METHOD)
            assert await lookup(b"abc", metadata=metadata, timeout=10) == b"abc"
            with pytest.raises(grpc.aio.AioRpcError):
                await lookup(b"abc", timeout=10)
    finally:
        await server.stop(None)
