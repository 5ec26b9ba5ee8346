"""The Flask app's safety rules through Flask's test client (no browser, no wire): cookie
flags, CSRF on every POST, escaping, security headers. The browser tests cover the rest."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ui.web.app import create_app

if TYPE_CHECKING:
    from tests.web.conftest import LocalGateway

PASSWORD = "pw-secret-1"


@pytest.fixture
def app(local_gateway: LocalGateway) -> Flask:
    return create_app(local_gateway.gateway)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match[1]


def signup(client: FlaskClient, name: str) -> None:
    token = csrf_of(client.get("/signup").get_data(as_text=True))
    form = {"csrf": token, "username": name, "password": PASSWORD, "password2": PASSWORD}
    response = client.post("/signup", data=form)
    assert response.status_code == 302 and response.location == "/chat"


def test_session_cookie_is_httponly_and_samesite(app: Flask) -> None:
    response = app.test_client().get("/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "wirechat_session=" in cookie


def test_pages_carry_a_strict_content_security_policy(app: Flask) -> None:
    response = app.test_client().get("/login")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_every_post_needs_the_token(app: Flask, local_gateway: LocalGateway) -> None:
    client = app.test_client()
    form = {"username": "zed", "password": PASSWORD, "password2": PASSWORD}
    assert client.post("/signup", data=form).status_code == 400  # login CSRF too
    assert local_gateway.gateway.live_sessions == 0
    signup(client, "zed")
    page = client.get("/chat").get_data(as_text=True)
    token = csrf_of(page)
    for path in ("/send", "/read", "/logout", "/account/delete", "/account/password"):
        assert client.post(path, data={"to": "zed", "body": "x"}).status_code == 400, path
    # Scripts send the token in a header; the wrong one is refused like a missing one.
    assert client.post("/read", headers={"X-CSRF-Token": "nope"}).status_code == 400
    assert client.post("/read", headers={"X-CSRF-Token": token}).status_code == 204
    assert local_gateway.gateway.live_sessions == 1


def test_the_token_changes_at_sign_in(app: Flask) -> None:
    client = app.test_client()
    before = csrf_of(client.get("/signup").get_data(as_text=True))
    signup(client, "yan")
    after = csrf_of(client.get("/chat").get_data(as_text=True))
    assert before != after


def test_message_text_is_escaped_in_server_rendered_pages(
    app: Flask, local_gateway: LocalGateway
) -> None:
    vic = local_gateway.client()
    local_gateway.run(vic.connect())
    local_gateway.run(vic.signup("vic", PASSWORD))
    client = app.test_client()
    signup(client, "xia")
    page = client.get("/chat?peer=vic").get_data(as_text=True)
    body = "<script>alert(1)</script>"
    form = {"csrf": csrf_of(page), "to": "vic", "body": body}
    response = client.post("/send", data=form, headers={"Accept": "application/json"})
    assert response.get_json()["ok"] is True
    page = client.get("/chat?peer=vic").get_data(as_text=True)  # the sent message is kept
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert body not in page
    local_gateway.run(vic.close())


def test_a_conversation_name_must_be_a_username(app: Flask) -> None:
    client = app.test_client()
    signup(client, "wes")
    assert client.get("/chat?peer=../etc").status_code == 404
    assert client.get("/chat?peer=<b>").status_code == 404


def test_static_files_are_versioned_and_cacheable(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    urls = re.findall(r'"(/static/[^"?]+\?v=[0-9a-f]{12})"', page)
    assert {url.split("?")[0] for url in urls} == {
        "/static/style.css",
        "/static/chat.js",
        "/static/favicon.svg",
    }
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200
        assert "max-age=86400" in response.headers["Cache-Control"]


def test_older_history_comes_from_the_server_as_json_and_others_threads_are_not_found(
    app: Flask, local_gateway: LocalGateway
) -> None:
    uma = local_gateway.client()
    local_gateway.run(uma.connect())
    local_gateway.run(uma.signup("uma", PASSWORD))
    client = app.test_client()
    signup(client, "ray")
    token = csrf_of(client.get("/chat?peer=uma").get_data(as_text=True))
    json = {"Accept": "application/json"}
    sent = [
        client.post("/send", data={"csrf": token, "to": "uma", "body": f"m{i}"}, headers=json)
        for i in range(55)
    ]
    cid = sent[0].get_json()["cid"]
    page = client.get(f"/chat?c={cid}").get_data(as_text=True)
    assert page.count('class="msg out') == 50 and 'id="load-older"' in page
    oldest = sent[5].get_json()["id"]
    answer = client.get(f"/history?c={cid}&before={oldest}", headers=json).get_json()
    assert [m["body"] for m in answer["messages"]] == [f"m{i}" for i in range(5)]
    assert answer["more"] is False and answer["messages"][0]["mine"] is True
    assert re.fullmatch(r"\d\d:\d\d", answer["messages"][0]["time"])
    older = client.get(f"/chat?c={cid}&before={oldest}").get_data(as_text=True)  # no script
    assert older.count('class="msg out') == 5 and "Back to the newest messages" in older
    # Someone else's conversation is not found, whatever its number.
    local_gateway.run(uma.send(["uma"], "a note to myself"))
    notes = local_gateway.run(uma.read_history(()))
    assert client.get(f"/chat?c={notes.conversation_id}").status_code == 404
    local_gateway.run(uma.close())


# -- login CSRF: the browser's own word on where a form came from ----------------------------
def test_a_forged_login_from_another_origin_does_not_replace_the_session(
    app: Flask, local_gateway: LocalGateway
) -> None:
    """Even with a valid token (an attacker on another port of this host can plant a cookie
    and its token of their own), a login POST that the browser says came from elsewhere is
    refused, and the person stays signed in as themselves."""
    attacker = app.test_client()
    signup(attacker, "mal")
    victim = app.test_client()
    signup(victim, "vic")
    token = csrf_of(victim.get("/chat").get_data(as_text=True))
    form = {"csrf": token, "username": "mal", "password": PASSWORD}
    foreign = [
        {"Origin": "http://127.0.0.1:9999"},
        {"Origin": "null"},  # a no-referrer page or a sandboxed frame
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
        {"Referer": "http://127.0.0.1:9999/attack.html"},
    ]
    for headers in foreign:
        for path in ("/login", "/signup"):
            response = victim.post(path, data=form | {"password2": PASSWORD}, headers=headers)
            assert response.status_code == 400, (path, headers)
            assert "another site" in response.get_data(as_text=True) or "hides its origin" in (
                response.get_data(as_text=True)
            )
    page = victim.get("/chat").get_data(as_text=True)
    assert 'data-me="vic"' in page
    own = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert victim.post("/read", headers={"X-CSRF-Token": token} | own).status_code == 204


@pytest.mark.limits(max_sessions_per_address=1)
def test_a_full_gateway_says_so_on_a_page(app: Flask) -> None:
    signup(app.test_client(), "amy")
    client = app.test_client()
    token = csrf_of(client.get("/signup").get_data(as_text=True))
    form = {"csrf": token, "username": "bo", "password": PASSWORD, "password2": PASSWORD}
    response = client.post("/signup", data=form)
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    page = response.get_data(as_text=True)
    assert "signed-in sessions on this web gateway, its limit per address" in page
    assert 'role="alert"' in page


# -- error pages in the site's own look ------------------------------------------------------
def test_errors_get_pages_of_their_own(app: Flask) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("a bug")

    client = app.test_client()
    missing = client.get("/nosuch")
    assert missing.status_code == 404
    assert "There is no such page here" in missing.get_data(as_text=True)
    assert "wire<span>chat</span>" in missing.get_data(as_text=True)
    crashed = client.get("/boom")
    assert crashed.status_code == 500
    text = crashed.get_data(as_text=True)
    assert "Something went wrong" in text and "a bug" not in text
    token = csrf_of(client.get("/login").get_data(as_text=True))
    huge = client.post("/login", data={"csrf": token, "username": "x" * (2 * 2**20)})
    assert huge.status_code == 413
    text = huge.get_data(as_text=True)
    assert "Too large" in text and "shorten it" in text and "Request Entity" not in text
    assert client.get("/nosuch", headers={"Accept": "application/json"}).get_json() == {
        "ok": False,
        "error": "there is no such page here",
    }


def test_only_http_and_https_urls_become_links_and_the_rest_stays_text() -> None:
    from ui.web.links import linkify

    html = str(
        linkify(
            'go https://a.example/x?y=1&z=2, JavaScript:alert(1) "><script>x</script> '
            "data:text/html,hi ftp://f.example/ (see http://b.example/wiki/A_(b))."
        )
    )
    assert html.count("<a ") == 2
    assert '<a href="https://a.example/x?y=1&amp;z=2" rel="noopener noreferrer nofollow"' in html
    assert 'href="http://b.example/wiki/A_(b)"' in html and "A_(b)</a>)." in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html.lower() and 'href="data' not in html


def test_change_password_needs_the_old_one_and_signs_out_the_other_sessions(
    app: Flask, local_gateway: LocalGateway
) -> None:
    phone, laptop = app.test_client(), app.test_client()
    signup(phone, "una")
    token = csrf_of(laptop.get("/login").get_data(as_text=True))
    form = {"csrf": token, "username": "una", "password": PASSWORD}
    assert laptop.post("/login", data=form).status_code == 302
    token = csrf_of(phone.get("/account").get_data(as_text=True))
    change = {"csrf": token, "new_password": "pw-secret-2", "new_password2": "pw-secret-2"}

    wrong = phone.post("/account/password", data={**change, "old_password": "nope-nope"})
    assert wrong.status_code == 302
    assert "The password is not changed: wrong" in phone.get("/account").get_data(as_text=True)
    assert local_gateway.gateway.live_sessions == 2

    right = phone.post(
        "/account/password", data={**change, "old_password": PASSWORD, "end_others": "on"}
    )
    assert right.status_code == 302
    page = phone.get("/account").get_data(as_text=True)
    assert "Your password is changed; 1 other session signed out." in page
    for _ in range(200):  # the laptop's session ends as the server's notice arrives
        if local_gateway.gateway.live_sessions == 1:
            break
        time.sleep(0.02)
    assert local_gateway.gateway.live_sessions == 1
    assert laptop.get("/chat").status_code == 302  # back to the login page
