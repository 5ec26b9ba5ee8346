"""tcp_floor: blocking sockets, a 4-byte length prefix, one thread per connection.

The cheapest round trip Python can do: recv_into a preallocated buffer, sendall back. With one
connection there is no event loop and no thread switch, only the two system calls per side.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from bench.refs import HEADER_BYTES, MAX_PAYLOAD


def recv_exact(sock: socket.socket, view: memoryview) -> bool:
    """Fill ``view`` from the socket; False if the peer closed first."""
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


def _serve_connection(conn: socket.socket) -> None:
    buf = bytearray(HEADER_BYTES + MAX_PAYLOAD)
    view = memoryview(buf)
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while recv_exact(conn, view[:HEADER_BYTES]):
            size = int.from_bytes(view[:HEADER_BYTES], "big")
            if size > MAX_PAYLOAD or not recv_exact(conn, view[HEADER_BYTES : HEADER_BYTES + size]):
                return
            conn.sendall(view[: HEADER_BYTES + size])


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def serve_forever(sock: socket.socket) -> None:
    """Accept until the listening socket is closed (the process is ended by a signal)."""
    with contextlib.suppress(OSError):
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=_serve_connection, args=(conn,), daemon=True).start()
