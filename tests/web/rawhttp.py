"""A minimal HTTP/1.1 client on asyncio streams, for tests that need hundreds of connections
(or hand-made headers) without a browser: one request per connection, or an event stream
kept open and read line by line."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")

#: Seconds any single read or connect may take before the test fails (normally ms).
IO_TIMEOUT = 30.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str
    cookies: dict[str, str] = field(default_factory=dict)


def _request_bytes(
    method: str, host: str, port: int, path: str, headers: dict[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for line in header_lines:
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
        if name.strip().lower() == "set-cookie":
            jar = SimpleCookie()
            jar.load(value.strip())
            cookies.update({k: m.value for k, m in jar.items()})
    return int(status_line.split()[1]), headers, cookies


async def request(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    body: bytes = b"",
) -> Answer:
    """One request on a fresh connection; the whole answer."""
    headers = dict(headers or {})
    if form is not None:
        body = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), IO_TIMEOUT)
    try:
        writer.write(_request_bytes(method, host, port, path, headers, body))
        await writer.drain()
        status, got, cookies = await _read_head(reader)
        text = (await asyncio.wait_for(reader.read(), IO_TIMEOUT)).decode(errors="replace")
        return Answer(status, got, text, cookies)
    finally:
        writer.close()


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match[1]


class EventStream:
    """An open ``GET /events``: read it until an event of a given kind arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0

    @classmethod
    async def open(cls, host: str, port: int, cookies: dict[str, str]) -> EventStream:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), IO_TIMEOUT)
        headers = {"Cookie": cookie_header(cookies), "Accept": "text/event-stream"}
        writer.write(_request_bytes("GET", host, port, "/events", headers, b""))
        await writer.drain()
        stream = cls(reader, writer)
        stream.status, _, _ = await _read_head(reader)
        return stream

    async def until(self, event: str, timeout: float = IO_TIMEOUT) -> str:
        """The data line of the next ``event:`` of this kind (chunked framing is skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.reader.readline()).decode(errors="replace")
                if not line:
                    raise ConnectionError(f"the stream ended before an {event!r} event")
                if line.strip() == f"event: {event}":
                    while not (data := (await self.reader.readline()).decode()).startswith("data:"):
                        pass
                    return data[5:].strip()

    def close(self) -> None:
        self.writer.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own: Playwright's sync API keeps a loop running on
    the test's thread while a browser is open, and asyncio.run refuses to nest."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
