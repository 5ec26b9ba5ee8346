"""The production web server holds many open pages cheaply: 500 signed-in browser sessions,
each with its page's event stream open at once, served by one gateway process with a bounded
number of threads; pages still load and messages still arrive while they are all open.

Raw HTTP connections stand in for 500 browsers (tests/web/rawhttp.py). The gateway runs its
in-process chat server with cheap password hashing (``--hash-cost low``), so the test measures
the web server, not argon2. The figures (RSS, threads, connections) are printed: run with
``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import psutil  # type: ignore[import-untyped]
import pytest

from tests.web.helpers import GatewayProcess
from tests.web.rawhttp import EventStream, cookie_header, csrf_of, request

PAGES = 500
#: Sign-ups in flight at once (each one is two requests).
PARALLEL = 25
PASSWORD = "correct horse"
#: Threads the gateway may use whatever the number of open pages: the page pool
#: (ui.web.serve.PAGE_THREADS), the loop, Python's and SQLite's own.
MAX_THREADS = 64

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crowded_gateway() -> Iterator[GatewayProcess]:
    bounds = ["--max-sessions", str(PAGES + 10), "--max-sessions-per-address", str(PAGES + 10)]
    process = GatewayProcess("loopback", None, extra=bounds).start()
    try:
        yield process
    finally:
        process.stop()


async def _sign_up(host: str, port: int, name: str) -> dict[str, str]:
    """A browser's sign-up: the form (a pre-session cookie and its token), then the POST."""
    form_page = await request(host, port, "GET", "/signup")
    form = {"csrf": csrf_of(form_page.body), "username": name}
    form |= {"password": PASSWORD, "password2": PASSWORD}
    headers = {"Cookie": cookie_header(form_page.cookies), "Origin": f"http://{host}:{port}"}
    answer = await request(host, port, "POST", "/signup", headers=headers, form=form)
    assert answer.status == 302 and answer.headers["location"] == "/chat", answer.body[:300]
    return answer.cookies


async def _crowd(host: str, port: int, pid: int) -> dict[str, float]:
    names = [f"p{i:03d}" for i in range(PAGES)]
    gate = asyncio.Semaphore(PARALLEL)

    async def sign_up(name: str) -> dict[str, str]:
        async with gate:
            return await _sign_up(host, port, name)

    cookies = await asyncio.gather(*(sign_up(name) for name in names))
    gateway = psutil.Process(pid)
    rss_signed_in = gateway.memory_info().rss / 2**20
    streams: list[EventStream] = []
    try:
        for jar in cookies:  # every page opens its stream and gets its conversation list
            stream = await EventStream.open(host, port, jar)
            assert stream.status == 200
            streams.append(stream)
        await asyncio.gather(*(s.until("conversations") for s in streams))

        figures = {
            "open_pages": len(streams),
            "rss_mib_signed_in_no_pages": rss_signed_in,
            "rss_mib": gateway.memory_info().rss / 2**20,
            "threads": gateway.num_threads(),
            "tcp_connections": len(gateway.net_connections(kind="tcp")),
        }
        # A page still loads, and a message reaches the one open page it is for.
        login = await request(host, port, "GET", "/login")
        assert login.status == 200 and "Log in" in login.body
        first = {"Cookie": cookie_header(cookies[0])}
        chat = await request(host, port, "GET", "/chat", headers=first)
        form = {"csrf": csrf_of(chat.body), "to": names[-1], "body": "hello, last page"}
        sent = await request(
            host,
            port,
            "POST",
            "/send",
            headers={"Cookie": cookie_header(cookies[0]), "Accept": "application/json"},
            form=form,
        )
        assert json.loads(sent.body)["ok"] is True, sent.body
        message = json.loads(await streams[-1].until("message"))
        assert message["body"] == "hello, last page" and message["who"] == names[0]
        return figures
    finally:
        for stream in streams:
            stream.close()


def test_five_hundred_open_pages_on_one_gateway(crowded_gateway: GatewayProcess) -> None:
    host, port = crowded_gateway.addresses["web"]
    figures = asyncio.run(_crowd(host, port, crowded_gateway.pid))
    print(f"\n{PAGES} open pages on one web gateway: {figures}")
    assert figures["open_pages"] == PAGES
    # Not a thread per open page: the streams are coroutines on the gateway's loop.
    assert figures["threads"] <= MAX_THREADS, figures
    assert figures["tcp_connections"] >= PAGES
