"""Account-name patterns (SQLite GLOB, as ``core.service.glob_to_sqlite`` writes them) turned
into what an index can use: shared by the SQLite and PostgreSQL stores, which both narrow
``list_accounts`` to a range of the username index before matching the whole pattern."""

from __future__ import annotations


def prefix_range(glob: str) -> tuple[str, str | None]:
    """The literal prefix of a SQLite GLOB and the least string above every string that
    starts with it (code point order = SQLite's binary order over UTF-8): an index range.
    ``('', None)`` when the pattern starts with a wildcard. ``[[]`` is a literal '['
    (core.service.glob_to_sqlite); any other '[' starts a class and ends the prefix."""
    prefix: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char in "*?":
            break
        if char == "[":
            if glob.startswith("[[]", i):
                prefix.append("[")
                i += 3
                continue
            break
        prefix.append(char)
        i += 1
    while prefix and ord(prefix[-1]) >= 0x10FFFF:
        prefix.pop()
    if not prefix:
        return "", None
    text = "".join(prefix)
    return text, text[:-1] + chr(ord(text[-1]) + 1)


__all__ = ["prefix_range"]
