"""The web UI as served for real (``wirechat web``: Hypercorn) against attacks from another
origin, oversized requests and a crowd from one address. The attacker's site is another port
of this host, served by a small HTTP server in this test: the same host, another origin.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.web.helpers import GatewayProcess, Web
from tests.web.rawhttp import cookie_header, csrf_of, request, run

PASSWORD = "correct horse"
#: Signed-in sessions per address on this module's gateway (its tests use 4 in all).
CAP = 4
HOSTILE = (
    "see https://example.com/a?b=1&c=2. javascript:alert(1) "
    '<img src=x onerror=alert(1)> http://evil.test/"onclick=alert(1) data:text/html,x'
)


@pytest.fixture(scope="module")
def site() -> Iterator[GatewayProcess]:
    """One gateway with its in-process chat server; four sessions per address at most."""
    process = GatewayProcess("loopback", None, extra=["--max-sessions-per-address", str(CAP)])
    process.start()
    try:
        yield process
    finally:
        process.stop()


class _AttackerSite:
    """An HTTP server on another port of 127.0.0.1 serving one page (the attack)."""

    def __init__(self, page: str) -> None:
        body = page.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_auto_submitting_login_form_on_another_origin_is_refused(
    browser: Browser, site: GatewayProcess
) -> None:
    web = Web(browser, site)
    try:
        attacker = web.page()
        web.signup(attacker, "mallory")
        victim = web.page()
        web.signup(victim, "victim")
        # The attacker's page: their own valid token (from their own session), hidden fields
        # with their own name and password, submitted as soon as the victim opens the page.
        token = attacker.locator("body").get_attribute("data-csrf")
        forged = f"""<!doctype html><title>cute cats</title>
            <form id="f" method="post" action="{site.url}/login">
              <input name="csrf" value="{token}"><input name="username" value="mallory">
              <input name="password" value="{PASSWORD}">
            </form><script>document.getElementById("f").submit()</script>"""
        evil = _AttackerSite(forged)
        try:
            victim.goto(evil.url)
            expect(victim.locator("h1")).to_have_text("Request refused")
            expect(victim.locator(".error")).to_contain_text("another site")
        finally:
            evil.close()
        victim.goto("/chat")
        expect(victim.locator(".me")).to_have_text("victim")  # still themselves
    finally:
        web.close()


def test_links_in_messages_are_clickable_and_safe(browser: Browser, site: GatewayProcess) -> None:
    web = Web(browser, site)
    try:
        ann_page, ben_page = web.page(), web.page()
        web.signup(ann_page, "ann")
        web.signup(ben_page, "ben")
        web.open_chat(ben_page, "ann")
        expect(ben_page.locator("#reply-hint")).to_have_text(
            "Enter sends · Shift+Enter adds a line"
        )
        web.send(ann_page, "ben", HOSTILE)
        for how in ("live", "reloaded"):  # drawn by chat.js, then by the server's template
            if how == "reloaded":
                ben_page.reload()
            body = ben_page.locator("#messages .msg .body").last
            expect(body).to_have_text(HOSTILE)
            links = body.locator("a")
            expect(links).to_have_count(2)
            hrefs = [links.nth(i).get_attribute("href") for i in range(2)]
            assert hrefs == ["https://example.com/a?b=1&c=2", "http://evil.test/"], (how, hrefs)
            for i in range(2):
                assert links.nth(i).get_attribute("rel") == "noopener noreferrer nofollow"
                assert links.nth(i).get_attribute("onclick") is None
            expect(body.locator("img")).to_have_count(0)
    finally:
        web.close()


def test_the_real_server_answers_with_its_own_pages(site: GatewayProcess) -> None:
    host, port = site.addresses["web"]

    async def scenario() -> None:
        login = await request(host, port, "GET", "/login")
        assert login.status == 200
        assert "werkzeug" not in str(login.headers).lower()  # no development server
        missing = await request(host, port, "GET", "/no/such/page")
        assert missing.status == 404 and "There is no such page here" in missing.body
        # A raw POST with a valid cookie and token but a foreign Origin header.
        form = {"csrf": csrf_of(login.body), "username": "x", "password": "y"}
        headers = {"Cookie": cookie_header(login.cookies), "Origin": "http://127.0.0.1:1"}
        refused = await request(host, port, "POST", "/login", headers=headers, form=form)
        assert refused.status == 400 and "another site" in refused.body
        # 2 MB in one POST: the friendly page arrives while the body is still being sent.
        assert "Too large" in await _huge_post(host, port)

    run(scenario())


async def _huge_post(host: str, port: int) -> str:
    """POST a 2 MB body and read the answer while it is being sent, as a browser does. The
    server answers 413 and closes before reading the body, so the sending may end in a reset:
    the answer is read on its own, not through the writer that sees the reset."""
    loop = asyncio.get_running_loop()
    sock = socket.create_connection((host, port), timeout=10.0)
    sock.setblocking(False)
    body = b"body=" + b"x" * (2 * 2**20)
    head = (
        f"POST /send HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    )

    async def send_body() -> None:
        try:
            await loop.sock_sendall(sock, head.encode())
            for start in range(0, len(body), 2**16):
                await loop.sock_sendall(sock, body[start : start + 2**16])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the body was all sent

    sending = asyncio.ensure_future(send_body())
    answer = bytearray()
    try:
        async with asyncio.timeout(30.0):
            while b"</html>" not in answer:
                try:
                    chunk = await loop.sock_recv(sock, 65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                answer += chunk
    finally:
        sending.cancel()
        sock.close()
    text = answer.decode(errors="replace")
    assert text.startswith("HTTP/1.1 413") and "</html>" in text, text[:200]
    return text


def test_one_address_cannot_fill_the_gateway_and_is_told_why(site: GatewayProcess) -> None:
    host, port = site.addresses["web"]

    async def sign_up(name: str) -> tuple[int, str]:
        page = await request(host, port, "GET", "/signup")
        form = {"csrf": csrf_of(page.body), "username": name}
        form |= {"password": PASSWORD, "password2": PASSWORD}
        headers = {"Cookie": cookie_header(page.cookies)}
        answer = await request(host, port, "POST", "/signup", headers=headers, form=form)
        return answer.status, answer.body

    async def scenario() -> None:
        # The browser tests above may hold sessions from this address: go past the cap.
        results = [await sign_up(f"crowd{i}") for i in range(CAP + 1)]
        statuses = [status for status, _ in results]
        assert 503 in statuses, statuses
        body = results[statuses.index(503)][1]
        assert "its limit per address" in body and "Log out of one" in body

    run(scenario())
