"""What a line typed at the console means: pure parsing, no terminal and no network.

A line that starts with ``/`` is a command; any other line is a message to the current
conversation (the peers of the last ``/msg``, ``/to``, ``/reply`` or ``/history``).
``//text`` sends the literal line ``/text``. :func:`parse_line` turns a line into one of the
small frozen dataclasses below, or raises :class:`CommandError` with a sentence for the person
who typed it. The console loop (``ui.console``) only executes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class CommandError(ValueError):
    """The line is not a valid command; ``str(err)`` says why and how to type it."""


# -- what a line can mean ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Nothing:
    """An empty line."""


@dataclass(frozen=True, slots=True)
class Say:
    """A plain line: send ``body`` to the current conversation."""

    body: str


@dataclass(frozen=True, slots=True)
class Send:
    """``/msg NAMES TEXT``: send to these people and make them the current conversation."""

    recipients: tuple[str, ...]
    body: str


@dataclass(frozen=True, slots=True)
class Reply:
    """``/reply TEXT``: answer everyone in the conversation that last wrote to us."""

    body: str


@dataclass(frozen=True, slots=True)
class History:
    """``/history [NAMES|#ID] [N]``: the last N messages of a conversation (default: the
    current one); ``/more`` goes further back."""

    recipients: tuple[str, ...] = ()
    conversation_id: int = 0
    count: int = 0  # 0: the default


@dataclass(frozen=True, slots=True)
class Conversations:
    """``/conversations``: the conversations, most recent first, with unread counts."""


@dataclass(frozen=True, slots=True)
class DeleteMessages:
    """``/delete ID... [--everyone]``: delete messages from my history (or everyone's)."""

    message_ids: tuple[int, ...]
    for_everyone: bool = False


@dataclass(frozen=True, slots=True)
class Talk:
    """``/to NAMES``: make these people the current conversation; ``/to`` alone shows it."""

    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListAccounts:
    """``/list [PATTERN]``: the first page of accounts matching a glob."""

    pattern: str


@dataclass(frozen=True, slots=True)
class MoreAccounts:
    """``/more``: the next page of the last listing (/list, /conversations or /history)."""


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Delete:
    """``/delete-account``: delete the account (the console asks to confirm, and for the
    password)."""


@dataclass(frozen=True, slots=True)
class ChangePassword:
    """``/passwd``: change the password (the console asks for the old and the new one, and
    whether to sign out the account's other sessions)."""


@dataclass(frozen=True, slots=True)
class Quit:
    pass


Command = (
    Nothing
    | Say
    | Send
    | Reply
    | History
    | Conversations
    | DeleteMessages
    | Talk
    | ListAccounts
    | MoreAccounts
    | Help
    | Logout
    | Delete
    | ChangePassword
    | Quit
)


# -- the command table: the parser and /help both read it ---------------------------------------
@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str  # without the slash
    usage: str  # as shown in /help
    summary: str
    aliases: tuple[str, ...] = ()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "msg", "/msg NAMES TEXT", "send TEXT to NAMES (alice,bob); they become the chat", ("m",)
    ),
    CommandSpec("to", "/to [NAMES]", "plain lines go to NAMES from now on; /to alone shows who"),
    CommandSpec(
        "reply", "/reply TEXT", "answer everyone in the conversation that wrote last", ("r",)
    ),
    CommandSpec(
        "history",
        "/history [NAMES|#ID] [N]",
        "the last N messages (default 20) with NAMES, conversation #ID or the current one",
        ("hist",),
    ),
    CommandSpec(
        "conversations",
        "/conversations",
        "your conversations, newest first, with #IDs and unread counts",
        ("convs", "c"),
    ),
    CommandSpec(
        "delete",
        "/delete ID... [--everyone]",
        "delete messages (#IDs as /history shows them) from your history; "
        "--everyone: from everyone's (your own messages only)",
    ),
    CommandSpec("list", "/list [PATTERN]", "list accounts; * and ? are wildcards (default *)"),
    CommandSpec("more", "/more", "the next page of the last /list, /conversations or /history"),
    CommandSpec("logout", "/logout", "log out and go back to the login prompt"),
    CommandSpec(
        "passwd",
        "/passwd",
        "change your password (asks for the old and the new one); can sign out your other devices",
        ("password",),
    ),
    CommandSpec(
        "delete-account",
        "/delete-account",
        "delete your account for good (asks you to confirm, with your password)",
    ),
    CommandSpec("help", "/help", "this list", ("h", "?")),
    CommandSpec("quit", "/quit", "leave (Ctrl-D and Ctrl-C too)", ("exit", "q")),
)

_BY_NAME: dict[str, CommandSpec] = {
    alias: spec for spec in COMMANDS for alias in (spec.name, *spec.aliases)
}

#: Every word that starts a command, with its slash: for completion in the prompt.
COMMAND_WORDS: tuple[str, ...] = tuple(f"/{spec.name}" for spec in COMMANDS)


def help_text() -> str:
    """The text /help prints: every command, then how plain lines work."""
    width = max(len(spec.usage) for spec in COMMANDS) + 2
    lines = ["Commands:"]
    for spec in COMMANDS:
        aliases = f"  [{' '.join('/' + a for a in spec.aliases)}]" if spec.aliases else ""
        lines.append(f"  {spec.usage:<{width}}{spec.summary}{aliases}")
    lines.append(f"  {'TEXT':<{width}}a line without a leading / goes to the current conversation")
    lines.append(f"  {'//TEXT':<{width}}sends /TEXT (a message that starts with a slash)")
    return "\n".join(lines)


def parse_recipients(text: str) -> tuple[str, ...]:
    """``alice,bob,alice`` -> ``("alice", "bob")``: comma-separated, empty parts and repeats
    dropped, order kept. The server decides who exists; this only splits."""
    names = (part.strip() for part in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def parse_line(line: str) -> Command:
    """What the person meant by ``line`` (no trailing newline); raises CommandError."""
    if not line.strip():
        return Nothing()
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    word, _, rest = line[1:].partition(" ")
    spec = _BY_NAME.get(word.lower())
    if spec is None:
        raise CommandError(f"Unknown command /{word}; /help lists the commands")
    return _PARSERS[spec.name](spec, rest.strip())


def _usage(spec: CommandSpec, problem: str) -> CommandError:
    return CommandError(f"{problem[:1].upper()}{problem[1:]}; usage: {spec.usage}")


def _parse_msg(spec: CommandSpec, rest: str) -> Command:
    names, _, body = rest.partition(" ")
    recipients = parse_recipients(names)
    if not recipients:
        raise _usage(spec, "name who to send to")
    if names.endswith(","):  # "/msg alice, bob hi" would send "bob hi" to alice alone
        raise _usage(spec, "separate names with commas only, no spaces")
    if not body.strip():
        raise _usage(spec, "the message is empty")
    return Send(recipients, body.strip())


def _parse_reply(spec: CommandSpec, rest: str) -> Command:
    if not rest:
        raise _usage(spec, "the message is empty")
    return Reply(rest)


def _parse_to(spec: CommandSpec, rest: str) -> Command:
    if " " in rest:
        raise _usage(spec, "separate names with commas, not spaces")
    return Talk(parse_recipients(rest))


#: Messages /history shows when no N is given, and the most it shows at once.
HISTORY_DEFAULT = 20
HISTORY_MAX = 500


def _parse_history(spec: CommandSpec, rest: str) -> Command:
    words = rest.split()
    if len(words) > 2:
        raise _usage(spec, "give at most a conversation and a number")
    count = 0
    if words and words[-1].isdigit():
        count = int(words.pop())
        if not 1 <= count <= HISTORY_MAX:
            raise _usage(spec, f"show 1 to {HISTORY_MAX} messages")
    if not words:
        return History(count=count)
    target = words[0]
    if target.startswith("#"):
        if not target[1:].isdigit() or int(target[1:]) == 0:
            raise _usage(spec, f"not a conversation number: {target} (/conversations lists them)")
        return History(conversation_id=int(target[1:]), count=count)
    recipients = parse_recipients(target)
    if not recipients:
        raise _usage(spec, "name the conversation")
    return History(recipients=recipients, count=count)


def _parse_delete(spec: CommandSpec, rest: str) -> Command:
    everyone = False
    ids: list[int] = []
    for word in rest.replace(",", " ").split():
        if word in ("--everyone", "-e"):
            everyone = True
            continue
        text = word.removeprefix("#")
        if not text.isdigit() or int(text) == 0:
            raise _usage(
                spec,
                f"not a message id: {word} (/history shows them as #12; "
                "/delete-account deletes your account)",
            )
        ids.append(int(text))
    if not ids:
        raise _usage(spec, "name the messages by their #ID (/delete-account deletes your account)")
    return DeleteMessages(tuple(dict.fromkeys(ids)), everyone)


def _parse_list(spec: CommandSpec, rest: str) -> Command:
    if " " in rest:
        raise _usage(spec, "give one pattern (usernames contain no spaces)")
    return ListAccounts(rest or "*")


_Parser = Callable[[CommandSpec, str], Command]


def _no_arguments(make: Callable[[], Command]) -> _Parser:
    def parse(spec: CommandSpec, rest: str) -> Command:
        if rest:
            raise _usage(spec, f"/{spec.name} takes no arguments")
        return make()

    return parse


_PARSERS: dict[str, _Parser] = {
    "msg": _parse_msg,
    "to": _parse_to,
    "reply": _parse_reply,
    "list": _parse_list,
    "history": _parse_history,
    "conversations": _no_arguments(Conversations),
    "delete": _parse_delete,
    "more": _no_arguments(MoreAccounts),
    "logout": _no_arguments(Logout),
    "delete-account": _no_arguments(Delete),
    "passwd": _no_arguments(ChangePassword),
    "help": _no_arguments(Help),
    "quit": _no_arguments(Quit),
}


def parse_auth_choice(answer: str) -> str | None:
    """The answer to "(s)ignup or (l)ogin?": ``"signup"``, ``"login"``, or None if unclear."""
    word = answer.strip().lower()
    if word in {"s", "signup", "sign up", "register"}:
        return "signup"
    if word in {"l", "login", "log in", "signin", "sign in"}:
        return "login"
    return None


__all__ = [
    "COMMANDS",
    "COMMAND_WORDS",
    "HISTORY_DEFAULT",
    "HISTORY_MAX",
    "ChangePassword",
    "Command",
    "CommandError",
    "CommandSpec",
    "Conversations",
    "Delete",
    "DeleteMessages",
    "Help",
    "History",
    "ListAccounts",
    "Logout",
    "MoreAccounts",
    "Nothing",
    "Quit",
    "Reply",
    "Say",
    "Send",
    "Talk",
    "help_text",
    "parse_auth_choice",
    "parse_line",
    "parse_recipients",
]
