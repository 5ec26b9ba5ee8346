"""The Flask app: pages over :class:`ui.web.gateway.Gateway`, and a live event stream.

Every page is rendered on the server (Jinja autoescapes every name and message); a small script
(static/chat.js) adds live updates through Server-Sent Events and sends replies without a
reload. Without the script the pages still work through plain forms.

The browser's signed session cookie holds two random values: the CSRF token and the key of
its signed-in gateway session. Nothing else (no username, no password) is stored in it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response as BaseResponse

from core import limits
from core.errors import ChatError
from core.types import ConversationPage
from ui import timefmt
from ui.web import history
from ui.web.account import add_account_routes
from ui.web.events import sse
from ui.web.gateway import ChatSession, Gateway, GatewayError, GatewayFull
from ui.web.links import linkify
from ui.web.security import (
    add_security_headers,
    csrf_failure,
    csrf_token,
    rotate_csrf_token,
)

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

#: Accounts per page of the people search.
PEOPLE_PAGE_SIZE = 20
#: Request bodies: one maximal message plus form overhead (URL-encoding can triple UTF-8).
MAX_REQUEST_BYTES = 3 * limits.MAX_BODY_BYTES + 16 * 1024
#: Seconds a browser may keep static files without asking again (their URLs change with them).
STATIC_MAX_AGE = 24 * 3600
#: Seconds a browser (or a script) is told to wait when the gateway is full.
FULL_RETRY_AFTER = 60
_RECIPIENT_SPLIT = re.compile(r"[\s,;]+")
#: The session cookie's name over plain (loopback) HTTP, and over HTTPS: a ``__Host-`` cookie
#: must be Secure, Path=/ and without Domain, or the browser drops it (RFC 6265bis 4.1.3.2).
COOKIE_NAME = "wirechat_session"
SECURE_COOKIE_NAME = "__Host-wirechat_session"
#: HSTS: browsers that saw the header use only https:// for this host for a year.
HSTS = "max-age=31536000"


def add_hsts(response: Response) -> Response:
    """``Strict-Transport-Security`` on every page served over HTTPS, except to the name
    ``localhost``: HSTS binds a host name on every port, and would turn the plain
    ``http://localhost:8080`` of a developer's other servers into https:// for a year.
    (Browsers ignore it on IP addresses, RFC 6797 8.1, so sending it there is harmless.)"""
    if request.host.rsplit(":", 1)[0].lower() != "localhost":
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def create_app(gateway: Gateway, *, secret_key: bytes | None = None, https: bool = False) -> Flask:
    """The web UI around ``gateway``; the session cookie is signed with ``secret_key``
    (random per process if not given, so restarting the gateway signs everyone out).
    ``https``: served over HTTPS (ui/web/https.py): the cookie is ``Secure`` and named
    ``__Host-...`` (a browser then refuses it from plain HTTP, from another port's page and
    from a sibling domain: no cookie tossing), and responses carry HSTS."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_bytes(32),
        SESSION_COOKIE_NAME=SECURE_COOKIE_NAME if https else COOKIE_NAME,
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        # static files are named by their content hash (static_url), so they may be cached
        SEND_FILE_MAX_AGE_DEFAULT=STATIC_MAX_AGE,
    )
    app.extensions["wirechat_gateway"] = gateway
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["static_url"] = _static_urls(app)
    app.jinja_env.filters["linkify"] = linkify
    app.after_request(add_security_headers)
    if https:
        app.after_request(add_hsts)

    @app.before_request
    def check_csrf() -> Response | None:
        reason = csrf_failure(request)
        if reason is None:
            return None
        log.warning("refused %s %s: %s", request.method, request.path, reason)
        if _wants_json():
            return _json_error(f"refused: {reason}; reload the page", 400)
        hint = "Go back, reload the page and try again."
        body = render_template("error.html", title="Request refused", message=reason, hint=hint)
        return Response(body, status=400, mimetype="text/html")

    _add_error_pages(app)
    _add_account_routes(app, gateway)
    _add_chat_routes(app, gateway)
    return app


# -- error pages -----------------------------------------------------------------------------
#: What each HTTP error means to the person who met it (title, sentence, what to do).
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("Bad request", "the page sent something the web UI cannot read", "Reload the page."),
    404: ("Not found", "there is no such page here", "Go back to your chats."),
    405: ("Not allowed", "this page cannot be used that way", "Go back to your chats."),
    413: (
        "Too large",
        f"that was more than this web UI accepts at once ({MAX_REQUEST_BYTES // 1024} KiB; "
        f"one message holds up to {limits.MAX_BODY_BYTES // 1024} KiB of text)",
        "Go back, shorten it (or split it into several messages) and send again.",
    ),
    500: (
        "Something went wrong",
        "the web UI hit an error of its own; it has been logged",
        "Go back and try again; if it happens again, tell whoever runs this server.",
    ),
}


def _add_error_pages(app: Flask) -> None:
    """A page in the site's own look (or JSON for scripts) for every HTTP error."""

    def page(error: HTTPException) -> BaseResponse:
        status = error.code or 500
        title, message, hint = _ERRORS.get(
            status, (error.name, (error.description or error.name).rstrip("."), "")
        )
        if _wants_json():
            return _json_error(message, status)
        body = render_template("error.html", title=title, message=message, hint=hint)
        return Response(body, status=status, mimetype="text/html")

    app.register_error_handler(HTTPException, page)

    @app.errorhandler(Exception)
    def crashed(error: Exception) -> BaseResponse:
        if isinstance(error, HTTPException):
            return page(error)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return page(InternalServerError())


# -- helpers ---------------------------------------------------------------------------------
def _static_urls(app: Flask) -> Callable[[str], str]:
    """``static_url("style.css")`` -> ``/static/style.css?v=<hash of the file>``, so a new
    version of a file is fetched at once while an unchanged one comes from the cache."""
    assert app.static_folder is not None
    versions = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in Path(app.static_folder).iterdir()
        if path.is_file()
    }

    def static_url(filename: str) -> str:
        return url_for("static", filename=filename, v=versions.get(filename, "0"))

    return static_url


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def _json_error(message: str, status: int, **extra: object) -> Response:
    response = jsonify(ok=False, error=message, **extra)
    response.status_code = status
    return response


def _gateway() -> Gateway:
    gateway: Gateway = current_app.extensions["wirechat_gateway"]
    return gateway


def _sign_out_cookie(reason: str | None) -> None:
    session.pop("key", None)
    rotate_csrf_token()
    if reason:
        flash(f"You were signed out: {reason}.", "info")


def signed_in(view: F) -> F:
    """Require a live gateway session; otherwise back to the login page with the reason."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gateway = _gateway()
        key = session.get("key")
        chat = gateway.get(key)
        if chat is None:
            if key:
                _sign_out_cookie(gateway.signed_out_reason(key) or "your session ended")
            if _wants_json():
                return _json_error("you are signed out", 401, signed_out=True)
            return redirect(url_for("login"))
        g.chat = chat
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _parse_recipients(text: str) -> list[str]:
    """``"bob, carol dave"`` -> ``["bob", "carol", "dave"]``, duplicates dropped."""
    names = [name for name in _RECIPIENT_SPLIT.split(text.strip()) if name]
    return list(dict.fromkeys(names))


def after_sign_out(error: GatewayError) -> BaseResponse:
    """The chat session ended under a command: sign the browser out and say why."""
    _sign_out_cookie(None)
    flash(str(error), "error")
    if _wants_json():
        return _json_error(str(error), 401, signed_out=True)
    return redirect(url_for("login"))


# -- sign up, log in, log out, delete --------------------------------------------------------
def _add_account_routes(app: Flask, gateway: Gateway) -> None:
    @app.get("/")
    def index() -> BaseResponse:
        if gateway.get(session.get("key")) is not None:
            return redirect(url_for("chat_view"))
        return redirect(url_for("login"))

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        return _sign_in_page(gateway, create=False)

    @app.route("/signup", methods=["GET", "POST"])
    def signup() -> Any:
        return _sign_in_page(gateway, create=True)

    @app.post("/logout")
    def logout() -> BaseResponse:
        chat = gateway.get(session.get("key"))
        if chat is not None:
            gateway.logout(chat)
        session.pop("key", None)
        rotate_csrf_token()
        flash("You are logged out.", "info")
        return redirect(url_for("login"))

    @app.get("/account")
    @signed_in
    def account() -> str:
        return _render_page("account.html", g.chat, title="Account")

    add_account_routes(app, gateway)  # change password, delete account (ui/web/account.py)


def _sign_in_page(gateway: Gateway, *, create: bool) -> Any:
    """The login or signup page, and its form: every attempt uses a fresh chat connection."""
    template = "signup.html" if create else "login.html"
    key = session.get("key")
    if gateway.get(key) is not None:
        return redirect(url_for("chat_view"))
    if key:  # the session ended while the page was away: say why, once
        _sign_out_cookie(gateway.signed_out_reason(key) or "your session ended")
    if request.method == "GET":
        return render_template(template, username="")
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    error = None
    if not username or not password:
        error = "enter a username and a password"
    elif create and password != request.form.get("password2", ""):
        error = "the two passwords differ"
    else:
        try:
            peer = request.remote_addr or ""
            if create:
                chat, result = gateway.signup(username, password, peer)
            else:
                chat, result = gateway.login(username, password, peer)
        except GatewayFull as exc:
            log.warning("refused a sign-in from %s: %s", request.remote_addr, exc)
            page = render_template(template, username=username, error=str(exc), full=True)
            return Response(page, status=503, headers={"Retry-After": str(FULL_RETRY_AFTER)})
        except (ChatError, GatewayError) as exc:
            error = str(exc)
    if error is not None:
        return Response(render_template(template, username=username, error=error), status=400)
    old = gateway.get(session.get("key"))
    if old is not None:  # another tab signed in meanwhile: keep one session per browser
        gateway.logout(old)
    session.clear()
    session["key"] = chat.key
    rotate_csrf_token()
    if create:
        flash(f"Welcome, {result.username}! Your account is ready.", "info")
    else:
        count = result.pending
        waiting = "no new messages" if not count else f"{count} new message{'s' * (count != 1)}"
        flash(f"Welcome back, {result.username}: {waiting} waited for you.", "info")
    return redirect(url_for("chat_view"))


# -- conversations, compose, people, events --------------------------------------------------
def _tz() -> dt.tzinfo:
    """The reader's time zone, as static/chat.js put it in the ``tz`` cookie (UTC before)."""
    return timefmt.zone(request.cookies.get("tz"))


def _render_page(
    template: str,
    chat: ChatSession,
    *,
    last_seq: int | None = None,
    conversations: ConversationPage | None = None,
    **ctx: Any,
) -> str:
    """A signed-in page; ``last_seq``: the feed position the page shows (taken before the
    server was asked, so its event stream repeats rather than misses; pages drop repeats)."""
    seq = chat.feed.last_seq if last_seq is None else last_seq
    page = conversations if conversations is not None else chat.feed.snapshot
    return render_template(
        template,
        chat=chat,
        me=chat.username,
        last_seq=seq,
        unread_total=history.unread_total(page),
        **ctx,
    )


def _parse_peer(text: str) -> tuple[str, ...]:
    """``?peer=kim,lee`` -> ("kim", "lee"), sorted; 404 for anything that is not a name."""
    names = tuple(sorted({name for name in text.split(",") if name}))
    if not names or len(names) > limits.MAX_RECIPIENTS:
        abort(404)
    for name in names:
        if not limits.USERNAME_RE.fullmatch(name):
            abort(404)
    return names


def _add_chat_routes(app: Flask, gateway: Gateway) -> None:
    @app.get("/chat")
    @signed_in
    def chat_view() -> Any:
        chat: ChatSession = g.chat
        cid = _int_arg(request.args.get("c"))
        peer_text = request.args.get("peer") or ""
        participants = _parse_peer(peer_text) if peer_text and not cid else ()
        before = _int_arg(request.args.get("before"))
        seq = chat.feed.last_seq
        tz = _tz()
        thread = None
        try:
            if not cid and not participants:
                conversations = gateway.conversations(chat)
            elif before:  # an older page, without the script ("Load older" link)
                page = gateway.history(
                    chat, conversation_id=cid, participants=participants, before_id=before
                )
                conversations = gateway.conversations(chat)
            else:
                page, conversations = gateway.open_thread(
                    chat, conversation_id=cid, participants=participants
                )
        except GatewayError as exc:
            if exc.signed_out:
                return after_sign_out(exc)
            flash(str(exc), "error")
            return _render_page(
                "chat.html",
                chat,
                last_seq=seq,
                title="Chats",
                thread=None,
                rows=[],
                current=None,
                older=False,
            )
        if cid or participants:
            if cid and not page.participants and not page.messages:
                abort(404)  # not a conversation of yours (or nothing left of your notes)
            thread = history.thread(page, chat.username, tz, others=conversations.conversations)
        rows = history.sidebar(conversations, chat.username, tz)
        return _render_page(
            "chat.html",
            chat,
            last_seq=seq,
            conversations=conversations,
            title=thread.title if thread else "Chats",
            thread=thread,
            rows=rows,
            current=thread.conversation_id if thread else None,
            older=bool(before),
        )

    @app.get("/history")
    @signed_in
    def older() -> BaseResponse:
        """An older page of a conversation, for "Load older" (JSON, oldest first)."""
        chat: ChatSession = g.chat
        cid = _int_arg(request.args.get("c"))
        before = _int_arg(request.args.get("before"))
        if not cid or not before:
            return _json_error("name a conversation and a message id", 400)
        try:
            page = gateway.history(chat, conversation_id=cid, before_id=before)
        except GatewayError as exc:
            if exc.signed_out:
                return after_sign_out(exc)
            return _json_error(str(exc), 400)
        tz = _tz()
        rows = [history.message_row(d, chat.username, tz) for d in reversed(page.messages)]
        return jsonify(ok=True, more=page.more, messages=[row.to_json() for row in rows])

    @app.post("/read")
    @signed_in
    def mark_read() -> BaseResponse:
        cid = _int_arg(request.form.get("c"))
        up_to = _int_arg(request.form.get("up_to"))
        if cid and up_to:
            try:
                gateway.mark_read(g.chat, cid, up_to)
            except GatewayError as exc:
                if exc.signed_out:
                    return after_sign_out(exc)
                return _json_error(str(exc), 400)
        return Response(status=204)

    @app.post("/delete")
    @signed_in
    def delete_messages() -> Any:
        chat: ChatSession = g.chat
        ids = [_int_arg(text) for text in request.form.getlist("id")]
        ids = [i for i in ids if i]
        everyone = request.form.get("scope") == "everyone"
        back = _int_arg(request.form.get("c"))
        try:
            if not ids:
                raise GatewayError("choose a message to delete")
            gateway.delete_messages(chat, ids, everyone)
        except GatewayError as exc:
            if exc.signed_out:
                return after_sign_out(exc)
            if _wants_json():
                return _json_error(str(exc), 400)
            flash(str(exc), "error")
        else:
            if _wants_json():
                return jsonify(ok=True)
        return redirect(url_for("chat_view", c=back) if back else url_for("chat_view"))

    @app.get("/compose")
    @signed_in
    def compose() -> str:
        to = ", ".join(_parse_recipients(" ".join(request.args.getlist("to"))))
        return _render_page("compose.html", g.chat, title="New message", to=to, body="")

    @app.post("/send")
    @signed_in
    def send() -> Any:
        chat: ChatSession = g.chat
        recipients = _parse_recipients(request.form.get("to", ""))
        body = request.form.get("body", "").replace("\r\n", "\n")
        from_compose = request.form.get("from") == "compose"
        back = _int_arg(request.form.get("c"))
        try:
            if not body.strip():
                raise GatewayError("write a message first")
            if not recipients:
                raise GatewayError("name at least one recipient")
            result = gateway.send(chat, recipients, body)
        except GatewayError as exc:
            if exc.signed_out:
                return after_sign_out(exc)
            error = str(exc)
        else:
            unknown = list(result.unknown_recipients)
            not_found = "Not delivered, no such user: " + ", ".join(unknown)
            delivered = [name for name in recipients if name not in unknown]
            if delivered and _wants_json():
                return jsonify(
                    ok=True, unknown=unknown, id=result.message_id, cid=result.conversation_id
                )
            if delivered:
                if unknown:
                    flash(not_found, "error")
                if result.conversation_id:
                    return redirect(url_for("chat_view", c=result.conversation_id))
                return redirect(url_for("chat_view", peer=",".join(delivered)))
            error = not_found  # nothing was sent: keep the text on the page
        if _wants_json():
            return _json_error(error, 400)
        if from_compose or not recipients:
            body_html = _render_page(
                "compose.html",
                chat,
                title="New message",
                to=", ".join(recipients),
                body=body,
                error=error,
            )
            return Response(body_html, status=400)
        flash(error, "error")
        if back:
            return redirect(url_for("chat_view", c=back))
        return redirect(url_for("chat_view", peer=",".join(recipients)))

    @app.get("/people")
    @signed_in
    def people() -> Any:
        chat: ChatSession = g.chat
        pattern = request.args.get("pattern", "").strip() or "*"
        after = request.args.get("after", "")
        names: tuple[str, ...] = ()
        more = False
        error = None
        try:
            page = gateway.list_accounts(chat, pattern, after, PEOPLE_PAGE_SIZE)
            names, more = page.usernames, page.more
        except GatewayError as exc:
            if exc.signed_out:
                return after_sign_out(exc)
            error = str(exc)
        return _render_page(
            "people.html",
            chat,
            title="People",
            pattern=pattern,
            after=after,
            names=names,
            more=more,
            error=error,
        )

    @app.get("/events")
    def events() -> Response:
        """Served by ui.web.events on the ASGI server (ui.web.serve) before Flask sees it;
        this rule only names the URL for url_for. Reached directly (Flask's test client, a
        WSGI server), it ends the stream at once, which a page shows as signed-out/reload."""
        body = sse("end", {"reason": "live updates need `wirechat web` (ui.web.serve)"})
        return Response(body, mimetype="text/event-stream")


def _int_arg(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


__all__ = ["create_app"]
