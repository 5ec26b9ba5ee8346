"""The account page's forms that need the password again (issue 13): change password, and
delete the account. Both are POST forms with the CSRF token like every other
(ui/web/security.py); the passwords go to the chat server and are dropped.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, flash, g, redirect, request, session, url_for

from ui.web.gateway import ChatSession, Gateway, GatewayError
from ui.web.security import rotate_csrf_token


def add_account_routes(app: Flask, gateway: Gateway) -> None:
    """``POST /account/password`` and ``POST /account/delete`` (the page is ``/account``)."""
    from ui.web.app import after_sign_out, signed_in  # (app.py registers us)

    @app.post("/account/password")
    @signed_in
    def change_password() -> Any:
        chat: ChatSession = g.chat
        old = request.form.get("old_password", "")
        new = request.form.get("new_password", "")
        end_others = request.form.get("end_others") == "on"
        if not old or not new:
            flash("Enter your current password and a new one.", "error")
        elif new != request.form.get("new_password2", ""):
            flash("The two new passwords differ; the password is not changed.", "error")
        else:
            try:
                result = gateway.change_password(chat, old, new, end_other_sessions=end_others)
            except GatewayError as exc:
                if exc.signed_out:
                    return after_sign_out(exc)
                flash(f"The password is not changed: {exc}.", "error")
            else:
                flash(_changed(end_others, result.sessions_ended), "info")
        return redirect(url_for("account"))

    @app.post("/account/delete")
    @signed_in
    def delete_account() -> Any:
        chat: ChatSession = g.chat
        if request.form.get("confirm", "") != chat.username:
            flash("Type your username exactly to confirm.", "error")
            return redirect(url_for("account"))
        password = request.form.get("password", "")
        if not password:
            flash("Enter your password to confirm.", "error")
            return redirect(url_for("account"))
        try:
            gateway.delete_account(chat, password)
        except GatewayError as exc:
            if exc.signed_out:
                return after_sign_out(exc)
            flash(f"The account is not deleted: {exc}.", "error")
            return redirect(url_for("account"))
        session.pop("key", None)
        rotate_csrf_token()
        flash(f"The account {chat.username} was deleted. You are signed out.", "info")
        return redirect(url_for("login"))


def _changed(end_others: bool, ended: int) -> str:
    if not end_others:
        return "Your password is changed. Your other sessions stay signed in."
    if not ended:
        return "Your password is changed. No other session was signed in."
    return f"Your password is changed; {ended} other session{'s' * (ended != 1)} signed out."


__all__ = ["add_account_routes"]
