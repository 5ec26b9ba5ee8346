"""What the web UI tests share: the gateway as a child process, and a person's steps.

``GatewayProcess`` runs ``python -m wirechat web --port 0`` and learns its port from the
``listening: web <host>:<port>`` line it logs. ``Web`` opens browser contexts (each one is a
separate person with its own cookies) and knows the site's forms.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from transports import registry
from wirechat.launch import ChildProcess

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse"
START_TIMEOUT = 30.0
#: Upper bound for anything the page must show (auto-retrying assertions; normally ms).
EXPECT_TIMEOUT_MS = 10_000
VIEWPORT: ViewportSize = {"width": 1100, "height": 700}
_LISTENING = re.compile(r"listening: web (\S+):(\d+)")

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def web_transports() -> list[str]:
    """The transports the browser tests run over (the registry's wire transports)."""
    override = os.environ.get("WIRECHAT_WEB_TRANSPORTS")
    return override.split(",") if override else list(registry.WIRE_TRANSPORTS)


class GatewayProcess(ChildProcess):
    """``wirechat web`` in a child process; ``url`` once started; stopped by its pid."""

    def __init__(
        self,
        transport: str,
        server: tuple[str, int] | None,
        *,
        db: Path | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        args = [sys.executable, "-m", "wirechat", "web", "--transport", transport, *extra]
        args += ["--host", "127.0.0.1", "--port", "0"]
        if server is not None:
            args += ["--server", f"{server[0]}:{server[1]}"]
        else:
            args += ["--hash-cost", "low"]
            if db is not None:  # an in-process chat server that outlives this gateway
                args += ["--db", str(db)]
        super().__init__(args, label="web gateway")
        self.transport = transport
        self.server = server

    @property
    def url(self) -> str:
        host, port = self.addresses["web"]
        return f"http://{host}:{port}"

    def start(self) -> GatewayProcess:
        super().start()
        return self


class Web:
    """Browser contexts on one gateway, and the steps a person takes on its pages."""

    def __init__(self, browser: Browser, gateway: GatewayProcess) -> None:
        self.browser = browser
        self.gateway = gateway
        self.url = gateway.url
        self._contexts: list[BrowserContext] = []

    def context(self) -> BrowserContext:
        """A new person (fresh cookies)."""
        context = self.browser.new_context(base_url=self.url, viewport=VIEWPORT)
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        self._contexts.append(context)
        return context

    def page(self) -> Page:
        return self.context().new_page()

    def close(self) -> None:
        for context in self._contexts:
            context.close()

    # -- steps -----------------------------------------------------------------------------
    def signup(self, page: Page, name: str, password: str = PASSWORD) -> None:
        page.goto("/signup")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", password)
        page.fill("input[name=password2]", password)
        page.click("form button[type=submit]")
        expect(page.locator(".me")).to_have_text(name)

    def login(self, page: Page, name: str, password: str = PASSWORD) -> None:
        self.submit_login(page, name, password)
        expect(page.locator(".me")).to_have_text(name)

    def submit_login(self, page: Page, name: str, password: str) -> None:
        if "/login" not in page.url:
            page.goto("/login")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", password)
        page.click("form button[type=submit]")

    def logout(self, page: Page) -> None:
        page.click("text=Log out")
        expect(page).to_have_url(re.compile(r"/login$"))

    def send(self, page: Page, to: str, body: str) -> int:
        """Send as the page's person without typing (the reply form's request); the id."""
        token = page.locator("body").get_attribute("data-csrf")
        response = page.request.post(
            "/send",
            form={"csrf": token or "", "to": to, "body": body},
            headers={"Accept": "application/json"},
        )
        answer = response.json()
        assert answer["ok"], answer
        return int(answer["id"])

    def open_chat(self, page: Page, peer: str) -> None:
        page.goto(f"/chat?peer={peer}")
        expect(page.locator(".thread-head h2")).to_contain_text(peer)

    def reply(self, page: Page, text: str) -> None:
        """Type into the conversation's box and press Enter; wait until the gateway took it."""
        box = page.locator("#reply textarea")
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("")
        expect(page.locator("#reply .form-error")).to_have_text("")

    def bodies(self, page: Page) -> list[str]:
        return page.locator("#messages .msg .body").all_inner_texts()
