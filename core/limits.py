"""Every limit the chat core enforces, in one place, with the reason for each number.

Both transports read these so that a limit is the same whichever way a client connects
(Rule 17). The custom protocol's frame limit and gRPC's max message size are derived from them.
"""

from __future__ import annotations

import re

# Rule 1. 32 characters covers e-mail-style local parts and every chat handle we know of
# (IRC: 9-30, Slack: 80 display / 21 handle, Discord: 32). The character class keeps names
# safe to print in a terminal and to put in a URL without escaping.
USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
MAX_USERNAME_CHARS = 32

# Rule 1. 256 bytes of UTF-8: long enough for any passphrase, short enough that a hostile
# client cannot make argon2 hash megabytes per attempt.
MAX_PASSWORD_BYTES = 256

# Rule 8. 64 KiB is the ceiling of one chat message (Slack: 40 000 chars, Discord: 4 000,
# IRC: 512 bytes); larger payloads belong in a file transfer, not a chat line.
MAX_BODY_BYTES = 64 * 1024

# Rule 8. A broadcast to a team-sized group; larger fan-out wants a group feature.
MAX_RECIPIENTS = 256

# Rule 7. A glob longer than the longest username plus wildcards has no use.
MAX_PATTERN_CHARS = 64
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

# Rule 11. Ids in one ack request; the client acks in batches far smaller than this.
MAX_ACK_IDS = 1024

# Rule 17. Live deliveries queued for one session that its transport has not yet written.
# A consumer that falls this far behind is disconnected; its messages stay pending in the
# store (only acks remove them), so nothing is lost and it catches up at its next login.
MAX_SESSION_QUEUE = 4096

# Rule 17. The same queue in bytes (message bodies, plus a fixed cost per item for the rest):
# 4096 maximal 64 KiB bodies would pin 256 MiB for one slow reader (8 of them took the server
# to 1.76 GB). 4 MiB is 64 maximal messages or thousands of ordinary ones: far more than a
# connection that is merely busy falls behind, small enough that hundreds of slow readers fit.
MAX_SESSION_QUEUE_BYTES = 4 * 1024 * 1024
# What one queued item costs besides its body: the Delivery object, its names and ids.
QUEUE_ITEM_OVERHEAD = 128

# Rule 12. Pending messages are read from the store in pages of this many at login, so a
# user with a large backlog costs bounded memory.
BACKLOG_PAGE = 256

# Rule 23. Ids in one delete_messages request: a screenful of selected messages, many times over.
MAX_DELETE_IDS = 1024

# Issue 13. A resume token logs a client in again after a dropped connection or a server
# restart without asking for the password. A week covers a laptop closed over a weekend and
# a long trip; beyond that, typing the password again is a fair price for a stolen token's
# bounded life. Logout, account deletion and a password change revoke tokens at once.
RESUME_TOKEN_LIFETIME_S = 7 * 24 * 3600
# 256 bits from the OS's CSPRNG (secrets.token_urlsafe: 43 characters): unguessable, so the
# server keeps only a fast SHA-256 of it (a slow hash protects low-entropy passwords only).
RESUME_TOKEN_BYTES = 32
# The text form's longest length (base64url of RESUME_TOKEN_BYTES, no padding), and what a
# request may carry: anything longer cannot be a token and is refused without a lookup.
MAX_RESUME_TOKEN_CHARS = 64
# Tokens one account may hold at once (each login adds one; the oldest go first). A person's
# devices and browsers, logging in again and again within a token's week, stay far below;
# a script that logs in a million times cannot grow the table past this per account.
MAX_RESUME_TOKENS_PER_ACCOUNT = 256

# Issue 13, NIST SP 800-63B 5.1.1.2: a memorized secret chosen by the user is at least 8
# characters; longer passphrases are welcome up to MAX_PASSWORD_BYTES.
MIN_PASSWORD_CHARS = 8
