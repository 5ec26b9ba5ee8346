"""Serving the web UI: Hypercorn (ASGI) on the gateway's own event loop.

Why this server. Werkzeug's development server gave every open page's event stream an OS
thread for as long as the tab was open; a few hundred tabs meant a few hundred threads and
their stacks. The chat clients already live on one asyncio loop (:mod:`ui.web.loop`), so the
streams belong there too, as coroutines: that needs an asyncio HTTP server that can run on a
loop we own.

* **Hypercorn** (a Pallets-adjacent, actively maintained ASGI server by the author of Quart)
  runs as a task on an existing loop (``hypercorn.asyncio.serve``), speaks HTTP/1.1 and, once
  the web UI is served over TLS, HTTP/2: then a browser multiplexes all its tabs over one
  connection and the six-connections-per-host cap behind ``Limits.max_streams`` goes away.
  Uvicorn was the other candidate (faster on a micro-benchmark, HTTP/1.1 only); the cost of
  this UI is the chat round trips, not the HTTP parser, and HTTP/2 decides it.
* **Pages stay Flask** (WSGI, synchronous, with its sessions, templates and tests) and run in
  a bounded pool of :data:`PAGE_THREADS` threads through ``a2wsgi`` (which streams request
  bodies rather than buffering them, so Flask's MAX_CONTENT_LENGTH still answers a huge POST
  with the 413 page before the body is read).
* **/events is native ASGI** (:mod:`ui.web.events`): a coroutine per open page, woken by the
  session's feed. Measured by tests/web/test_many_pages.py (500 signed-in sessions, each with
  its page's stream open): 33 threads in the gateway process whatever the number of pages, and
  about 23 KiB of RSS per open stream (77 MiB in all); Werkzeug held 508 threads for the same.

The listening socket is bound here (before the loop starts) so ``--port 0`` can report the port
it got, and handed to Hypercorn by file descriptor. Over HTTPS (``tls``) the connections are
accepted by ui/web/https.py instead, which answers a plain ``http://`` request on the HTTPS port
with a redirect rather than a dropped connection, and runs Hypercorn's HTTP stack on the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from collections.abc import MutableMapping
from typing import Any

from a2wsgi import WSGIMiddleware
from flask import Flask
from hypercorn.asyncio import serve
from hypercorn.config import Config

from transports._tls import ServerTls
from ui.web.events import EventStreams, Receive, Scope, Send
from ui.web.gateway import Gateway
from ui.web.loop import LoopThread

log = logging.getLogger(__name__)

#: Threads that run Flask's page requests (not the event streams). A login holds one while
#: the server hashes the password (up to the gateway's login timeout), so keep some spare.
PAGE_THREADS = 32
#: Pending connections the kernel queues before accept: a burst of page loads (a reconnect
#: wave after a gateway restart) fits.
BACKLOG = 1024
#: Seconds an idle keep-alive connection stays open between requests.
KEEP_ALIVE_SECONDS = 30.0
#: Seconds a shutdown waits for requests in flight (event streams end first, with a reason).
GRACEFUL_SECONDS = 5.0


def asgi_app(app: Flask, gateway: Gateway) -> Any:
    """The whole web UI as one ASGI app: ``/events`` natively, everything else Flask."""
    pages = WSGIMiddleware(app, workers=PAGE_THREADS)  # type: ignore[arg-type]
    events = EventStreams(app, gateway)

    async def web(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"] == "/events":
            await events(scope, receive, send)
        elif scope["type"] == "http":
            await pages(scope, receive, send)  # type: ignore[arg-type]
        # websocket scopes: none served; Hypercorn refuses the upgrade

    return web


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: MutableMapping[str, Any] = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class WebServer:
    """Hypercorn serving ``asgi`` on ``loop``: :meth:`start`, :meth:`wait`, :meth:`stop`;
    over HTTPS with ``tls`` (its files already checked: ``ServerTls.context()``)."""

    def __init__(
        self, asgi: Any, host: str, port: int, loop: LoopThread, *, tls: ServerTls | None = None
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self._fd = sock.detach()  # Hypercorn owns the socket from here on
        self._asgi = asgi
        self._loop = loop
        self.tls = tls
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False
        self._done: concurrent.futures.Future[None] | None = None

    def start(self) -> WebServer:
        self._done = self._loop.submit(self._serve())
        return self

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        if self._stop_requested:
            self._stopping.set()
        config = Config()
        config.bind = [f"fd://{self._fd}"]
        config.backlog = BACKLOG
        config.keep_alive_timeout = KEEP_ALIVE_SECONDS
        config.graceful_timeout = GRACEFUL_SECONDS
        config.accesslog = None  # no line per request (as before)
        config.errorlog = logging.getLogger("hypercorn.error")
        config.include_server_header = False  # say nothing about the software
        if self.tls is not None:
            from ui.web.https import HttpsServer, tls_context

            sock = socket.socket(fileno=self._fd)
            https = HttpsServer(self._asgi, config, sock, tls_context(self.tls, config))
            await https.serve(self._stopping)
            return
        await serve(self._asgi, config, shutdown_trigger=self._stopping.wait, mode="asgi")

    def wait(self, poll: float = 0.5) -> None:
        """Block until the server has stopped (polling, so signal handlers run meanwhile)."""
        assert self._done is not None, "start() first"
        while True:
            try:
                self._done.result(poll)
                return
            except TimeoutError:
                continue

    def stop(self) -> None:
        """Ask the server to stop (safe from any thread, also a signal handler)."""
        self._stop_requested = True
        stopping = self._stopping
        if stopping is not None:
            self._loop.loop.call_soon_threadsafe(stopping.set)


__all__ = ["PAGE_THREADS", "WebServer", "asgi_app"]
