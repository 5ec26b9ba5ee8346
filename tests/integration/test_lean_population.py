"""The population scene's lean sessions of the varint-framed transports (custom, protobuf-tcp;
bench/refs/lean_population.py) against a real server: they sign up, send and list, read every
push once and ack it (the server then holds nothing undelivered for them), a refused request
fails its caller alone, and the population scene runs on them end to end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

from bench import population
from bench.endpoints import PASSWORD, chat_target
from bench.load import CLIENT, FRAMES, WS
from bench.population import PopulationPlan
from bench.population_members import engine_for, log_in
from bench.refs.lean_load import framed_codec
from bench.refs.lean_population import LeanSession, log_in_frames
from wirechat.launch import ServerProcess

pytestmark = pytest.mark.timeout(90)
WAIT = 5.0
FRAMED = ["custom", "protobuf-tcp"]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess(FRAMED, ":memory:").start()
    try:
        yield proc
    finally:
        proc.stop()


class _Seen(list[str]):
    """The bodies read, and an event set once ``want`` of them came."""

    def __init__(self, want: int) -> None:
        super().__init__()
        self.want, self.enough = want, asyncio.Event()

    def __call__(self, body: str) -> None:
        self.append(body)
        if len(self) >= self.want:
            self.enough.set()


def _names(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"lp{tag}{i}" for i in range(n)]


async def _log_in(
    server: ServerProcess, transport: str, n: int, want: int
) -> tuple[list[str], _Seen, list[LeanSession], Callable[[], Awaitable[None]]]:
    """``n`` fresh names logged in on ``transport``; what they read goes to one ``_Seen``."""
    codec = framed_codec(transport)
    assert codec is not None
    names, seen = _names(n), _Seen(want)
    sessions, aclose = await log_in_frames(
        server.addresses[transport], codec, names, PASSWORD, seen, batch=8
    )
    return names, seen, sessions, aclose


@pytest.mark.parametrize("transport", FRAMED)
async def test_sessions_send_read_each_push_once_and_ack_it(
    server: ServerProcess, transport: str
) -> None:
    names, seen, sessions, aclose = await _log_in(server, transport, 20, want=3)
    try:
        assert len(sessions) == 20
        sent = await sessions[0].send(tuple(names[1:4]), "hello three")
        assert sent.message_id > 0 and sent.unknown_recipients == ()
        await asyncio.wait_for(seen.enough.wait(), WAIT)
        await asyncio.sleep(0.2)  # (a push read twice would show by now)
        assert seen == ["hello three"] * 3
        page = await sessions[5].list_accounts(names[0][:8] + "*", 10)
        assert names[0] in page.usernames
    finally:
        await aclose()
    assert all(s.lost for s in sessions)  # every connection closed
    # the acks took effect: a recipient logging in again has nothing waiting
    address = server.addresses[transport]
    target = chat_target({"transport": transport, "address": address, "server_pid": server.pid})
    try:
        client = await target.client()
        assert (await client.login(names[2], PASSWORD)).pending == 0
    finally:
        await target.aclose()


@pytest.mark.parametrize("transport", FRAMED)
async def test_a_refused_send_fails_its_caller_and_the_session_goes_on(
    server: ServerProcess, transport: str
) -> None:
    names, seen, sessions, aclose = await _log_in(server, transport, 2, want=1)
    try:
        with pytest.raises(RuntimeError, match="refused"):
            await sessions[0].send((names[1],), "x" * 70_000)  # over the body limit
        sent = await sessions[0].send((names[1],), "after the refusal")
        assert sent.message_id > 0
        await asyncio.wait_for(seen.enough.wait(), WAIT)
        assert seen == ["after the refusal"]
    finally:
        await aclose()


def test_each_transport_runs_on_the_sessions_it_has(server: ServerProcess) -> None:
    for transport in FRAMED:
        target = {"kind": "chat", "transport": transport, "address": server.addresses[transport]}
        assert engine_for(target) == FRAMES
    websocket = {"kind": "chat", "transport": "websocket", "address": ("127.0.0.1", 1)}
    assert engine_for(websocket) == WS
    assert engine_for({"kind": "chat", "transport": "grpc", "address": ("127.0.0.1", 1)}) == CLIENT
    assert engine_for({"kind": "chat", "transport": "loopback", "db": ":memory:"}) == CLIENT


async def test_the_scene_runs_on_lean_sessions_and_names_its_generator(
    server: ServerProcess,
) -> None:
    plan = PopulationPlan(sessions=30, rates=(100.0,), step_s=0.4, transports=None, drain_s=5.0)
    job = {
        "target": {
            "kind": "chat",
            "transport": "custom",
            "address": server.addresses["custom"],
            "server_pid": server.pid,
        },
        "plan": {**plan.__dict__},
        "prefix": f"lps{uuid.uuid4().hex[:5]}",
        "seed": 5,
    }
    (row,) = await population.run_population(job)
    assert row["generator"] == FRAMES
    assert row["errors"] == 0 and row["pushes_missing"] == 0
    assert row["pushes"] == row["pushes_expected"] > 0
    assert not row["in_process"]


async def test_log_in_closes_what_it_opened_when_a_signup_is_refused(
    server: ServerProcess,
) -> None:
    names = _names(3)
    target = {"kind": "chat", "transport": "custom", "address": server.addresses["custom"]}
    first = await log_in(target, names[:1], PASSWORD, lambda body: None)
    await first.aclose()
    with pytest.raises(RuntimeError, match="refused"):  # names[0] is taken now
        await log_in(target, [names[1], names[0], names[2]], PASSWORD, lambda body: None)
