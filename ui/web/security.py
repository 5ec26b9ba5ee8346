"""CSRF protection and the security headers of every response.

CSRF, two independent checks on every POST (login and signup included: a forged login signs
the victim in as the attacker, replacing their session):

1. *Where the request came from*, as the browser itself says. ``Sec-Fetch-Site`` (sent by every
   current browser, and not settable by a page) must be ``same-origin`` (or ``none``: typed by
   the person); otherwise ``Origin``, when sent, must be exactly ours (scheme, host and port:
   another port of the same host is another origin, and ``Origin: null``, what a
   ``no-referrer`` page or a sandboxed frame sends, is refused); otherwise ``Referer``, when
   sent, must be ours. A request with none of the three comes from no browser (curl, tests)
   and is judged by the token alone.
2. *The token*: a random value in the signed session cookie (HttpOnly, so a page's scripts
   cannot read the cookie; signed, so it cannot be forged), created with the first page, so the
   login form is bound to a pre-session cookie too. Every form carries it in a hidden ``csrf``
   field and scripts send it in an ``X-CSRF-Token`` header. Another site can make the browser
   *send* our cookie but cannot *read* the token. It is replaced at sign-in and sign-out.

Why both: cookies are not isolated by port, so a page on another port of our host can set
("toss") a session cookie of its own, token included, into the victim's browser; check 1 is
what refuses its forged form. The cookie is SameSite=Lax, so another *site* never sends it on
a POST at all. (Over HTTPS the cookie is ``__Host-`` named and Secure, ui/web/app.py: a
browser then refuses one set by another port's plain-HTTP page, which stops the tossing itself.)

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
    foreign = _foreign_source(request)
    if foreign is not None:
        return foreign
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not isinstance(expected, str) or not expected:
        return "the form has no session behind it"
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        return "the form's security token is missing or out of date"
    return None


def _foreign_source(request: Request) -> str | None:
    """Check 1 of the module docstring: None if the browser says the POST is our own."""
    ours = _origin_of(request.host_url)
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site in ("same-origin", "none"):
            return None
        return f"the form was sent from another site ({fetch_site})"
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin == "null":
            return "the form was sent from a page that hides its origin"
        if _origin_of(origin) != ours:
            return f"the form was sent from another site ({origin})"
        return None
    referer = request.headers.get("Referer")
    if referer and _origin_of(referer) != ours:
        return "the form was sent from another site"
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
