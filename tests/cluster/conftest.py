"""Fixtures for the cluster tests (issue 11): real ``wirechat server`` nodes on one throwaway
PostgreSQL (``postgres`` in tests/conftest.py) and one throwaway nats-server per test.

These tests start several processes each, so ``make test`` leaves them out; ``make
test-cluster`` (and ``pytest tests/cluster``) runs them. A missing nats-server or PostgreSQL
fails the run under ``CI=true`` and skips (saying why) elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.conftest import Chat
from wirechat.launch import ServerProcess
from wirechat.services import NatsService, PostgresService, ServiceMissing

#: Seconds between a node's sweeps in these tests: what a lost publish waits at most.
SWEEP = 0.5
#: How long a test waits for sessions to converge after a failure (bounded, generous for a
#: loaded 2-vCPU machine: many sweep intervals).
CONVERGE = 30.0


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect these tests only when asked for by path (make test-cluster), not in a
    whole-suite run."""
    here = Path(__file__).parent.resolve()
    asked = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    if any(here == a or here in a.parents for a in asked):
        return None
    return True if here in collection_path.resolve().parents else None


@pytest.fixture
def nats() -> Iterator[NatsService]:
    service = NatsService()
    try:
        service.start()
    except ServiceMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs nats-server: {exc}")
        pytest.skip(str(exc))
    try:
        yield service
    finally:
        service.stop()


class Cluster:
    """Nodes of one cluster: ``node(name)`` starts ``wirechat server --bus``; ``chat(name)``
    opens clients on it; ``close()`` stops every node still running (by its pid)."""

    def __init__(self, postgres: PostgresService, nats: NatsService) -> None:
        self.postgres = postgres
        self.nats = nats
        self.nodes: dict[str, ServerProcess] = {}
        self.chats: list[Chat] = []

    def node(
        self, name: str, transports: tuple[str, ...] = ("custom", "websocket")
    ) -> ServerProcess:
        server = ServerProcess(
            transports,
            self.postgres.url,
            extra_args=[
                "--bus",
                self.nats.url,
                "--node-name",
                name,
                "--sweep-interval",
                str(SWEEP),
            ],
        ).start()
        self.nodes[name] = server
        return server

    def chat(self, name: str, transport: str = "custom") -> Chat:
        chat = Chat(transport, self.nodes[name].addresses[transport])
        self.chats.append(chat)
        return chat

    def log(self, name: str) -> str:
        return "\n".join(self.nodes[name].log_lines[-40:])

    async def close(self) -> None:
        for chat in self.chats:
            await chat.aclose()
        for name, server in self.nodes.items():
            server.stop()
            for line in server.log_lines:  # each node's bus counters (shown with -s)
                if "bus: closed" in line:
                    print(f"node {name}: {line.split('bus: ', 1)[1]}")


@pytest.fixture
async def cluster(postgres: PostgresService, nats: NatsService) -> Any:
    cluster = Cluster(postgres, nats)
    try:
        yield cluster
    finally:
        await cluster.close()
