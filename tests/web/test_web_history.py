"""History in the web UI (issue 9, Rules 19-25), in a real headless Chromium.

Two devices of one person and a second person, as a new user would try it: history comes from
the chat server, so it survives a logout, a second device and a gateway restart; unread counts
are the server's and agree on every device; a message deleted for everyone disappears from
every open page; a group looks like a group and a reply goes to all; a deleted account's
messages are marked, and a new owner of the name never continues the old thread.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect

from tests.web.helpers import PASSWORD, GatewayProcess, Web

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from tests.conftest import Names

pytestmark = pytest.mark.web


def row(page: Page, peer: str):
    return page.locator(f'#conversations li[data-peer="{peer}"]')


def test_two_devices_share_history_unread_counts_and_sent_copies(web: Web, names: Names) -> None:
    ann, ben = names("ann"), names("ben")
    phone, laptop, ben_page = web.page(), web.page(), web.page()
    web.signup(phone, ann)
    web.login(laptop, ann)
    web.signup(ben_page, ben)

    web.open_chat(ben_page, ann)
    web.reply(ben_page, "are you there?")
    web.reply(ben_page, "it's about lunch")
    for device in (phone, laptop):  # both devices count them, live
        expect(row(device, ben).locator(".badge")).to_have_text("2")
        expect(device.locator("#unread-total")).to_have_text("2")

    # Reading on the phone marks them read on the server; the laptop's count follows.
    row(phone, ben).locator("a").click()
    expect(phone.locator("#messages .msg.in .body")).to_have_text(
        ["are you there?", "it's about lunch"]
    )
    expect(laptop.locator("#unread-total")).to_have_text("")
    expect(row(laptop, ben).locator(".badge")).to_have_text("")

    # What the phone sends shows on the laptop too ("sent by you"), live.
    web.open_chat(laptop, ben)
    web.reply(phone, "yes, at noon")
    expect(laptop.locator("#messages .msg.out .body")).to_have_text(["yes, at noon"])
    expect(laptop.locator("#messages .msg.out .who")).to_have_text(["You"])
    expect(ben_page.locator("#messages .msg.in .body")).to_have_text(["yes, at noon"])

    # History is the server's: log out and back in, and it is all there, with a day
    # separator and the time in the one shared format.
    web.logout(phone)
    web.login(phone, ann)
    web.open_chat(phone, ben)
    expect(phone.locator("#messages .msg .body")).to_have_text(
        ["are you there?", "it's about lunch", "yes, at noon"]
    )
    expect(phone.locator("#messages li.day")).to_have_text(["Today"])
    expect(phone.locator("#messages .msg time").first).to_have_text(re.compile(r"^\d\d:\d\d$"))
    stamp = phone.locator("#messages .msg time").first.get_attribute("title") or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", stamp), stamp
    expect(row(phone, ben).locator(".badge")).to_have_text("")


def test_history_and_unread_counts_survive_a_gateway_restart(
    browser: Browser, gateway: GatewayProcess, names: Names, tmp_path: Path
) -> None:
    # A gateway of its own, restarted mid-test (over loopback its chat server lives in it,
    # so it keeps its database in a file).
    db = tmp_path / "chat.db" if gateway.server is None else None
    process = GatewayProcess(gateway.transport, gateway.server, db=db).start()
    web = Web(browser, process)
    try:
        cat, dan = names("cat"), names("dan")
        cat_page, dan_page = web.page(), web.page()
        web.signup(cat_page, cat)
        web.signup(dan_page, dan)
        web.open_chat(cat_page, dan)
        web.reply(cat_page, "before the restart")
        web.reply(cat_page, "still unread")
        expect(row(dan_page, cat).locator(".badge")).to_have_text("2")

        process.stop()
        process.start()  # a new port, and every browser session is signed out
        web.url = process.url
        cat_page, dan_page = web.page(), web.page()
        web.login(cat_page, cat)
        web.login(dan_page, dan)
        expect(row(dan_page, cat).locator(".badge")).to_have_text("2")
        web.open_chat(cat_page, dan)
        expect(cat_page.locator("#messages .msg.out .body")).to_have_text(
            ["before the restart", "still unread"]
        )
    finally:
        web.close()
        process.stop()


def test_load_older_pages_back_through_the_servers_history(web: Web, names: Names) -> None:
    eve, fay = names("eve"), names("fay")
    fay_page, eve_page = web.page(), web.page()
    web.signup(fay_page, fay)
    web.signup(eve_page, eve)
    for i in range(1, 61):
        web.send(eve_page, fay, f"note {i}")
    web.open_chat(fay_page, eve)
    bodies = fay_page.locator("#messages .msg .body")
    expect(bodies).to_have_count(50)  # one page, the newest
    expect(bodies.first).to_have_text("note 11")
    expect(bodies.last).to_have_text("note 60")
    fay_page.click("#load-older")
    expect(bodies).to_have_count(60)
    expect(bodies.first).to_have_text("note 1")
    expect(fay_page.locator("#load-older")).to_have_count(0)  # nothing older
    expect(fay_page.locator("#messages li.day")).to_have_count(1)  # one day, one separator
    # Reading the thread read all of it: the sidebar agrees.
    expect(row(fay_page, eve).locator(".badge")).to_have_text("")


def test_delete_for_everyone_disappears_from_the_other_live_page(web: Web, names: Names) -> None:
    gil, hal = names("gil"), names("hal")
    gil_page, hal_page = web.page(), web.page()
    web.signup(gil_page, gil)
    web.signup(hal_page, hal)
    web.open_chat(gil_page, hal)
    web.open_chat(hal_page, gil)
    web.reply(gil_page, "keep this")
    web.reply(gil_page, "sent by mistake")
    web.reply(hal_page, "what?")
    expect(hal_page.locator("#messages .msg .body")).to_have_text(
        ["keep this", "sent by mistake", "what?"]
    )

    # Only your own messages offer "for everyone".
    theirs = hal_page.locator("#messages .msg", has_text="sent by mistake")
    theirs.locator(".actions summary").click()
    expect(theirs.locator("button[value=everyone]")).to_have_count(0)
    theirs.locator(".actions summary").click()

    mine = gil_page.locator("#messages .msg", has_text="sent by mistake")
    mine.locator(".actions summary").click()
    mine.locator("button[value=everyone]").click()
    for page in (gil_page, hal_page):  # gone from both live pages, no reload
        expect(page.locator("#messages .msg .body")).to_have_text(["keep this", "what?"])

    # "Delete for me" leaves the other person's copy alone.
    reply = hal_page.locator("#messages .msg", has_text="what?")
    reply.locator(".actions summary").click()
    reply.locator("button[value=me]").click()
    expect(hal_page.locator("#messages .msg .body")).to_have_text(["keep this"])
    hal_page.reload()
    expect(hal_page.locator("#messages .msg .body")).to_have_text(["keep this"])
    gil_page.reload()
    expect(gil_page.locator("#messages .msg .body")).to_have_text(["keep this", "what?"])


def test_a_group_shows_its_participants_and_a_reply_goes_to_all(web: Web, names: Names) -> None:
    ida, jon, kay = names("ida"), names("jon"), names("kay")
    pages = {name: web.page() for name in (ida, jon, kay)}
    for name, page in pages.items():
        web.signup(page, name)
    web.send(pages[ida], f"{jon},{kay}", "team lunch?")

    group_of_jon = ",".join(sorted([ida, kay]))
    jon_row = row(pages[jon], group_of_jon)
    expect(jon_row.locator(".group-mark")).to_have_text("group")
    expect(jon_row.locator(".badge")).to_have_text("1")
    jon_row.locator("a").click()
    expect(pages[jon].locator("#participants")).to_have_text(
        f"Group: you, {', '.join(sorted([ida, kay]))}"
    )
    expect(pages[jon].locator("#messages .msg.in .who")).to_have_text([ida])

    row(pages[kay], ",".join(sorted([ida, jon]))).locator("a").click()
    web.reply(pages[jon], "count me in")  # reply to all
    expect(pages[kay].locator("#messages .msg .body")).to_have_text(["team lunch?", "count me in"])
    pages[ida].goto(f"/chat?peer={jon},{kay}")
    expect(pages[ida].locator("#messages .msg .body")).to_have_text(["team lunch?", "count me in"])
    expect(pages[ida].locator("#messages .msg.out .to")).to_have_text(
        [f"to {', '.join(sorted([jon, kay]))}"]
    )


def test_a_deleted_accounts_messages_are_marked_and_a_new_owner_is_someone_else(
    web: Web, names: Names
) -> None:
    lea, max_ = names("lea"), names("max")
    lea_page, max_page = web.page(), web.page()
    web.signup(lea_page, lea)
    web.signup(max_page, max_)
    web.open_chat(max_page, lea)
    web.open_chat(lea_page, max_)
    web.reply(max_page, "bye for now")
    expect(lea_page.locator("#messages .msg.in .body")).to_have_text(["bye for now"])

    max_page.click("nav >> text=Account")
    max_page.click("text=Delete this account")
    max_page.fill("input[name=confirm]", max_)
    max_page.fill("#delete-account input[name=password]", PASSWORD)
    max_page.click("button.danger")
    expect(max_page).to_have_url(re.compile(r"/login$"))

    lea_page.goto("/chat")
    old = lea_page.locator("#conversations li", has_text="(deleted account)")
    expect(old.locator(".peer-name")).to_have_text(f"{max_} (deleted account)")
    old.locator("a").click()
    expect(lea_page.locator("#messages .msg.in .who")).to_have_text([f"{max_} (deleted account)"])
    expect(lea_page.locator(".notice.identity")).to_contain_text("deleted")
    expect(lea_page.locator("#reply")).to_have_count(0)  # no reply to a name now free

    # Someone new takes the name: writing to it is a new conversation, and the page says so.
    newcomer = web.page()
    web.signup(newcomer, max_)
    web.open_chat(lea_page, max_)
    expect(lea_page.locator("#messages .msg")).to_have_count(0)
    expect(lea_page.locator(".notice.identity")).to_contain_text("new account")
    web.reply(lea_page, "hello, new person")
    expect(newcomer.locator(f'#conversations li[data-peer="{lea}"] .preview')).to_have_text(
        "hello, new person"
    )
    newcomer.locator(f'#conversations li[data-peer="{lea}"] a').click()
    expect(newcomer.locator("#messages .msg .body")).to_have_text(["hello, new person"])
