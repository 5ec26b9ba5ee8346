"""The gateway's vocabulary: one signed-in browser session, its open pages, the gateway's
bounds, and the failures the pages show (see :mod:`ui.web.gateway`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from core.client import ChatClient
from ui.web.feed import Feed


class GatewayError(Exception):
    """A failure to show to the person, as a sentence. ``signed_out``: the session is gone."""

    def __init__(self, message: str, *, signed_out: bool = False) -> None:
        super().__init__(message)
        self.signed_out = signed_out


class GatewayFull(GatewayError):
    """A sign-in refused because the gateway (or this address's share of it) is full."""


@dataclass(frozen=True)
class Limits:
    """Every bound of the gateway, with defaults suitable for a small team."""

    max_sessions: int = 100  # signed-in browser sessions (each holds a chat connection)
    # ... of them from one client address: a household or office behind one NAT address fits,
    # one visitor signing up accounts in a loop takes a fifth of the gateway at most.
    max_sessions_per_address: int = 20
    idle_timeout: float = 30 * 60.0  # seconds without a request or an open page
    # Open pages (event streams) per browser session. A browser opens at most 6 connections
    # to one host over HTTP/1.1 and each open page holds one, so 4 leaves room for requests.
    # A new page replaces the oldest stream: most often its tab is gone already (a closed
    # tab's stream is noticed only when its next heartbeat fails to write).
    max_streams: int = 4
    command_timeout: float = 10.0  # send, search, delete, logout
    # login waits for argon2 and, after repeated failures, the server's backoff (cap 8 s)
    login_timeout: float = 30.0


class Stream:
    """One open page's event stream; ``replaced`` tells it to end (see Limits.max_streams)."""

    __slots__ = ("replaced",)

    def __init__(self) -> None:
        self.replaced = False


class ChatSession:
    """One signed-in browser session: its chat client, its live feed, its open pages."""

    def __init__(
        self, key: str, username: str, client: ChatClient, feed: Feed, peer: str = ""
    ) -> None:
        self.key = key
        self.peer = peer  # the browser's address, for Limits.max_sessions_per_address
        self.username = username
        self.client = client
        self.feed = feed
        self.last_seen = time.monotonic()
        self.streams: list[Stream] = []  # open pages, oldest first; guarded by the gateway lock
        self.pump: asyncio.Task[None] | None = None
        self.refresher: asyncio.Task[None] | None = None
        self.dirty = asyncio.Event()  # set on the loop thread only: refresh the sidebar

    def __repr__(self) -> str:
        return f"<ChatSession {self.username!r} streams={len(self.streams)}>"


__all__ = ["ChatSession", "GatewayError", "GatewayFull", "Limits", "Stream"]
