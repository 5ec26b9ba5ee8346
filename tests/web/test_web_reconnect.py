"""The web UI through a chat server restart (issue 13), in a real Chromium: the chat server is
killed with SIGKILL and started again on the same port and database; the gateway reconnects
and resumes its sessions on its own, and the open pages say "reconnecting", keep what they
show (no reload) and show the message that waited, once.

The gateway reaches the server through a relay this test controls, so that the message sent
while the gateway is away really is sent while it is away: the relay stops listening with the
kill, and listens again (the gateway's next attempt gets through) after the message is sent.
Also here: the account page's change-password and delete-with-password forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect

from core.client import ChatClient
from tests.web.helpers import PASSWORD, GatewayProcess, Web
from transports import registry
from wirechat.launch import ServerProcess
from wirechat.services import free_fixed_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from tests.conftest import Names

pytestmark = pytest.mark.web

#: Milliseconds for what follows a restart: the gateway's backoff may wait up to its cap (10 s).
RESTART_MS = 40_000
NEW_PASSWORD = "pw-secret-2"


class Relay:
    """A TCP relay on a fixed port to ``target``; ``stop_listening()`` makes its port refuse
    connections (as a server that is down), ``listen()`` opens it again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.address = ("127.0.0.1", free_fixed_port())  # listened on again after a stop
        self._server: socket.socket | None = None

    def listen(self) -> None:
        server = socket.create_server(self.address, reuse_port=False)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop_listening(self) -> None:
        if self._server is not None:
            # shutdown() first: close() alone leaves the socket listening while the accept
            # thread is blocked in accept() on it, so listen() again failed with EADDRINUSE
            # unless a connection happened to arrive meanwhile (CI, 2026-11-30)
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                down, _ = server.accept()
            except OSError:
                return  # stop_listening()
            try:
                up = socket.create_connection(self.target, timeout=5)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Stack:
    """A chat server child on a fixed port, the relay, and a gateway behind the relay."""

    def __init__(self, transport: str, db: Path) -> None:
        self.transport = transport
        self.db = db
        self.servers = [ServerProcess([transport], db).start()]
        self.address = self.servers[0].addresses[transport]
        self.relay = Relay(self.address)
        self.relay.listen()
        self.gateway = GatewayProcess(transport, self.relay.address).start()

    def kill9(self) -> None:
        self.relay.stop_listening()
        self.servers[-1].kill9()

    def restart(self, db: Path | None = None) -> None:
        server = ServerProcess(
            [], db or self.db, extra_args=["--listen", f"{self.transport}={self.address[1]}"]
        )
        self.servers.append(server.start())

    def stop(self) -> None:
        self.gateway.stop()
        self.relay.stop_listening()
        for server in self.servers:
            server.stop()

    def client(self) -> ChatClient:
        """A client of the chat server itself (not through the gateway)."""
        return registry.get(self.transport).open_client(self.address)


@pytest.fixture(params=["custom", "grpc"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(str(request.param), tmp_path / "chat.db")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def site(browser: Browser, stack: Stack) -> Iterator[Web]:
    web = Web(browser, stack.gateway)
    try:
        yield web
    finally:
        web.close()


def send_directly(stack: Stack, name: str, to: str, body: str) -> None:
    """``name`` sends from another device, straight to the chat server."""

    async def send() -> None:
        client = stack.client()
        await client.connect()
        try:
            await client.login(name, PASSWORD)
            await client.send([to], body)
        finally:
            await client.close()

    # (in a thread of its own: Playwright's sync API keeps an event loop on this one)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result(timeout=60)


def thread_bodies(page: Page) -> list[str]:
    return page.locator("#messages .msg .body").all_inner_texts()


def test_pages_say_reconnecting_keep_their_state_and_show_what_waited_once(
    site: Web, stack: Stack, names: Names
) -> None:
    alice, bob = names("alice"), names("bob")
    alice_page, bob_page = site.page(), site.page()
    site.signup(alice_page, alice)
    site.signup(bob_page, bob)
    site.open_chat(bob_page, alice)
    site.reply(bob_page, "before the restart")
    site.open_chat(alice_page, bob)
    expect(alice_page.locator("#messages .msg .body")).to_have_text(["before the restart"])
    for page in (alice_page, bob_page):
        page.evaluate("window.__kept = 'this page was not reloaded'")

    stack.kill9()
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_contain_text("reconnecting", timeout=RESTART_MS)
    stack.restart()
    send_directly(stack, bob, alice, "while you were away")  # bob's phone
    stack.relay.listen()

    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_contain_text("Reconnected", timeout=RESTART_MS)
    expect(alice_page.locator("#messages .msg .body")).to_have_text(
        ["before the restart", "while you were away"], timeout=RESTART_MS
    )
    site.reply(bob_page, "after the restart")  # bob's page carries on where it was
    expect(alice_page.locator("#messages .msg .body")).to_have_text(
        ["before the restart", "while you were away", "after the restart"]
    )
    for page in (alice_page, bob_page):
        assert page.evaluate("window.__kept") == "this page was not reloaded"
        expect(page.locator(".me")).to_be_visible()
    assert thread_bodies(alice_page).count("while you were away") == 1


def test_a_refused_resume_sends_the_page_to_the_login_page_with_a_sentence(
    browser: Browser, names: Names, tmp_path: Path
) -> None:
    stack = Stack("custom", tmp_path / "chat.db")  # one transport is enough for the refusal
    site = Web(browser, stack.gateway)
    try:
        page = site.page()
        site.signup(page, names("alice"))
        stack.kill9()
        expect(page.locator("#connection")).to_contain_text("reconnecting", timeout=RESTART_MS)
        stack.restart(tmp_path / "forgetful.db")  # a server that never issued that token
        stack.relay.listen()
        expect(page).to_have_url(re.compile(r"/login$"), timeout=RESTART_MS)
        expect(page.locator(".flash")).to_contain_text("could not be resumed")
    finally:
        site.close()
        stack.stop()


def test_change_password_signs_out_the_other_device_and_delete_needs_the_password(
    site: Web, names: Names
) -> None:
    kim = names("kim")
    page, other = site.page(), site.page()
    site.signup(page, kim)
    site.login(other, kim)

    page.click("nav >> text=Account")
    page.click("text=Change your password")
    page.fill("input[name=old_password]", "not my password")
    page.fill("input[name=new_password]", NEW_PASSWORD)
    page.fill("input[name=new_password2]", NEW_PASSWORD)
    page.click("#change-password button")
    expect(page.locator(".flash.error")).to_contain_text("The password is not changed: wrong")

    page.click("text=Change your password")
    page.fill("input[name=old_password]", PASSWORD)
    page.fill("input[name=new_password]", NEW_PASSWORD)
    page.fill("input[name=new_password2]", NEW_PASSWORD)
    page.click("#change-password button")
    expect(page.locator(".flash")).to_contain_text("1 other session signed out")
    expect(page.locator(".me")).to_have_text(kim)  # this session stays

    expect(other).to_have_url(re.compile(r"/login$"))
    expect(other.locator(".flash")).to_contain_text("the password was changed")
    site.submit_login(other, kim, PASSWORD)
    expect(other.locator(".error")).to_contain_text("wrong username or password")
    site.login(other, kim, NEW_PASSWORD)

    page.click("nav >> text=Account")
    page.click("text=Delete this account")
    page.fill("input[name=confirm]", kim)
    page.fill("#delete-account input[name=password]", PASSWORD)  # the old one
    page.click("button.danger")
    expect(page.locator(".flash.error")).to_contain_text("The account is not deleted")
    page.click("text=Delete this account")
    page.fill("input[name=confirm]", kim)
    page.fill("#delete-account input[name=password]", NEW_PASSWORD)
    page.click("button.danger")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".flash")).to_contain_text(f"The account {kim} was deleted")
