"""What a new password must be (issue 13), after NIST SP 800-63B 5.1.1.2 (memorized secrets):

  * at least 8 characters (``limits.MIN_PASSWORD_CHARS``), counted as Unicode code points as
    the guideline asks, and at most ``limits.MAX_PASSWORD_BYTES`` bytes of UTF-8 (Rule 1);
  * not on a list of commonly used passwords (``common_passwords.txt`` beside this module,
    compared ignoring case: "Password1" is as guessable as "password1");
  * no composition rules (no "one digit and one symbol"): the guideline advises against them.

It applies where a password is chosen (signup, change password) and nowhere else: an account
made before the policy still logs in with its short password.
"""

from __future__ import annotations

import functools
from pathlib import Path

from core import limits
from core.errors import LimitExceeded, WeakPassword

COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")

TOO_SHORT = f"a password needs at least {limits.MIN_PASSWORD_CHARS} characters"
TOO_COMMON = "that password is on the list of the most common passwords; choose another"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list, lower-case (read once, about 3,400 entries)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def check_new_password(password: str) -> None:
    """Raise WeakPassword (too short, too common) or LimitExceeded (too long) for a password
    being chosen; return None for an acceptable one."""
    size = len(password.encode("utf-8", "surrogatepass"))
    if size > limits.MAX_PASSWORD_BYTES:
        raise LimitExceeded(
            f"a password is at most {limits.MAX_PASSWORD_BYTES} bytes of UTF-8 (got {size})"
        )
    if len(password) < limits.MIN_PASSWORD_CHARS:
        raise WeakPassword(TOO_SHORT)
    if password.lower() in common_passwords():
        raise WeakPassword(TOO_COMMON)


__all__ = ["COMMON_PASSWORDS_FILE", "TOO_COMMON", "TOO_SHORT", "check_new_password"]
