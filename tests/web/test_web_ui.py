"""The web UI in a real headless Chromium, over each wire transport.

Each test is what a person does: sign up in one browser, chat with someone in another, come
back later to waiting messages, keep two tabs open, delete the account. Assertions wait for
what the page shows (Playwright's auto-retrying ``expect``, bounded by EXPECT_TIMEOUT_MS).
"""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect

from tests.web.helpers import PASSWORD, GatewayProcess, Web
from transports import registry

if TYPE_CHECKING:
    from tests.conftest import Names

pytestmark = pytest.mark.web

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"


def mark_page(page: Page) -> None:
    """Tag the loaded document; a reload or navigation would lose the tag."""
    page.evaluate("window.__sameDocument = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def test_two_people_chat_live_both_ways(web: Web, names: Names, gateway: GatewayProcess) -> None:
    alice, bob = names("alice"), names("bob")
    alice_page, bob_page = web.page(), web.page()
    web.signup(alice_page, alice)
    web.signup(bob_page, bob)
    expect(bob_page.locator("#no-conversations")).to_be_visible()

    web.open_chat(alice_page, bob)
    mark_page(alice_page)
    mark_page(bob_page)
    web.reply(alice_page, "hi bob")

    # Bob's open chat list learns of it live: a new conversation with an unread badge.
    row = bob_page.locator(f'#conversations li[data-peer="{alice}"]')
    expect(row.locator(".badge")).to_have_text("1")
    expect(row.locator(".preview")).to_have_text("hi bob")
    expect(bob_page.locator("#unread-total")).to_have_text("1")
    expect(bob_page).to_have_title(re.compile(r"^\(1\) "))
    assert_not_reloaded(bob_page)

    row.locator("a").click()
    expect(bob_page.locator("#messages .msg.in .body")).to_have_text(["hi bob"])
    expect(bob_page.locator("#unread-total")).to_have_text("")
    mark_page(bob_page)

    web.reply(bob_page, "hello alice")
    expect(alice_page.locator("#messages .msg .body")).to_have_text(["hi bob", "hello alice"])
    expect(alice_page.locator("#messages .msg.in .who")).to_have_text([bob])
    # Bob is looking at the conversation, so his page marks the new message read at once.
    with bob_page.expect_response(lambda response: response.url.endswith("/read")) as read:
        web.reply(alice_page, "how are you?\nall good here")
    expect(bob_page.locator("#messages .msg .body")).to_have_text(
        ["hi bob", "hello alice", "how are you?\nall good here"]
    )
    assert read.value.status == 204
    assert_not_reloaded(alice_page)
    assert_not_reloaded(bob_page)
    bob_page.goto("/chat")
    expect(bob_page.locator(f'#conversations li[data-peer="{alice}"] .preview')).to_have_text(
        "how are you? all good here"
    )
    expect(bob_page.locator(f'#conversations li[data-peer="{alice}"] .badge')).to_have_text("")

    # The gateway keeps the conversation: a reload shows it all, newest at the bottom.
    alice_page.reload()
    expect(alice_page.locator("#messages .msg .body")).to_have_text(
        ["hi bob", "hello alice", "how are you?\nall good here"]
    )

    # A narrow window shows one column: the conversation, then the list behind a back link.
    alice_page.set_viewport_size({"width": 380, "height": 700})
    expect(alice_page.locator(".sidebar")).to_be_hidden()
    expect(alice_page.locator("#messages .msg").last).to_be_in_viewport()
    expect(alice_page.locator("#reply button")).to_be_in_viewport()
    assert alice_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    alice_page.click(".back")
    expect(alice_page.locator(f'#conversations li[data-peer="{bob}"]')).to_be_in_viewport()


def test_messages_wait_for_a_logged_out_user(web: Web, names: Names) -> None:
    alice, bob = names("alice"), names("bob")
    bob_page = web.page()
    web.signup(bob_page, bob)
    web.logout(bob_page)

    alice_page = web.page()
    web.signup(alice_page, alice)
    web.open_chat(alice_page, bob)
    web.reply(alice_page, "first, while you were away")
    web.reply(alice_page, "second")
    expect(alice_page.locator("#messages .msg.out .body")).to_have_count(2)

    web.login(bob_page, bob)
    expect(bob_page.locator(".flash")).to_contain_text("2 new messages waited for you")
    row = bob_page.locator(f'#conversations li[data-peer="{alice}"]')
    expect(row.locator(".badge")).to_have_text("2")
    row.locator("a").click()
    expect(bob_page.locator("#messages .msg.in .body")).to_have_text(
        ["first, while you were away", "second"]
    )


def test_login_errors_are_shown_and_the_next_try_works(web: Web, names: Names) -> None:
    dana = names("dana")
    page = web.page()
    web.signup(page, dana)
    web.logout(page)

    web.submit_login(page, dana, "wrong password")
    expect(page.locator(".auth .error")).to_have_text("wrong username or password")
    web.submit_login(page, names("nobody"), PASSWORD)
    expect(page.locator(".auth .error")).to_have_text("wrong username or password")
    # A failed login ended that chat connection (Rule 4); the gateway opens a fresh one.
    web.login(page, dana)
    expect(page.locator(".flash")).to_contain_text("no new messages")

    other = web.page()
    other.goto("/signup")
    other.fill("input[name=username]", dana)
    other.fill("input[name=password]", PASSWORD)
    other.fill("input[name=password2]", PASSWORD)
    other.click("form button[type=submit]")
    expect(other.locator(".auth .error")).to_contain_text("taken")
    expect(other.locator("input[name=username]")).to_have_value(dana)


def test_a_user_in_two_tabs_sees_every_message_in_both(web: Web, names: Names) -> None:
    erin, fred = names("erin"), names("fred")
    context = web.context()
    tab1 = context.new_page()
    web.signup(tab1, erin)
    tab2 = context.new_page()  # same browser, same session cookie
    web.open_chat(tab1, fred)
    web.open_chat(tab2, fred)
    expect(tab2.locator(".me")).to_have_text(erin)

    fred_page = web.page()
    web.signup(fred_page, fred)
    web.open_chat(fred_page, erin)
    web.reply(fred_page, "to both tabs")
    for tab in (tab1, tab2):
        expect(tab.locator("#messages .msg.in .body")).to_have_text(["to both tabs"])

    web.reply(tab1, "sent from tab 1")
    expect(tab2.locator("#messages .msg.out .body")).to_have_text(["sent from tab 1"])
    expect(fred_page.locator("#messages .msg.in .body")).to_have_text(["sent from tab 1"])

    # Each open page holds a connection; past the gateway's limit (4) the oldest page stops
    # its live updates and says so, instead of starving the browser of connections.
    more_tabs = [context.new_page() for _ in range(3)]
    for tab in more_tabs:
        tab.goto("/chat")
    expect(tab1.locator("#banner")).to_contain_text("open in too many tabs")
    expect(tab2.locator("#banner")).to_be_hidden()


def test_markup_in_a_message_is_shown_as_text(web: Web, names: Names) -> None:
    mallory, victim = names("mallory"), names("victim")
    payload = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>b</b>'
    victim_page = web.page()
    web.signup(victim_page, victim)
    web.open_chat(victim_page, mallory)

    mallory_page = web.page()
    web.signup(mallory_page, mallory)
    web.open_chat(mallory_page, victim)
    web.reply(mallory_page, payload)

    for page in (victim_page, mallory_page):  # live (script-rendered) on both sides
        expect(page.locator("#messages .msg .body")).to_have_text([payload])
    victim_page.reload()  # and server-rendered
    expect(victim_page.locator("#messages .msg .body")).to_have_text([payload])
    expect(victim_page.locator(f'#conversations li[data-peer="{mallory}"] .preview')).to_have_text(
        payload
    )
    for page in (victim_page, mallory_page):
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#messages script, #messages img, #messages b").count() == 0


def test_delete_account_signs_out_everywhere_and_frees_the_name(web: Web, names: Names) -> None:
    gus = names("gus")
    page = web.page()
    web.signup(page, gus)
    other_device = web.page()
    web.login(other_device, gus)

    page.click("nav >> text=Account")
    page.click("text=Delete this account")
    page.fill("input[name=confirm]", "not my name")
    page.fill("#delete-account input[name=password]", PASSWORD)
    page.click("button.danger")
    expect(page.locator(".flash.error")).to_have_text("Type your username exactly to confirm.")
    expect(page.locator(".me")).to_have_text(gus)  # still signed in

    page.click("text=Delete this account")
    page.fill("input[name=confirm]", gus)
    page.fill("#delete-account input[name=password]", "not my password")
    page.click("button.danger")
    expect(page.locator(".flash.error")).to_contain_text("The account is not deleted: wrong")
    expect(page.locator(".me")).to_have_text(gus)  # still signed in

    page.click("text=Delete this account")
    page.fill("input[name=confirm]", gus)
    page.fill("#delete-account input[name=password]", PASSWORD)
    page.click("button.danger")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".flash")).to_contain_text(f"The account {gus} was deleted")
    page.goto("/chat")
    expect(page).to_have_url(re.compile(r"/login$"))

    # The other device is told live (a banner, for a second) and sent to the login page,
    # which says why.
    expect(other_device).to_have_url(re.compile(r"/login$"))
    expect(other_device.locator(".flash")).to_contain_text("You were signed out")
    expect(other_device.locator(".flash")).to_contain_text("deleted")

    newcomer = web.page()
    web.signup(newcomer, gus)  # the name is free again
    expect(newcomer.locator(".flash")).to_contain_text("Your account is ready")


def test_a_post_without_the_csrf_token_is_refused(web: Web, names: Names) -> None:
    hana, ivan = names("hana"), names("ivan")
    ivan_page = web.page()
    web.signup(ivan_page, ivan)
    web.open_chat(ivan_page, hana)

    context = web.context()
    hana_page = context.new_page()
    web.signup(hana_page, hana)
    token = hana_page.locator("body").get_attribute("data-csrf")
    assert token

    forged = {"to": ivan, "body": "forged"}
    assert context.request.post("/send", form=forged).status == 400
    assert context.request.post("/send", form={**forged, "csrf": "guess"}).status == 400
    cross_site = context.request.post(
        "/send", form={**forged, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status == 400
    assert context.request.post("/logout", form={}).status == 400
    assert context.request.post("/account/delete", form={"confirm": hana}).status == 400

    # Hana is still signed in, and Ivan receives only what she really sends (in order, Rule 13,
    # so a forged message that got through would show up first).
    web.open_chat(hana_page, ivan)
    web.reply(hana_page, "genuine")
    expect(ivan_page.locator("#messages .msg .body")).to_have_text(["genuine"])


def test_write_to_many_from_the_people_search(web: Web, names: Names) -> None:
    jo, kim, lee = names("jo"), names("kim"), names("lee")
    pages = {}
    for name in (kim, lee, jo):
        pages[name] = web.page()
        web.signup(pages[name], name)
    page = pages[jo]
    page.click("nav >> text=People")
    page.fill("input[name=pattern]", f"*_{names.tag}")
    page.click("form.search button")
    expect(page.locator("#people .name")).to_have_text(sorted([jo, kim, lee]))
    page.check(f'#people input[value="{kim}"]')
    page.check(f'#people input[value="{lee}"]')
    page.click("text=Write to selected")
    to = page.locator("input[name=to]")
    expect(to).to_have_value(f"{kim}, {lee}")
    to.fill(f"{kim}, {lee}, {names('ghost')}")
    page.fill("textarea[name=body]", "meeting at 3")
    page.click("form.compose button")

    expect(page.locator(".flash.error")).to_have_text(
        f"Not delivered, no such user: {names('ghost')}"
    )
    expect(page.locator("#messages .msg.out .to")).to_have_text([f"to {kim}, {lee}"])
    # Each recipient sees one group conversation with the sender and the other recipient.
    for name, other in ((kim, lee), (lee, kim)):
        row = pages[name].locator(f'#conversations li[data-peer="{",".join(sorted([jo, other]))}"]')
        expect(row.locator(".badge")).to_have_text("1")
        expect(row.locator(".preview")).to_have_text("meeting at 3")


def test_people_search_wildcards_and_paging(
    web: Web, names: Names, gateway: GatewayProcess
) -> None:
    if gateway.server is None:
        pytest.skip("accounts are created over the wire; the loopback gateway has no wire")
    tag = names.tag
    accounts = [f"pp{tag}_{i:02d}" for i in range(22)]
    # Playwright's sync API runs an event loop on this thread: use the client from another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _create_accounts(gateway, accounts)).result(60)

    page = web.page()
    web.signup(page, names("searcher"))
    page.goto(f"/people?pattern=pp{tag}_*")
    expect(page.locator("#people .name")).to_have_text(accounts[:20])
    page.click("a[rel=next]")
    expect(page.locator("#people .name")).to_have_text(accounts[20:])
    expect(page.locator("a[rel=next]")).to_have_count(0)
    page.click("text=First page")
    expect(page.locator("#people .name")).to_have_count(20)

    page.fill("input[name=pattern]", f"pp{tag}_?1")
    page.click("form.search button")
    expect(page.locator("#people .name")).to_have_text([f"pp{tag}_{i}" for i in ("01", "11", "21")])
    page.fill("input[name=pattern]", f"pp{tag}_[01]*")  # '[' is literal, not a class
    page.click("form.search button")
    expect(page.locator(".empty")).to_contain_text("No usernames match")


async def _create_accounts(gateway: GatewayProcess, usernames: list[str]) -> None:
    """Sign the accounts up through the chat client interface (faster than the browser)."""
    assert gateway.server is not None
    module = registry.get(gateway.transport)
    for name in usernames:
        client = module.open_client(gateway.server)
        await client.connect()
        try:
            await client.signup(name, PASSWORD)
        finally:
            await client.close()


def test_a_three_person_conversation_renders_for_the_readme(
    web: Web, gateway: GatewayProcess, names: Names, tmp_path: Path
) -> None:
    """A conversation and an unread one; the screenshot goes to docs/screenshot.png when
    WIRECHAT_SCREENSHOT=1 (``make screenshot``), else to a temporary file."""
    # Plain names read better in the README's picture; elsewhere keep them unique per run.
    plain = os.environ.get("WIRECHAT_SCREENSHOT") == "1" and gateway.transport == "custom"
    ada, grace, alan = ("ada", "grace", "alan") if plain else map(names, ("ada", "grace", "alan"))
    ada_page, grace_page, alan_page = web.page(), web.page(), web.page()
    for page, name in ((ada_page, ada), (grace_page, grace), (alan_page, alan)):
        web.signup(page, name)
    web.open_chat(grace_page, ada)
    web.open_chat(ada_page, grace)
    web.reply(grace_page, "Has the bench finished?")
    web.reply(ada_page, "Yes: the report is in reports/REPORT.md, bytes and latency per transport.")
    web.reply(grace_page, "Send me the plots, please.\nThe latency ones too.")
    web.open_chat(alan_page, ada)
    web.reply(alan_page, "Lunch at noon?")
    expect(ada_page.locator("#messages .msg .body")).to_have_count(3)
    expect(ada_page.locator(f'#conversations li[data-peer="{alan}"] .badge')).to_have_text("1")
    target = SCREENSHOT if plain else tmp_path / "screenshot.png"
    target.parent.mkdir(exist_ok=True)
    ada_page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
