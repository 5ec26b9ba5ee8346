"""What a typed line means to the console (ui.console_commands): pure, no terminal."""

from __future__ import annotations

import re

import pytest

from ui.console_commands import (
    COMMANDS,
    CommandError,
    CommandSpec,
    Conversations,
    Delete,
    DeleteMessages,
    Help,
    History,
    ListAccounts,
    Logout,
    MoreAccounts,
    Nothing,
    Quit,
    Reply,
    Say,
    Send,
    Talk,
    help_text,
    parse_auth_choice,
    parse_line,
    parse_recipients,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("", Nothing()),
        ("   ", Nothing()),
        ("hello there", Say("hello there")),
        ("  indented stays", Say("  indented stays")),
        ("//etc/passwd is a path", Say("/etc/passwd is a path")),
        ("/msg bob hi", Send(("bob",), "hi")),
        ("/msg alice,bob   hi  there ", Send(("alice", "bob"), "hi  there")),
        ("/m bob hi", Send(("bob",), "hi")),
        ("/MSG bob hi", Send(("bob",), "hi")),
        ("/msg bob,bob,,alice x", Send(("bob", "alice"), "x")),
        ("/reply sure", Reply("sure")),
        ("/r sure", Reply("sure")),
        ("/to alice,bob", Talk(("alice", "bob"))),
        ("/to", Talk(())),
        ("/list", ListAccounts("*")),
        ("/list a?c*", ListAccounts("a?c*")),
        ("/more", MoreAccounts()),
        ("/help", Help()),
        ("/?", Help()),
        ("/logout", Logout()),
        ("/delete-account", Delete()),
        ("/delete 12", DeleteMessages((12,))),
        ("/delete #12 13,14 12", DeleteMessages((12, 13, 14))),
        ("/delete 12 --everyone", DeleteMessages((12,), for_everyone=True)),
        ("/delete --everyone #7", DeleteMessages((7,), for_everyone=True)),
        ("/history", History()),
        ("/history 5", History(count=5)),
        ("/history bob", History(recipients=("bob",))),
        ("/history bob,carol 30", History(recipients=("bob", "carol"), count=30)),
        ("/history #42", History(conversation_id=42)),
        ("/hist #42 10", History(conversation_id=42, count=10)),
        ("/conversations", Conversations()),
        ("/c", Conversations()),
        ("/quit", Quit()),
        ("/exit", Quit()),
    ],
)
def test_parse_line(line: str, command: object) -> None:
    assert parse_line(line) == command


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("/nope", "Unknown command /nope; /help lists the commands"),
        ("/msg", "Name who to send to; usage: /msg NAMES TEXT"),
        ("/msg bob", "The message is empty; usage: /msg NAMES TEXT"),
        ("/msg bob    ", "The message is empty"),
        ("/msg alice, bob hi", "Separate names with commas only"),
        ("/msg ,,, hi", "Name who to send to"),
        ("/reply", "The message is empty; usage: /reply TEXT"),
        ("/to alice bob", "Separate names with commas, not spaces"),
        ("/list a b", "Give one pattern"),
        ("/quit now", "/quit takes no arguments; usage: /quit"),
        ("/delete-account alice", "/delete-account takes no arguments"),
        ("/delete", "Name the messages by their #ID (/delete-account deletes your account)"),
        ("/delete alice", "Not a message id: alice"),
        ("/delete --everyone", "Name the messages by their #ID"),
        ("/history #x", "Not a conversation number: #x"),
        ("/history #0", "Not a conversation number: #0"),
        ("/history bob 0", "Show 1 to 500 messages"),
        ("/history bob carol 5", "Give at most a conversation and a number"),
        ("/conversations all", "/conversations takes no arguments"),
    ],
)
def test_bad_lines_say_what_is_wrong_and_how_to_type_it(line: str, complaint: str) -> None:
    with pytest.raises(CommandError, match=re.escape(complaint)):
        parse_line(line)


def test_help_lists_every_command_and_its_aliases() -> None:
    text = help_text()
    for spec in COMMANDS:
        assert spec.usage in text
        for alias in spec.aliases:
            assert f"/{alias}" in text
    assert "//TEXT" in text


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda spec: spec.name)
def test_every_command_in_help_parses_as_shown(spec: CommandSpec) -> None:
    example = spec.usage.replace("[NAMES|#ID] [N]", "bob 5").replace("ID... [--everyone]", "7")
    example = example.replace("[NAMES]", "bob").replace("NAMES", "bob")
    example = example.replace("[PATTERN]", "b*").replace("TEXT", "hello")
    for word in (spec.name, *spec.aliases):
        command = parse_line(example.replace(f"/{spec.name}", f"/{word}", 1))
        assert type(command).__name__ != "Say"


def test_recipients_are_split_on_commas_without_repeats() -> None:
    assert parse_recipients("carol,alice,carol,") == ("carol", "alice")
    assert parse_recipients("") == ()


@pytest.mark.parametrize(
    ("answer", "action"),
    [
        ("s", "signup"),
        (" S ", "signup"),
        ("signup", "signup"),
        ("l", "login"),
        ("Login", "login"),
        ("", None),
        ("x", None),
    ],
)
def test_auth_choice(answer: str, action: str | None) -> None:
    assert parse_auth_choice(answer) == action
