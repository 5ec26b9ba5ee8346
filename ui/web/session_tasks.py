"""What runs on the gateway's loop for one signed-in browser session (see
:mod:`ui.web.gateway`): the pump that hands the chat client's events to the session's feed,
the refresher that keeps the feed's conversation list the server's, and the closing of the
session's chat client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from core.errors import ChatError
from core.types import Delivery, MessagesDeleted, SentCopy
from ui.web.chat_session import ChatSession
from ui.web.history import SIDEBAR_PAGE

log = logging.getLogger("ui.web.gateway")  # (these tasks are the gateway's)

#: Seconds the refresher waits after a change before asking for the conversation list, so a
#: burst of messages costs one round trip.
REFRESH_DELAY = 0.05


async def pump(chat: ChatSession, forget: Callable[[ChatSession, str], bool]) -> None:
    """Hand every incoming event to the feed until the connection ends; then ``forget`` the
    session with the server's reason (False: it was gone already) and close its client."""
    try:
        async for event in chat.client.events():
            if isinstance(event, Delivery):
                chat.feed.message(event, mine=event.sender == chat.username)
            elif isinstance(event, SentCopy):
                chat.feed.message(event.message, mine=True)
            elif isinstance(event, MessagesDeleted):
                chat.feed.deleted(event.message_ids)
            chat.dirty.set()  # ReadMarker too: only the counts change
    except Exception as exc:  # an ack failed: the connection broke under us
        log.info("chat connection of %s failed: %s", chat.username, exc)
    reason = chat.client.closed_reason or "the connection to the chat server closed"
    if chat.refresher is not None:
        chat.refresher.cancel()
    if forget(chat, reason):
        log.info("chat session of %s ended by the server: %s", chat.username, reason)
        with contextlib.suppress(Exception):
            await chat.client.close()


async def refresh(chat: ChatSession) -> None:
    """Keep the feed's conversation list (unread counts) the server's, one call per burst."""
    while True:
        await chat.dirty.wait()
        await asyncio.sleep(REFRESH_DELAY)
        chat.dirty.clear()
        try:
            page = await chat.client.list_conversations(0, SIDEBAR_PAGE)
        except ChatError as exc:  # e.g. a transport that cannot list yet: keep the last
            log.info("conversation list of %s failed: %s", chat.username, exc)
            continue
        except (ConnectionError, OSError):
            return  # the pump notices the end and signs the session out
        chat.feed.set_snapshot(page)


async def close_client(chat: ChatSession, *, logout: bool, timeout: float) -> None:
    """Log out (best effort, within half of ``timeout``) and close the connection; the pump
    then ends."""
    if logout:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout / 2):
                await chat.client.logout()
    with contextlib.suppress(Exception):
        await chat.client.close()
    if chat.refresher is not None:
        chat.refresher.cancel()
    if chat.pump is not None and not chat.pump.done():
        try:
            async with asyncio.timeout(2.0):
                await asyncio.shield(chat.pump)
        except TimeoutError:
            chat.pump.cancel()
        except Exception:
            log.debug("pump of %s ended with an error", chat.username, exc_info=True)


__all__ = ["REFRESH_DELAY", "close_client", "pump", "refresh"]
