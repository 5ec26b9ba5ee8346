"""The one way wirechat shows a time: the console and the web UI both format through here.

Server timestamps are milliseconds since the Unix epoch (UTC). A person sees them in their
own time zone: the console uses the machine's local zone, the web gateway the browser's (the
page tells it in a ``tz`` cookie; UTC until it has). Formats, 24-hour clock, ISO dates:

* :func:`clock` ``14:03`` (a message in a thread, under a day separator)
* :func:`date` ``2026-11-28``
* :func:`stamp` ``2026-11-28 14:03`` (a message on its own: console lines, tooltips)
* :func:`day_label` ``Today`` / ``Yesterday`` / ``Sat 2026-11-28`` (day separators)
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo

CLOCK_FORMAT = "%H:%M"
DATE_FORMAT = "%Y-%m-%d"
#: Weekday names are fixed here rather than taken from the C locale, so every UI agrees.
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Longest time-zone name accepted from a browser (IANA names are far shorter).
MAX_TZ_NAME = 64


def local(ms: int, tz: tzinfo | None = None) -> datetime:
    """The server timestamp ``ms`` as an aware datetime in ``tz`` (None: this machine's)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz)


def clock(ms: int, tz: tzinfo | None = None) -> str:
    """``14:03``."""
    return local(ms, tz).strftime(CLOCK_FORMAT)


def date(ms: int, tz: tzinfo | None = None) -> str:
    """``2026-11-28`` (also the key the web page compares days by)."""
    return local(ms, tz).strftime(DATE_FORMAT)


def stamp(ms: int, tz: tzinfo | None = None) -> str:
    """``2026-11-28 14:03``: a time with its date, for a message shown on its own."""
    return f"{date(ms, tz)} {clock(ms, tz)}"


def day_label(ms: int, *, now_ms: int | None = None, tz: tzinfo | None = None) -> str:
    """What a day separator says: ``Today``, ``Yesterday`` or ``Sat 2026-11-28``."""
    day = local(ms, tz).date()
    now = datetime.now(tz=UTC) if now_ms is None else datetime.fromtimestamp(now_ms / 1000, UTC)
    today = now.astimezone(tz).date()
    if day == today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    return f"{WEEKDAYS[day.weekday()]} {day.strftime(DATE_FORMAT)}"


def zone(name: str | None) -> tzinfo:
    """The time zone a browser named (``Europe/Berlin``); UTC if missing or unknown."""
    if not name or len(name) > MAX_TZ_NAME or ".." in name or name.startswith("/"):
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return UTC


__all__ = ["CLOCK_FORMAT", "DATE_FORMAT", "clock", "date", "day_label", "local", "stamp", "zone"]
