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
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
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

from core import limits
from core.errors import ChatError
from ui.web.gateway import ChatSession, Gateway, GatewayError, Stream
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
#: An open page's stream writes a comment this often, so a closed tab is noticed (the write
#: fails) and proxies do not time the stream out.
HEARTBEAT_SECONDS = 15.0
#: Request bodies: one maximal message plus form overhead (URL-encoding can triple UTF-8).
MAX_REQUEST_BYTES = 3 * limits.MAX_BODY_BYTES + 16 * 1024
#: Seconds a browser may keep static files without asking again (their URLs change with them).
STATIC_MAX_AGE = 24 * 3600
_RECIPIENT_SPLIT = re.compile(r"[\s,;]+")


def create_app(gateway: Gateway, *, secret_key: bytes | None = None) -> Flask:
    """The web UI around ``gateway``; the session cookie is signed with ``secret_key``
    (random per process if not given, so restarting the gateway signs everyone out)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_bytes(32),
        SESSION_COOKIE_NAME="wirechat_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        # static files are named by their content hash (static_url), so they may be cached
        SEND_FILE_MAX_AGE_DEFAULT=STATIC_MAX_AGE,
    )
    app.extensions["wirechat_gateway"] = gateway
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["static_url"] = _static_urls(app)
    app.jinja_env.filters["clock"] = _clock
    app.jinja_env.filters["iso"] = _iso
    app.after_request(add_security_headers)

    @app.before_request
    def check_csrf() -> Response | None:
        reason = csrf_failure(request)
        if reason is None:
            return None
        log.warning("refused %s %s: %s", request.method, request.path, reason)
        if _wants_json():
            return _json_error(f"refused: {reason}; reload the page", 400)
        body = render_template("error.html", title="Request refused", message=reason)
        return Response(body, status=400, mimetype="text/html")

    _add_account_routes(app, gateway)
    _add_chat_routes(app, gateway)
    return app


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


def _clock(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%H:%M")


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


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


def _after_sign_out(error: GatewayError) -> Response:
    """The chat session ended under a command: sign the browser out and say why."""
    _sign_out_cookie(None)
    flash(str(error), "error")
    if _wants_json():
        return _json_error(str(error), 401, signed_out=True)
    return redirect(url_for("login"))


# -- sign up, log in, log out, delete --------------------------------------------------------
def _add_account_routes(app: Flask, gateway: Gateway) -> None:
    @app.get("/")
    def index() -> Response:
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
    def logout() -> Response:
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

    @app.post("/account/delete")
    @signed_in
    def delete_account() -> Any:
        chat: ChatSession = g.chat
        if request.form.get("confirm", "") != chat.username:
            flash("Type your username exactly to confirm.", "error")
            return redirect(url_for("account"))
        try:
            gateway.delete_account(chat)
        except GatewayError as exc:
            if exc.signed_out:
                return _after_sign_out(exc)
            flash(str(exc), "error")
            return redirect(url_for("account"))
        session.pop("key", None)
        rotate_csrf_token()
        flash(f"The account {chat.username} was deleted. You are signed out.", "info")
        return redirect(url_for("login"))


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
            if create:
                chat, result = gateway.signup(username, password)
            else:
                chat, result = gateway.login(username, password)
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
def _render_page(template: str, chat: ChatSession, *, peer: str | None = None, **ctx: Any) -> str:
    view = chat.history.view(peer)
    return render_template(
        template,
        chat=chat,
        me=chat.username,
        peer=peer,
        view=view,
        unread_total=view.unread_total,
        **ctx,
    )


def _add_chat_routes(app: Flask, gateway: Gateway) -> None:
    @app.get("/chat")
    @signed_in
    def chat_view() -> str:
        chat: ChatSession = g.chat
        peer = request.args.get("peer") or None
        if peer is not None:
            if not limits.USERNAME_RE.fullmatch(peer):
                abort(404)
            chat.history.mark_read(peer)
        return _render_page("chat.html", chat, peer=peer, title=peer or "Chats")

    @app.post("/read")
    @signed_in
    def mark_read() -> Response:
        g.chat.history.mark_read(request.form.get("peer", ""))
        return Response(status=204)

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
        try:
            if not body.strip():
                raise GatewayError("write a message first")
            result, entry = gateway.send(chat, recipients, body)
        except GatewayError as exc:
            if exc.signed_out:
                return _after_sign_out(exc)
            error = str(exc)
        else:
            unknown = list(result.unknown_recipients)
            not_found = "Not delivered, no such user: " + ", ".join(unknown)
            delivered = [name for name in recipients if name not in unknown]
            if delivered and _wants_json():
                return jsonify(ok=True, unknown=unknown, seq=entry.seq if entry else None)
            if delivered:
                if unknown:
                    flash(not_found, "error")
                others = [name for name in delivered if name != chat.username]
                return redirect(url_for("chat_view", peer=(others or delivered)[0]))
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
        return redirect(url_for("chat_view", peer=recipients[0]))

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
                return _after_sign_out(exc)
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
        chat = gateway.get(session.get("key"))
        if chat is None:
            reason = gateway.signed_out_reason(session.get("key")) or "you are signed out"
            return _event_stream(iter([_sse("end", {"reason": reason})]))
        # A reconnecting EventSource says what it saw last; a fresh page says what it rendered.
        after = max(
            _int_arg(request.args.get("after")), _int_arg(request.headers.get("Last-Event-ID"))
        )
        stream = gateway.open_stream(chat)
        response = _event_stream(_changes(chat, stream, after))
        response.call_on_close(lambda: gateway.close_stream(chat, stream))
        return response


def _int_arg(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def _sse(event: str, data: object, event_id: int | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def _event_stream(chunks: Iterator[str]) -> Response:
    return Response(
        chunks,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _changes(chat: ChatSession, stream: Stream, after_seq: int) -> Iterator[str]:
    """The page's live feed: new messages, unread counts, and the end of the session."""
    yield "retry: 3000\n\n"
    version = -1  # send the current state at once
    while True:
        changes = chat.history.wait(
            version, after_seq, HEARTBEAT_SECONDS, stop=lambda: stream.replaced
        )
        if stream.replaced:  # a newer page took this one's place (Limits.max_streams)
            yield _sse("replaced", {})
            return
        if changes is None:
            yield ": keep-alive\n\n"
            continue
        for entry in changes.entries:
            yield _sse("message", entry.to_json(), entry.seq)
            after_seq = entry.seq
        yield _sse("unread", changes.unread)
        version = changes.version
        if changes.ended is not None:
            yield _sse("end", {"reason": changes.ended})
            return


__all__ = ["create_app"]
