"""HTTPS for the web UI: Hypercorn's HTTP stack behind an acceptor that looks at the first byte.

Why not ``hypercorn.asyncio.serve(config.certfile=...)``. Hypercorn hands its listening socket to
``asyncio.start_server(ssl=...)``, so every connection is a TLS handshake from its first byte. A
person who types ``http://host:port`` (no "s") then sends a plain HTTP request into a TLS
handshake; OpenSSL fails it and asyncio closes the connection without a byte: the browser says
"empty response" (curl: "Empty reply from server"), which tells nobody what went wrong.

So this module accepts the connections itself and peeks (``MSG_PEEK``, nothing consumed) at the
first byte each client sends:

* ``0x16`` (a TLS handshake record): the socket is wrapped in TLS
  (``loop.connect_accepted_socket``) and handed to Hypercorn's ``TCPServer``, exactly what
  Hypercorn's own ``worker_serve`` does per connection, with ALPN offering ``h2`` and
  ``http/1.1`` (a browser multiplexes its tabs over one HTTP/2 connection);
* an ASCII letter (a plain HTTP request): the request head is read (bounded in size and time)
  and answered in clear, once, then the connection is closed: ``GET``/``HEAD`` get a
  ``301`` to the same path over ``https://``; any other method gets ``400`` with a sentence
  (its body, which may hold a password, already crossed the network in clear; re-sending it
  is not ours to do);
* anything else, or nothing within :data:`FIRST_BYTE_SECONDS`: closed.

The ``TCPServer`` class is Hypercorn's (``hypercorn.asyncio.tcp_server``, the same one
``hypercorn.asyncio.serve`` runs), so HTTP/1.1, HTTP/2, keep-alive and graceful shutdown behave
as in the plain server (ui/web/serve.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.utils import wrap_app

from transports._tls import ServerTls

log = logging.getLogger(__name__)

#: Seconds a new connection may take to send its first byte (a TLS ClientHello or a request
#: line); browsers send at once, so this only bounds connections that never speak.
FIRST_BYTE_SECONDS = 10.0
#: Seconds the TLS handshake may take once it has begun.
HANDSHAKE_SECONDS = 10.0
#: Bytes of a plain HTTP request head read before answering it (a request line and headers).
PLAIN_HEAD_BYTES = 8192
#: A TLS record of type "handshake" starts with this byte (RFC 8446, 5.1).
TLS_HANDSHAKE = 0x16
#: What a Host header may hold for us to redirect to it (a name or address and a port).
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_METHOD = re.compile(rb"^([A-Z]{3,10}) (\S+) HTTP/\d(\.\d)?\r?$")


def tls_context(tls: ServerTls, config: Config) -> ssl.SSLContext:
    """The web UI's server context: the chat server's TLS policy (transports/_tls.py: the
    files checked with a person's message, TLS 1.2 at least) plus what HTTP/2 needs (ALPN
    ``h2``, Hypercorn's AEAD cipher list for TLS 1.2, RFC 9113 9.2)."""
    ctx = tls.context()
    ctx.set_ciphers(config.ciphers)
    ctx.set_alpn_protocols(config.alpn_protocols)
    return ctx


class HttpsServer:
    """Serve ``asgi`` over HTTPS on the listening socket ``sock`` until :meth:`close`."""

    def __init__(self, asgi: Any, config: Config, sock: socket.socket, ctx: ssl.SSLContext):
        self._app = wrap_app(asgi, config.wsgi_max_body_size, "asgi")
        self._config = config
        self._sock = sock
        self._ctx = ctx
        self._context = WorkerContext(None)
        self._state: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, stopping: asyncio.Event) -> None:
        """Accept until ``stopping`` is set; then let connections finish within the graceful
        timeout and close the rest."""
        loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        accepting = asyncio.ensure_future(self._accept(loop))
        try:
            await stopping.wait()
        finally:
            accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await accepting
            self._sock.close()
            await self._context.terminated.set()  # idle keep-alive connections close now
            if self._tasks:
                _, pending = await asyncio.wait(self._tasks, timeout=self._config.graceful_timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _accept(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:  # EMFILE and the like: say so, wait, go on
                log.warning("cannot accept a connection: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.ensure_future(self._connection(loop, conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connection(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            first = await asyncio.wait_for(_peek(loop, conn), FIRST_BYTE_SECONDS)
        except (TimeoutError, OSError):
            conn.close()
            return
        if first and first[0] == TLS_HANDSHAKE:
            await self._tls(loop, conn)
        elif first and first[:1].isalpha():
            await _answer_plain_http(loop, conn)
        else:
            conn.close()

    async def _tls(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        reader = asyncio.StreamReader(limit=2**16)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self._ctx, ssl_handshake_timeout=HANDSHAKE_SECONDS
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # e.g. a browser that does not trust the certificate hangs up with an alert
            log.debug("TLS handshake failed: %s", exc)
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await TCPServer(self._app, loop, self._config, self._context, self._state, reader, writer)


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The first bytes the client sent, left in the socket's buffer."""
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        await readable
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv(8, socket.MSG_PEEK)


async def _answer_plain_http(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    """Answer a plain HTTP request sent to the HTTPS port, in clear, and close."""
    head = b""
    try:
        async with asyncio.timeout(FIRST_BYTE_SECONDS):
            while b"\r\n\r\n" not in head and b"\n\n" not in head:
                chunk = await loop.sock_recv(conn, PLAIN_HEAD_BYTES - len(head))
                if not chunk:
                    break
                head += chunk
                if len(head) >= PLAIN_HEAD_BYTES:
                    break
        port = conn.getsockname()[1]
        await loop.sock_sendall(conn, plain_http_answer(head, port))
    except (TimeoutError, OSError):
        pass
    finally:
        conn.close()


def plain_http_answer(head: bytes, port: int) -> bytes:
    """The whole response to a plain HTTP request head that reached the HTTPS port."""
    lines = head.split(b"\n")
    match = _METHOD.match(lines[0]) if lines else None
    method, target = (match.group(1), match.group(2)) if match else (b"", b"/")
    host = _header(lines[1:], b"host")
    if host is None or not _HOST.match(host):
        host = f"127.0.0.1:{port}"  # no usable Host header: the address we listen on
    path = target.decode("ascii", "replace") if target.startswith(b"/") else "/"
    url = f"https://{host}{path}"
    if method in (b"GET", b"HEAD"):
        status = "301 Moved Permanently"
        text = f"This web UI is served over HTTPS only. Go to {url}\n"
        extra = f"Location: {url}\r\n"
    else:
        status = "400 Bad Request"
        text = (
            "This web UI is served over HTTPS only, and this request was sent in clear (plain "
            f"HTTP): it was not carried out. Use https://{host}/\n"
        )
        extra = ""
    body = text.encode() if method != b"HEAD" else b""
    return (
        f"HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(text.encode())}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _header(lines: list[bytes], name: bytes) -> str | None:
    for line in lines:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


__all__ = ["FIRST_BYTE_SECONDS", "HttpsServer", "plain_http_answer", "tls_context"]
