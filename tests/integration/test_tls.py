"""TLS on every wire transport (issue 13, item 1), tried as a user would: a server started with
``--tls-cert``/``--tls-key`` (a throwaway CA from ``trustme``), clients with the CA; a client
speaking the other way (plain at a TLS port, TLS at a plain port, the wrong CA) is told what is
wrong in a sentence; a server bound beyond the loopback refuses to start in clear without
``--insecure``. The whole conformance suite over TLS is ``make test-tls``."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.conftest import Chat
from tests.conformance.helpers import receive_bodies
from tests.conftest import TlsFiles, make_tls_files
from transports import registry
from transports._tls import ClientTls, ServerTls, TlsSetupError
from transports._wrong_port import WrongPort
from wirechat.cli import build_parser, client_tls
from wirechat.launch import ServerProcess
from wirechat.server import InsecureBind, ServerConfig, check_exposure, is_loopback

WIRE = registry.WIRE_TRANSPORTS
JARGON = ("SSL", "Errno", "ProtocolError", "MALFORMED", "UNAVAILABLE", "EOF")


@pytest.fixture(scope="module")
def tls_server(
    tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """``wirechat server --tls-cert --tls-key`` serving every wire transport."""
    db = Path(tmp_path_factory.mktemp("tls-server")) / "chat.db"
    server = ServerProcess(WIRE, db, tls=tls_files.server).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The same, in clear (whatever switch the session's ``wire_server`` runs under)."""
    db = Path(tmp_path_factory.mktemp("plain-server")) / "chat.db"
    server = ServerProcess(WIRE, db).start()
    try:
        yield server
    finally:
        server.stop()


async def _connect(transport: str, address: tuple[str, int], tls: ClientTls | None) -> None:
    client = registry.get(transport).open_client(address, tls=tls)
    try:
        async with asyncio.timeout(20):
            await client.connect()
            await client.login("nobody", "no password")  # gRPC (unary) learns at the first call
    finally:
        await client.close()


def _wirechat_server(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``wirechat server ARGS`` to its end (each use here ends before serving)."""
    command = [sys.executable, "-m", "wirechat", "server", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _plain_words(message: str) -> None:
    for jargon in JARGON:
        assert jargon not in message, message


@pytest.mark.parametrize("transport", WIRE)
async def test_every_transport_chats_over_tls(transport, tls_server, tls_files, names):
    chat = Chat(transport, tls_server.addresses[transport], tls_files)
    try:
        alice = await chat.user(names("alice"))
        bob = await chat.user(names("bob"))
        await alice.send([names("bob")], "over TLS")
        assert await receive_bodies(bob) == ["over TLS"]
        await bob.send([names("alice")], "and back")
        assert await receive_bodies(alice) == ["and back"]
    finally:
        await chat.aclose()


async def test_users_on_different_transports_chat_over_tls(tls_server, tls_files, names):
    here = Chat("custom", tls_server.addresses["custom"], tls_files)
    there = Chat("grpc", tls_server.addresses["grpc"], tls_files)
    try:
        alice = await here.user(names("alice"))
        bob = await there.user(names("bob"))
        await alice.send([names("bob")], "custom to grpc, both over TLS")
        assert await receive_bodies(bob) == ["custom to grpc, both over TLS"]
    finally:
        await here.aclose()
        await there.aclose()


@pytest.mark.parametrize("transport", WIRE)
async def test_a_plain_client_at_a_tls_port_is_told_to_use_tls(transport, tls_server):
    address = tls_server.addresses[transport]
    with pytest.raises(WrongPort) as caught:
        await _connect(transport, address, None)
    message = str(caught.value)
    assert "that port speaks TLS; use --tls" in message, message
    assert "--ca" in message and f"{address[0]}:{address[1]}" in message, message
    _plain_words(message)


@pytest.mark.parametrize("transport", WIRE)
async def test_a_tls_client_at_a_plain_port_is_told_it_is_plain(transport, plain_server, tls_files):
    address = plain_server.addresses[transport]
    with pytest.raises(WrongPort) as caught:
        await _connect(transport, address, tls_files.client)
    message = str(caught.value)
    assert "that port does not speak TLS" in message, message
    assert "drop --tls" in message and f"{address[0]}:{address[1]}" in message, message
    _plain_words(message)


@pytest.mark.parametrize("transport", WIRE)
async def test_a_client_with_the_wrong_ca_is_refused_clearly(transport, tls_server, tmp_path):
    stranger = make_tls_files(tmp_path)  # another CA, that never signed the server's cert
    with pytest.raises(WrongPort) as caught:
        await _connect(transport, tls_server.addresses[transport], stranger.client)
    message = str(caught.value)
    assert "certificate is not trusted" in message and "--ca FILE" in message, message


def test_a_server_beyond_the_loopback_refuses_to_start_in_clear(tmp_path):
    """Nothing is bound: the refusal comes before any listener."""
    done = _wirechat_server(
        "--host", "0.0.0.0", "--listen", "custom=0", "--db", str(tmp_path / "chat.db")
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to serve in clear on 0.0.0.0" in done.stderr
    assert "--tls-cert FILE --tls-key FILE" in done.stderr and "--insecure" in done.stderr
    assert not (tmp_path / "chat.db").exists()  # it stopped before opening anything


@pytest.mark.parametrize("how", ["--insecure", "tls"])
def test_insecure_or_a_certificate_lets_it_past_the_refusal(how, tmp_path, tls_files):
    """Past the refusal, without exposing a listener: the port it asks for is held (bound, not
    listening) by this test, so the server gets as far as binding and fails there."""
    extra = ["--insecure"]
    if how == "tls":
        extra = ["--tls-cert", tls_files.server.cert_file, "--tls-key", tls_files.server.key_file]
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        port = held.getsockname()[1]
        db = str(tmp_path / "chat.db")
        done = _wirechat_server(
            "--host", "0.0.0.0", "--listen", f"custom={port}", "--db", db, *extra
        )
    assert "refusing" not in done.stderr, done.stderr
    assert done.returncode == 1 and "cannot start" in done.stderr, done.stderr


def test_which_addresses_count_as_the_loopback():
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "192.168.1.20", "chat.example.org", "10.0.0.1"):
        assert not is_loopback(host), host
    with pytest.raises(InsecureBind):
        check_exposure(ServerConfig(host="::"))
    check_exposure(ServerConfig(host="::", insecure=True))
    check_exposure(ServerConfig(host="::", tls=ServerTls("cert.pem", "key.pem")))


def test_a_missing_certificate_is_named_before_anything_starts(tmp_path):
    done = _wirechat_server(
        "--listen",
        "custom=0",
        "--db",
        str(tmp_path / "chat.db"),
        "--tls-cert",
        str(tmp_path / "nope.pem"),
        "--tls-key",
        str(tmp_path / "nope.key"),
    )
    assert done.returncode == 2, done.stderr
    assert "cannot use the certificate" in done.stderr and "nope.pem" in done.stderr
    with pytest.raises(TlsSetupError, match="as a CA certificate"):
        ClientTls(str(tmp_path / "nope.pem")).context()


def test_client_flags():
    parser = build_parser()
    assert client_tls(parser.parse_args(["client"])) is None
    assert client_tls(parser.parse_args(["client", "--tls"])) == ClientTls()
    assert client_tls(parser.parse_args(["client", "--ca", "ca.pem"])) == ClientTls("ca.pem")
    web = parser.parse_args(["web", "--tls", "--ca", "ca.pem"])
    assert client_tls(web) == ClientTls("ca.pem")
    half = parser.parse_args(["server", "--listen", "custom=0", "--tls-cert", "c.pem"])
    from wirechat.cli import server_tls

    with pytest.raises(ValueError, match="both --tls-cert FILE and --tls-key FILE"):
        server_tls(half)


async def test_the_console_signs_up_over_tls_and_a_plain_one_is_told_to_use_tls(
    tls_server, tls_files, names, capsys
):
    """``wirechat client --tls --ca FILE`` (``run_console(..., tls=)``), keys typed ahead."""
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from ui.console_main import run_console

    host, port = tls_server.addresses["custom"]
    name, password = names("carol"), "pw-12345678"
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        pipe.send_text(f"s\r{name}\r{password}\r{password}\r/quit\r")
        async with asyncio.timeout(30):
            code = await run_console("custom", host, port, tls=tls_files.client)
    assert code == 0
    chat = Chat("custom", (host, port), tls_files)
    try:
        await chat.login(name, password)  # the account exists (AuthFailed otherwise)
    finally:
        await chat.aclose()

    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        async with asyncio.timeout(30):
            code = await run_console("custom", host, port)
    assert code == 1
    assert "that port speaks TLS; use --tls" in capsys.readouterr().err


async def test_the_web_gateway_reaches_the_server_over_tls(tls_server, tls_files, names):
    """``wirechat web --tls --ca FILE``: the gateway's clients speak TLS to the chat server."""
    from ui.web.cli import _client_factory

    for transport in ("custom", "grpc"):
        host, port = tls_server.addresses[transport]
        server, ca = f"{host}:{port}", tls_files.ca_file
        argv = ["web", "--transport", transport, "--server", server, "--tls", "--ca", ca]
        args = build_parser().parse_args(argv)
        open_client, _, description = _client_factory(args, None)  # type: ignore[arg-type]
        assert description.endswith("over TLS")
        client = open_client()
        await client.connect()
        try:
            assert (await client.signup(names(f"web_{transport}"), "pw-12345678")).pending == 0
        finally:
            await client.close()


async def test_tls_12_is_the_floor_and_13_is_what_is_spoken(tls_server, tls_files):
    assert tls_files.server.context().minimum_version is ssl.TLSVersion.TLSv1_2
    assert tls_files.client.context().minimum_version is ssl.TLSVersion.TLSv1_2
    host, port = tls_server.addresses["custom"]
    _, writer = await asyncio.open_connection(
        host, port, ssl=tls_files.client.context(), server_hostname=host
    )
    try:
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
    finally:
        writer.close()
