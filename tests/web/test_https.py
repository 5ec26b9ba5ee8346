"""The web UI over HTTPS, as a deployment runs it: a certificate made on the spot (``trustme``),
a Chromium that trusts its CA, the gateway's own connection to the chat server over TLS too.

Chromium trusts the throwaway CA for real (no ``ignore_https_errors``): it runs with a HOME of
its own whose NSS database (``~/.pki/nssdb``, where Chromium on Linux reads locally added
roots) holds the CA, added with NSS's ``certutil`` (Debian's libnss3-tools, installed by
``make browser``). A second Chromium without the CA must refuse the same page, which shows the
trust is the CA's and not a bypass.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, Error, Page, Playwright, expect, sync_playwright

from tests.conftest import TlsFiles
from tests.web.helpers import CHROMIUM, CHROMIUM_ARGS, GatewayProcess, Web
from ui.web.app import COOKIE_NAME, HSTS, SECURE_COOKIE_NAME, create_app
from ui.web.https import plain_http_answer
from wirechat.launch import ChildProcess, ServerProcess

if TYPE_CHECKING:
    from tests.web.conftest import LocalGateway

CERTUTIL = shutil.which("certutil") or "/usr/bin/certutil"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # One per module: Playwright's sync API runs one at a time on a thread.
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium)")
    with sync_playwright() as instance:
        yield instance


def _launch(playwright: Playwright, home: Path) -> Browser:
    """Chromium with ``home`` as its HOME (where it finds its NSS database)."""
    env: dict[str, str | float | bool] = {**os.environ, "HOME": str(home)}
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=env)


def trusting_home(directory: Path, ca_file: str) -> Path:
    """A HOME whose NSS database trusts ``ca_file`` to identify web sites."""
    if not Path(CERTUTIL).exists():
        pytest.fail("NSS's certutil is missing: run `make browser` (apt-get install libnss3-tools)")
    db = directory / ".pki" / "nssdb"
    db.mkdir(parents=True)
    run = {"check": True, "capture_output": True, "timeout": 30}
    subprocess.run([CERTUTIL, "-N", "-d", f"sql:{db}", "--empty-password"], **run)  # type: ignore[call-overload]
    subprocess.run(  # type: ignore[call-overload]
        [CERTUTIL, "-A", "-d", f"sql:{db}", "-n", "wirechat test CA", "-t", "C,,", "-i", ca_file],
        **run,
    )
    return directory


@pytest.fixture(scope="module")
def https_browser(
    playwright: Playwright, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """Chromium that trusts the test CA (and nothing is ignored)."""
    home = trusting_home(tmp_path_factory.mktemp("home-trusting"), tls_files.ca_file)
    browser = _launch(playwright, home)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def https_gateway(
    tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A chat server (custom transport) over TLS, and ``wirechat web`` over HTTPS in front of
    it, speaking TLS to it with ``--ca``."""
    db = tmp_path_factory.mktemp("https-db") / "chat.db"
    server = ServerProcess(["custom"], db, tls=tls_files.server).start()
    cert, key = tls_files.server.cert_file, tls_files.server.key_file
    extra = ["--tls-cert", cert, "--tls-key", key, "--ca", tls_files.ca_file]
    gateway = HttpsGateway("custom", server.addresses["custom"], extra=extra)
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()
        server.stop()


class HttpsGateway(GatewayProcess):
    @property
    def url(self) -> str:
        host, port = self.addresses["web"]
        return f"https://{host}:{port}"


@pytest.fixture
def web(https_browser: Browser, https_gateway: GatewayProcess) -> Iterator[Web]:
    helper = Web(https_browser, https_gateway)
    try:
        yield helper
    finally:
        helper.close()


def test_gateway_says_it_serves_https(https_gateway: GatewayProcess) -> None:
    assert any("ready: https://" in line for line in https_gateway.log_lines)
    assert any("over TLS" in line for line in https_gateway.log_lines)  # to the chat server


def test_browser_signs_up_and_chats_over_https(web: Web) -> None:
    alice, bob = f"ha{os.getpid() % 10000}", f"hb{os.getpid() % 10000}"
    page_a, page_b = web.page(), web.page()
    response = page_a.goto("/signup")
    assert response is not None
    details = response.security_details()
    assert details is not None and details.get("protocol") == "TLS 1.3"
    # Served over HTTP/2 (ALPN h2): every tab of a browser shares one connection.
    protocol = page_a.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
    assert protocol == "h2"
    web.signup(page_a, alice)
    web.signup(page_b, bob)
    web.logout(page_a)  # and the login form, over HTTPS (its CSRF checks see https:// origins)
    web.login(page_a, alice)
    web.open_chat(page_a, bob)
    web.open_chat(page_b, alice)
    web.reply(page_a, "over https, hello")
    # bob's open page gets it through its event stream (over the same HTTPS connection)
    expect(page_b.locator("#messages .msg .body").last).to_have_text("over https, hello")
    web.reply(page_b, "and back")
    expect(page_a.locator("#messages .msg .body").last).to_have_text("and back")
    assert page_a.url.startswith("https://")


def test_cookies_are_secure_with_host_prefix(web: Web) -> None:
    page = web.page()
    name = f"hc{os.getpid() % 10000}"
    web.signup(page, name)
    response = page.reload()  # chat.js has set its tz cookie by now
    expect(page.locator(".me")).to_have_text(name)
    assert response is not None
    assert response.header_value("strict-transport-security") == HSTS
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert COOKIE_NAME not in cookies
    session = cookies[SECURE_COOKIE_NAME]
    assert session["secure"] and session["httpOnly"]
    assert session["path"] == "/" and not session["domain"].startswith(".")
    assert session["sameSite"] == "Lax"
    assert all(c["secure"] for c in cookies.values()), cookies  # tz too: never sent in clear


def test_browser_without_the_ca_refuses(
    playwright: Playwright,
    https_gateway: GatewayProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    browser = _launch(playwright, tmp_path_factory.mktemp("home-untrusting"))
    try:
        page = browser.new_page()
        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(https_gateway.url + "/login")
    finally:
        browser.close()


def test_plain_http_to_the_https_port_is_redirected(
    web: Web, https_gateway: GatewayProcess
) -> None:
    host, port = https_gateway.addresses["web"]
    # A person who typed http://: the browser lands on the same page over https.
    page: Page = web.page()
    page.goto(f"http://{host}:{port}/login")
    expect(page).to_have_url(re.compile(rf"^https://{re.escape(host)}:{port}/login$"))
    expect(page.locator("input[name=username]")).to_be_visible()
    # A script: a 301 with the https:// URL, and a sentence.
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/chat?peer=x")
    answer = conn.getresponse()
    assert answer.status == 301
    assert answer.getheader("Location") == f"https://{host}:{port}/chat?peer=x"
    assert b"served over HTTPS only" in answer.read()
    conn.close()
    # A form posted in clear is not carried out (nor re-posted): 400 and why.
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", "/login", body="username=a&password=b")
    answer = conn.getresponse()
    assert answer.status == 400
    assert b"sent in clear" in answer.read()
    conn.close()


def test_plain_http_answer_never_redirects_to_a_forged_host() -> None:
    answer = plain_http_answer(b"GET /x HTTP/1.1\r\nHost: a b/c\r\n\r\n", 8443)
    assert b"Location: https://127.0.0.1:8443/x\r\n" in answer
    answer = plain_http_answer(
        b"GET http://elsewhere/ HTTP/1.1\r\nHost: chat.example:8443\r\n\r\n", 8443
    )
    assert b"Location: https://chat.example:8443/\r\n" in answer
    assert plain_http_answer(b"\x00junk", 8443).startswith(b"HTTP/1.1 400 ")


def _web(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "wirechat", "web", "--transport", "loopback", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_plain_http_on_a_network_address_refuses_to_start() -> None:
    result = _web("--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "refusing to serve the web UI over plain HTTP on 0.0.0.0" in result.stderr
    assert "--tls-cert FILE --tls-key FILE" in result.stderr and "--insecure" in result.stderr
    assert "listening:" not in result.stderr


def test_half_a_certificate_is_refused() -> None:
    result = _web("--port", "0", "--tls-key", "key.pem")
    assert result.returncode == 2
    assert "TLS needs both --tls-cert FILE and --tls-key FILE" in result.stderr


@pytest.mark.parametrize("how", ["insecure", "tls"])
def test_network_address_starts_with_tls_or_insecure(how: str, tls_files: TlsFiles) -> None:
    extra = ["--insecure"]
    if how == "tls":
        extra = ["--tls-cert", tls_files.server.cert_file, "--tls-key", tls_files.server.key_file]
    args = [sys.executable, "-m", "wirechat", "web", "--transport", "loopback", "--hash-cost"]
    process = ChildProcess([*args, "low", *extra, "--host", "0.0.0.0", "--port", "0"])
    process.start()
    try:
        scheme = "https" if how == "tls" else "http"
        assert any(f"ready: {scheme}://0.0.0.0:" in line for line in process.log_lines)
    finally:
        process.stop()


def test_loopback_http_keeps_the_plain_cookie(local_gateway: LocalGateway) -> None:
    plain = create_app(local_gateway.gateway).test_client()
    cookie = plain.get("/login").headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=") and "Secure" not in cookie
    assert "Strict-Transport-Security" not in plain.get("/login").headers

    secure = create_app(local_gateway.gateway, https=True).test_client()
    response = secure.get("/login", base_url="https://127.0.0.1:8443")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{SECURE_COOKIE_NAME}=") and "; Secure" in cookie
    assert "; Path=/" in cookie and "Domain" not in cookie
    assert response.headers["Strict-Transport-Security"] == HSTS
    # ...but not to the name localhost (HSTS would bind every port of it for a year)
    response = secure.get("/login", base_url="https://localhost:8443")
    assert "Strict-Transport-Security" not in response.headers
