"""CSRF protection and the security headers of every response.

CSRF: a random token per browser session lives in the signed session cookie (HttpOnly, so a
page's scripts cannot read the cookie, and signed, so it cannot be forged). Every form carries
it in a hidden ``csrf`` field and scripts send it in an ``X-CSRF-Token`` header, taken from
the page. Another site can make the browser *send* our cookie but cannot *read* the token, so a
POST without the matching token is refused. A browser's ``Origin`` header, when present, must
also be our own. The token is replaced at sign-in, so a token planted before login is useless.

Headers: a Content-Security-Policy that allows only our own scripts, styles and connections
(the pages have no inline script or style), no framing, no MIME sniffing, no referrer leaks.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import Request, Response, session

CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


def csrf_token() -> str:
    """This browser session's CSRF token (created on first use)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def rotate_csrf_token() -> None:
    """A fresh token (at sign-in and sign-out)."""
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def csrf_failure(request: Request) -> str | None:
    """Why this request fails the CSRF check, or None if it passes (or needs none)."""
    if request.method in _SAFE_METHODS:
        return None
    origin = request.headers.get("Origin")
    if origin and origin != "null" and _origin_of(origin) != _origin_of(request.host_url):
        return "the request came from another site"
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not isinstance(expected, str) or not expected:
        return "the form has no session behind it"
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        return "the form's security token is missing or out of date"
    return None


def _origin_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def add_security_headers(response: Response) -> Response:
    """Set the headers every response carries."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        headers.setdefault("Cache-Control", "no-store")
    return response


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "add_security_headers",
    "csrf_failure",
    "csrf_token",
    "rotate_csrf_token",
]
