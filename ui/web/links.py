"""Clickable links in message text, safely.

A message body is text, never markup: everything is escaped, and only what looks like an
``http://`` or ``https://`` URL becomes a link, whose visible text is the URL itself (so a link
cannot pretend to go elsewhere). No other scheme is ever linked (``javascript:``, ``data:``,
``file:``...). Links open in a new tab with ``rel="noopener noreferrer"``: the opened page gets
no handle on ours and no Referer. static/chat.js does the same for messages that arrive live
(``linkify`` there mirrors :data:`URL_RE`).
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

#: An http(s) URL: the scheme, then everything up to whitespace or a character that cannot be
#: in a URL unescaped. Trailing punctuation of the sentence is left out (see _TRAILING).
URL_RE = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"


def linkify(text: str) -> Markup:
    """``text`` escaped, with each http(s) URL in it made a safe link."""
    out: list[str] = []
    last = 0
    for match in URL_RE.finditer(text):
        url = match.group(0)
        end = match.end()
        while url and url[-1] in _TRAILING and not _balanced_paren(url):
            url = url[:-1]
            end -= 1
        if len(url) <= len("https://"):
            continue
        out.append(str(escape(text[last : match.start()])))
        href = escape(url)
        out.append(
            f'<a href="{href}" rel="noopener noreferrer nofollow" target="_blank">{href}</a>'
        )
        last = end
    out.append(str(escape(text[last:])))
    return Markup("".join(out))


def _balanced_paren(url: str) -> bool:
    """Keep a closing parenthesis that closes one in the URL (Wikipedia-style links)."""
    return url.endswith(")") and url.count("(") >= url.count(")")


__all__ = ["URL_RE", "linkify"]
