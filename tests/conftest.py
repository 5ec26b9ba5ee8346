"""Fixtures shared by every test folder.

``wire_server``: one real ``wirechat server`` child process for the whole run, serving every wire
transport in the registry on free ports (argon2 at test cost). Tests keep out of each other's way
by using fresh usernames (the ``names`` fixture). With ``WIRECHAT_TEST_STORE=postgres`` it runs
on a PostgreSQL database (``make test-postgres``) instead of a SQLite file. With
``WIRECHAT_TEST_TLS=1`` every listener speaks TLS (``make test-tls``) and the conformance
suite's clients trust the throwaway CA; the two switches are independent.

``tls_files``: a throwaway CA and a certificate for 127.0.0.1/localhost (``trustme``), as the
``ServerTls``/``ClientTls`` pair. ``test_tls``: that pair under ``WIRECHAT_TEST_TLS=1``, else None.

``postgres``: one throwaway PostgreSQL cluster for the whole run (``wirechat.services``), started
on first use. Missing PostgreSQL fails the run under ``CI=true`` and skips (saying why) elsewhere.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from transports import registry
from transports._guard import Guard, ServerLimits
from transports._tls import ClientTls, ServerTls
from wirechat.launch import ServerProcess
from wirechat.services import PostgresService, ServiceMissing


class Names:
    """Fresh usernames per test: ``names("alice") -> "alice_3f9a1c07"``.

    Suites against PostgreSQL share one database for the whole session, so a tag
    must never repeat: 32 random bits, and never one this process has handed out
    (24 bits once collided in CI: ~1,350 names made a repeat ~5 % likely).
    """

    _issued: set[str] = set()

    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        while tag in Names._issued:
            tag = secrets.token_hex(4)
        Names._issued.add(tag)
        self.tag = tag

    def __call__(self, base: str) -> str:
        return f"{base}_{self.tag}"


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresService]:
    service = PostgresService(durable=False)  # tests kill wirechat, never PostgreSQL
    try:
        service.start()
    except ServiceMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL: {exc}")
        pytest.skip(str(exc))
    try:
        yield service
    finally:
        service.stop()


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate and key, and the CA a client trusts to check it."""

    server: ServerTls
    client: ClientTls
    ca_file: str


def make_tls_files(directory: Path) -> TlsFiles:
    """A fresh CA (``trustme``) and a certificate it signed for 127.0.0.1 and localhost."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:  # (trustme signs leaves directly; none today)
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return TlsFiles(ServerTls(str(cert_file), str(key_file)), ClientTls(str(ca_file)), str(ca_file))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def test_tls(request: pytest.FixtureRequest) -> TlsFiles | None:
    """The TLS pair when the suite runs over TLS (``WIRECHAT_TEST_TLS=1``), else None."""
    if os.environ.get("WIRECHAT_TEST_TLS") != "1":
        return None
    return request.getfixturevalue("tls_files")


#: Seconds the shared server's loop may run late before it sheds work (the default is 0.2).
SUITE_SHED_LAG = 2.0


def suite_guard(**limits: Any) -> Guard:
    """The process-wide bounds for a server a test starts in its own process that does not
    test shedding (tests/hardening does, on servers of their own): the default limits (or
    ``limits`` over them) but SUITE_SHED_LAG. With the default 0.2 s, one stall of this
    shared 2-vCPU machine sheds the test's request: a grpc-stream test's sign-up was refused
    "overloaded (requests wait 266 ms)" in a CI run of stop 33."""
    return Guard(ServerLimits(**{"shed_lag": SUITE_SHED_LAG, **limits}))


@pytest.fixture(scope="session")
def wire_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    db: str | Path = Path(tmp_path_factory.mktemp("server")) / "chat.db"
    if os.environ.get("WIRECHAT_TEST_STORE") == "postgres":
        db = request.getfixturevalue("postgres").url
    tls: TlsFiles | None = request.getfixturevalue("test_tls")
    # Shedding is tested on servers of its own (tests/hardening): this one serves the whole
    # suite, with a browser and gateways beside it on two CPUs, where its loop has run 0.25-0.5 s
    # late for a moment and a web test's sign-up was refused as overloaded through every retry.
    server = ServerProcess(
        registry.WIRE_TRANSPORTS,
        db,
        tls=tls.server if tls else None,
        extra_args=["--shed-lag", str(SUITE_SHED_LAG)],
    ).start()
    try:
        yield server
    finally:
        server.stop()
