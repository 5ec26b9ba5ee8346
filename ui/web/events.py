"""The open pages' live event streams (Server-Sent Events), served natively on the gateway loop.

Each open page holds one ``GET /events`` request open for as long as it is open. Under a
thread-per-request server that is one OS thread (8 MiB of stack reserved, a context switch per
event) per tab; here it is one coroutine and a future on the loop that already holds the chat
clients: a few kilobytes each. So this endpoint is plain ASGI, and the rest of the app (short
requests that render pages) stays Flask (see :mod:`ui.web.serve`).

What a stream says, in order: ``retry``, then ``message`` / ``deleted`` events with ids (the
feed's ``seq``, so a reconnecting EventSource resumes with ``Last-Event-ID``), the
``conversations`` list with unread counts whenever it changes, ``: keep-alive`` comments while
nothing happens (so a closed tab is noticed and proxies keep the stream), and last ``end`` with
the reason, ``status`` whenever the gateway's connection to the chat server changes
("reconnecting...", "reconnected": issue 13; a page opened meanwhile gets the current one
first), ``replaced`` (a newer page took its place, Limits.max_streams) or ``reload`` (the
page fell further behind than the feed remembers).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from flask import Flask
from itsdangerous import BadSignature
from werkzeug.http import parse_cookie

from ui import timefmt
from ui.web import history
from ui.web.gateway import ChatSession, Gateway, Stream
from ui.web.security import CONTENT_SECURITY_POLICY

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: An open page's stream writes a comment this often, so a closed tab is noticed (the write
#: fails) and proxies do not time the stream out.
HEARTBEAT_SECONDS = 15.0
#: Milliseconds an EventSource waits before reconnecting after the stream broke.
RETRY_MS = 3000

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
]


def sse(event: str, data: object, event_id: int | None = None) -> str:
    """One Server-Sent Event: ``event:``, optional ``id:``, JSON ``data:``."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


class EventStreams:
    """The ASGI endpoint ``GET /events`` for ``app``'s signed session cookies."""

    def __init__(
        self, app: Flask, gateway: Gateway, *, heartbeat: float = HEARTBEAT_SECONDS
    ) -> None:
        self._gateway = gateway
        self._heartbeat = heartbeat
        self._cookie_name: str = app.config["SESSION_COOKIE_NAME"]
        # The same signed cookie Flask reads (SecureCookieSessionInterface), same max age.
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        if serializer is None:
            raise ValueError("the web app needs a SECRET_KEY to read its session cookie")
        self._serializer = serializer
        self._max_age = int(app.permanent_session_lifetime.total_seconds())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await _plain(send, 405, b"only GET reads the event stream\n")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = parse_cookie(headers.get("cookie", ""))
        key = self._session_key(cookies.get(self._cookie_name))
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        chat = self._gateway.get(key)
        if chat is None:
            reason = self._gateway.signed_out_reason(key) or "you are signed out"
            await _body(send, sse("end", {"reason": reason}), more=False)
            return
        # A reconnecting EventSource says what it saw last; a fresh page says what it rendered.
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        after = max(_int((query.get("after") or [""])[0]), _int(headers.get("last-event-id")))
        tz = timefmt.zone(cookies.get("tz"))
        stream = self._gateway.open_stream(chat)
        try:
            await _until_disconnect(receive, self._write(send, chat, stream, after, tz))
        finally:
            self._gateway.close_stream(chat, stream)

    def _session_key(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self._max_age)
        except BadSignature:
            return None
        key = data.get("key") if isinstance(data, dict) else None
        return key if isinstance(key, str) else None

    async def _write(
        self, send: Send, chat: ChatSession, stream: Stream, after: int, tz: dt.tzinfo
    ) -> None:
        async for chunk in changes(chat, stream, after, tz, self._heartbeat):
            await _body(send, chunk)
        await _body(send, "", more=False)


async def changes(
    chat: ChatSession, stream: Stream, after_seq: int, tz: dt.tzinfo, heartbeat: float
) -> AsyncIterator[str]:
    """The page's live feed: messages, deleted ids, the conversation list with its unread
    counts (the server's), and the end of the session."""
    yield f"retry: {RETRY_MS}\n\n"
    snapshot_version = 0  # send the current conversation list at once
    status_version = 0  # and the connection's status, if it ever changed
    while True:
        found = await chat.feed.wait_async(
            after_seq,
            snapshot_version,
            heartbeat,
            stop=lambda: stream.replaced,
            after_status=status_version,
        )
        if stream.replaced:  # a newer page took this one's place (Limits.max_streams)
            yield sse("replaced", {})
            return
        if found is None:
            yield ": keep-alive\n\n"
            continue
        if found.gap:  # the page missed events the feed no longer holds: read afresh
            yield sse("reload", {})
            return
        for event in found.events:
            if event.kind == "message" and event.message is not None:
                row = history.message_row(event.message, chat.username, tz, mine=event.mine)
                yield sse("message", row.to_json(), event.seq)
            elif event.kind == "deleted":
                yield sse("deleted", {"ids": list(event.deleted)}, event.seq)
            after_seq = event.seq
        if found.snapshot is not None:
            rows = history.sidebar(found.snapshot, chat.username, tz)
            total = history.unread_total(found.snapshot)
            yield sse("conversations", {"rows": [r.to_json() for r in rows], "total": total})
        snapshot_version = found.snapshot_version
        if found.status is not None:
            state, text = found.status
            if status_version or state != "resumed":  # (old news for a page opened after it)
                yield sse("status", {"state": state, "text": text})
        status_version = found.status_version
        if found.ended is not None:
            yield sse("end", {"reason": found.ended})
            return


async def _until_disconnect(receive: Receive, writer: Awaitable[None]) -> None:
    """Run ``writer`` until it ends or the browser goes away, whichever comes first."""
    write = asyncio.ensure_future(writer)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({write, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (write, watcher):
            task.cancel()
        for task in (write, watcher):
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # e.g. the connection broke under a write
                log.info("event stream ended: %r", exc)


async def _body(send: Send, text: str, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": more})


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


__all__ = ["HEARTBEAT_SECONDS", "EventStreams", "changes", "sse"]
