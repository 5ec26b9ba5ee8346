"""Fixtures shared by every test folder.

``wire_server``: one real ``wirechat server`` child process for the whole run, serving every wire
transport in the registry on free ports (argon2 at test cost). Tests keep out of each other's way
by using fresh usernames (the ``names`` fixture).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from transports import registry
from wirechat.launch import ServerProcess


class Names:
    """Fresh usernames per test: ``names("alice") -> "alice_3f9a1c"``."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)

    def __call__(self, base: str) -> str:
        return f"{base}_{self.tag}"


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture(scope="session")
def wire_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = Path(tmp_path_factory.mktemp("server")) / "chat.db"
    server = ServerProcess(registry.WIRE_TRANSPORTS, db).start()
    try:
        yield server
    finally:
        server.stop()
