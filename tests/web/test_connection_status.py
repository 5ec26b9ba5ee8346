"""The open pages' connection line (issue 13): the gateway's reconnection reaches every page's
event stream as a ``status`` event; a page opened meanwhile gets the current one first, and a
page opened after the resume is not told old news. (The browser sees it in
tests/web/test_web_reconnect.py, through a real restart.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from types import SimpleNamespace
from typing import Any

from core.reconnect import GaveUp, Reconnecting, Resumed
from ui.web.events import changes
from ui.web.feed import Feed
from ui.web.gateway import Stream, connection_status


def test_connection_status_sentences() -> None:
    assert connection_status(Reconnecting(2, 0.4, "refused")) == (
        "reconnecting",
        "The connection to the chat server was lost; reconnecting\u2026 (attempt 2, next in 0.4 s)",
    )
    assert connection_status(Resumed(3, 2)) == ("resumed", "Reconnected; 3 pending.")
    assert connection_status(Resumed(0, 1)) == ("resumed", "Reconnected; nothing was pending.")
    assert connection_status(GaveUp("the token expired", True))[0] == "gave-up"


def test_a_status_wakes_a_waiting_page_and_only_when_asked_for() -> None:
    feed = Feed()
    assert feed.wait(0, 0, 0.01, after_status=0) is None
    feed.set_status("reconnecting", "reconnecting...")
    woke = feed.wait(0, 0, 1.0, after_status=0)
    assert woke is not None and woke.status == ("reconnecting", "reconnecting...")
    assert feed.wait(0, 0, 0.01, after_status=woke.status_version) is None
    assert feed.wait(0, 0, 0.01) is None  # a reader that does not ask is not woken by it


async def _first_events(feed: Feed, count: int) -> list[tuple[str, Any]]:
    chat: Any = SimpleNamespace(feed=feed, username="ann")
    found: list[tuple[str, Any]] = []
    stream = changes(chat, Stream(), 0, dt.UTC, heartbeat=5.0)
    async with asyncio.timeout(5):
        async for chunk in stream:
            if chunk.startswith("event: "):
                head, _, data = chunk.partition("\ndata: ")
                found.append((head.removeprefix("event: "), json.loads(data)))
                if len(found) == count:
                    break
    await stream.aclose()
    return found


async def test_pages_get_the_current_status_but_not_an_old_resume() -> None:
    feed = Feed()
    feed.set_status(*connection_status(Reconnecting(1, 0.2, "reset")))
    events = await _first_events(feed, 1)  # a page opened while reconnecting
    assert events == [("status", {"state": "reconnecting", "text": events[0][1]["text"]})]

    feed.set_status(*connection_status(Resumed(1, 1)))
    feed.end("bye")  # (so the stream below ends: it shows what a new page is sent)
    assert await _first_events(feed, 1) == [("end", {"reason": "bye"})]
