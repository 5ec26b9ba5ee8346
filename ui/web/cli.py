"""``wirechat web``: the browser UI, a Flask gateway that is a chat *client* of the server.

Served by Hypercorn on the gateway's event loop (why: ui/web/serve.py). Kept light to import
(``wirechat --help`` loads it): Flask, Hypercorn and the transports load in ``run``.
On start it logs ``listening: web <host>:<port>`` (the bound port, so ``--port 0`` works)
and then ``ready: http://...`` (``https://`` with ``--tls-cert``/``--tls-key``). Served in
clear on an address other than the loopback it refuses to start unless ``--insecure``, as the
chat server does (DESIGN.md, "Security at the edge").
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

SUMMARY = "run the web UI (a Flask gateway that is a chat client of the server)"

if TYPE_CHECKING:
    from core.client import ChatClient
    from transports._tls import ServerTls
    from ui.web.loop import LoopThread

DEFAULT_PORT = 8080
SECRET_KEY_ENV = "WIRECHAT_WEB_SECRET_KEY"
#: Mirrors ui.web.gateway.Limits (not imported here: this module must stay light).
DEFAULT_SESSIONS_PER_ADDRESS = 20


def default_server(transport: str) -> str:
    """Where `make server` listens for ``transport`` (its registry entry's default port)."""
    from transports import registry

    return f"127.0.0.1:{registry.entry(transport).default_port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `wirechat web`."""
    from transports import registry
    from wirechat.cli import add_client_tls

    wire = ", ".join(registry.WIRE_TRANSPORTS)
    defaults = ", ".join(
        f"{e.default_port} for {e.name}"
        for e in registry.ENTRIES
        if e.name in registry.WIRE_TRANSPORTS
    )
    parser.add_argument(
        "--transport",
        default="custom",
        choices=registry.TRANSPORTS,
        help=f"how the gateway talks to the chat server: {wire} (default custom); "
        "'loopback' runs an in-process chat server instead, for a quick demo",
    )
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="the chat server's listener for --transport "
        f"(default 127.0.0.1 and the port `make server` uses: {defaults})",
    )
    add_client_tls(parser)  # --tls, --ca: the gateway's connection to the chat server
    parser.add_argument("--host", default="127.0.0.1", help="address to serve the web UI on")
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve the web UI over HTTPS with this certificate chain (PEM); needs --tls-key",
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow serving the web UI over plain HTTP on an address other than the loopback "
        "(without it, such a web UI refuses to start without --tls-cert)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"web port (default {DEFAULT_PORT}; 0 = any)"
    )
    parser.add_argument(
        "--max-sessions", type=int, default=100, help="signed-in browser sessions (default 100)"
    )
    parser.add_argument(
        "--max-sessions-per-address",
        type=int,
        default=DEFAULT_SESSIONS_PER_ADDRESS,
        metavar="N",
        help="signed-in browser sessions from one client address "
        f"(default {DEFAULT_SESSIONS_PER_ADDRESS}), so one visitor cannot fill the gateway",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=30 * 60.0,
        metavar="SECONDS",
        help="sign out a browser session with no open page for this long (default 1800)",
    )
    parser.add_argument(
        "--db", default=":memory:", help="with --transport loopback: the SQLite file"
    )
    parser.add_argument(
        "--hash-cost",
        default="default",
        choices=["default", "low"],
        help="with --transport loopback: argon2 cost ('low' for tests only)",
    )
    parser.add_argument("--log-level", default="INFO")


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace) -> int:
    """Serve the web UI until SIGINT/SIGTERM."""
    import logging
    import secrets
    import signal
    import sys
    import threading

    from ui.web.app import create_app
    from ui.web.gateway import Gateway, Limits
    from ui.web.loop import LoopThread
    from ui.web.serve import WebServer, asgi_app

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("wirechat.web")

    try:
        https = _https(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    loop = LoopThread().start()
    try:
        open_client, cleanup, target = _client_factory(args, loop)
    except ValueError as exc:
        loop.stop()
        log.error("%s", exc)
        return 2
    gateway = Gateway(
        open_client,
        loop,
        Limits(
            max_sessions=args.max_sessions,
            max_sessions_per_address=args.max_sessions_per_address,
            idle_timeout=args.idle_timeout,
        ),
    ).start()
    secret = os.environ.get(SECRET_KEY_ENV)
    app = create_app(
        gateway,
        secret_key=secret.encode() if secret else secrets.token_bytes(32),
        https=https is not None,
    )
    try:
        server = WebServer(asgi_app(app, gateway), args.host, args.port, loop, tls=https)
    except OSError as exc:
        log.error("cannot serve on %s:%d: %s", args.host, args.port, exc)
        gateway.close()
        cleanup()
        loop.stop()
        return 1

    def shut_down() -> None:
        gateway.close()  # every open page's stream ends first, saying why...
        server.stop()  # ...so the server's graceful stop need not wait for them

    def stop(signum: int, frame: object) -> None:
        # gateway.close() waits on the loop: not in a signal handler, which may interrupt it
        threading.Thread(target=shut_down, name="web-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.address
    server.start()
    scheme = "https" if https else "http"
    log.info("listening: web %s:%d%s", host, port, " (HTTPS)" if https else "")
    log.info("ready: %s://%s:%d/ (chat server: %s)", scheme, _url_host(host), port, target)
    try:
        server.wait()
    finally:
        log.info("stopping")
        gateway.close()  # a no-op after shut_down()
        server.stop()
        server.wait()
        cleanup()
        loop.stop()
    return 0


def _https(args: argparse.Namespace) -> ServerTls | None:
    """The web UI's certificate from ``--tls-cert``/``--tls-key`` (None: plain HTTP); a
    ValueError with a sentence when half given, unusable, or plain HTTP would be exposed."""
    from wirechat.cli import server_tls
    from wirechat.server import is_loopback

    tls = server_tls(args)  # both files or neither, and usable (the chat server's checks)
    if tls is None and not args.insecure and not is_loopback(args.host):
        where = args.host or "every address"
        raise ValueError(
            f"refusing to serve the web UI over plain HTTP on {where}: passwords, session "
            "cookies and messages would cross the network unencrypted. Give a certificate "
            "(--tls-cert FILE --tls-key FILE), serve on 127.0.0.1, or pass --insecure if "
            "this network is trusted"
        )
    return tls


def _url_host(host: str) -> str:
    """``host`` as it goes in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def _client_factory(
    args: argparse.Namespace, loop: LoopThread
) -> tuple[Callable[[], ChatClient], Callable[[], None], str]:
    """(open_client, cleanup, description) for the chosen transport."""
    from transports import registry

    module = registry.get(args.transport)  # ValueError names the known transports
    if args.transport != "loopback":
        from wirechat.cli import client_tls

        address = parse_address(args.server or default_server(args.transport))
        tls = client_tls(args)
        return (
            lambda: module.open_client(address, auto_ack=True, tls=tls),
            lambda: None,
            f"{args.transport} {address[0]}:{address[1]}" + (" over TLS" if tls else ""),
        )

    # An in-process chat server, for a demo without `wirechat server`.
    from core import ChatService, HashCost, SqliteStore

    async def make_service() -> ChatService:
        return ChatService(SqliteStore(args.db), hash_cost=HashCost(args.hash_cost))

    service = loop.run(make_service(), 10.0)

    def cleanup() -> None:
        async def shutdown() -> None:
            await service.shutdown()
            await service.store.close()

        loop.run(shutdown(), 10.0)

    return (
        lambda: module.open_client(service, auto_ack=True),
        cleanup,
        f"in-process (loopback, db {args.db})",
    )


__all__ = ["add_arguments", "parse_address", "run"]
