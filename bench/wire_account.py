"""The account-security operations (issue 13) in the bytes-on-the-wire bench: resume, change
password and the push that ends the user's other sessions.

``bench/wire.py`` runs :func:`account_calls` with its run (``_Run``) after the history rows;
its module docstring defines the method, attribution, phases and row keys, which hold here
unchanged: every call is measured with ``_Run.measured`` (snapshots, settle, the kernel
cross-check), whole frames attributed to the call that caused them.

The operations (``op``)
    resume            a login by resume token instead of the password, on an anonymous
                      connection: the request (the token) and the reply (LOGGED_IN or its
                      equivalent: the same token back, the pending count, the username; on
                      gRPC unary also the Subscribe stream its client opens to get pushes, as
                      for ``login``). The account has nothing pending, so nothing is pushed.
    change_password   on the caller's connection: the request (old and new password of 16
                      bytes each, end_other_sessions true) and the reply (a new resume token,
                      sessions_ended = 1).
    password_changed  on the connection of the user's one other live session: the notice that
                      ends it (PASSWORD_CHANGED) and whatever that end writes on the
                      connection until it is quiet (the WebSocket close handshake, the end of
                      gRPC's push stream), as ``deliver`` is the push of a ``send``.

Fixed sizes (so the rows are the same in every call and every run)
    Resume tokens are ``secrets.token_urlsafe(32)``: always 43 characters (core.limits
    RESUME_TOKEN_BYTES = 32 random bytes, base64url without padding); gRPC's session tokens
    22. The accounts are ``wc<tag>k000`` (resume) and ``wc<tag>p000`` (password change), 12
    characters like every bench name; the passwords alternate between PASSWORD and
    NEW_PASSWORD, 16 bytes each. Nothing is pending for either account.

The scenario
    R (resumer), P (password changer) and O (the changer's other session) connect through
    counting relays; an issuer connected straight to the server (no relay, never measured)
    logs in to ``k000`` before each resume, so each resume has a live token (a logout
    revokes the session's token: R's logout after each resume revokes the one it used).
    R's resume and P's change are measured together, as one operation: they are on
    different connections and accounts, and each connection's bytes are filed under its own
    row, so neither can take the other's frames (it saves a quiet period per call).

    first   R's resume right after its connect, P's change right after its connect and
            login (O connected and logged in): one pass, the first call of each on the
            connections the steady rows then use, so one sample each.
    steady  after WARM_UP_REQUESTS unmeasured requests on R and on P (request ids past
            127, as for the other steady rows; WARM_UP_CALLS of them resumes and changes),
            ``STEADY_CALLS`` calls (fewer if ``WirePlan.repeats`` is smaller). Before each,
            unmeasured (with the warm-up before the first): R logs out, the issuer logs in
            again, a new O connects and logs in. O is a new connection each time (its
            session ends), so ``password_changed`` is always on a connection that made only
            its connect and login.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bench.payloads import PASSWORD
from bench.wire_relay import CountingRelay, MeasurementError
from bench.wire_rows import Conn
from core.client import ChatClient
from core.types import CloseReason, LoginResult, PasswordChanged

if TYPE_CHECKING:
    from bench.wire import _Run

#: The password the change alternates with (16 bytes, like PASSWORD; not a common one).
NEW_PASSWORD = "wirechat-bench-2"
#: Measured calls of each steady row at most (fewer if ``WirePlan.repeats`` is smaller):
#: each costs two quiet periods of the relays (~0.1 s with the work between) and three
#: password hashes, for every transport, and the figures are the same in every call (the
#: full plan's byte-check rounds measure them again), so three show it.
STEADY_CALLS = 3
#: Unmeasured requests on R and on P before the steady rows: request ids past 127.
WARM_UP_REQUESTS = 128
#: Of them, resumes on R and password changes on P: gRPC writes each call's deadline
#: (grpc-timeout) as its clock says (``30S``, ``29999m``, ...), a value HPACK sends as a
#: literal until it has seen it; after a few calls of the method the values it writes are
#: indexed, and the steady calls are all the same.
WARM_UP_CALLS = 3
#: Warm-up requests in flight at once on one connection (only their ids matter).
BATCH = 32
#: Resume tokens are ``secrets.token_urlsafe(32)``: 32 bytes, 43 characters of base64url.
TOKEN_CHARS = 43
ACCOUNT_OPS = ("resume", "change_password", "password_changed")
#: Seconds to wait for the other session's end after a password change.
END_TIMEOUT = 30.0


async def warm_up_requests(client: ChatClient, count: int) -> None:
    """``count`` cheap requests (an empty list of conversations), BATCH at a time (also
    ``bench/capture_account.py``'s warm-up)."""
    for start in range(0, count, BATCH):
        batch = min(BATCH, count - start)
        await asyncio.gather(*(client.list_conversations() for _ in range(batch)))


async def session_end(client: ChatClient) -> None:
    """Wait until the server ends ``client``'s session for a password change (anything else
    is a measurement error: the row would be of something else)."""
    async with asyncio.timeout(END_TIMEOUT):
        async for event in client.events():
            raise MeasurementError(f"the other session got {event!r}, not the end of its session")
    if client.closed_reason != CloseReason.PASSWORD_CHANGED.value:
        raise MeasurementError(
            f"the other session ended with {client.closed_reason!r}, not "
            f"{CloseReason.PASSWORD_CHANGED.value!r}"
        )


class _Account:
    """One run's resume and password-change scenario (module docstring)."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.resumer, self.changer = run.name("k", 0), run.name("p", 0)
        self.password = PASSWORD  # the changer's current password
        self.issuer: ChatClient | None = None
        self.token = ""

    async def open(self) -> Conn:
        """A relayed client, not yet connected (its connect is unmeasured work)."""
        run = self.run
        relay = await CountingRelay(run.address, run.factory).start()
        conn = Conn(relay, run.module.open_client(relay.address, auto_ack=False))
        conn.mark = relay.snapshot()
        run.conns.append(conn)
        return conn

    async def drop(self, conn: Conn) -> None:
        """Close a client without measuring it (its bytes are no row's)."""
        await conn.client.close()
        conn.closed = True
        self.run.conns.remove(conn)
        await self.run.release(conn)

    async def prepare(self) -> None:
        """The two accounts, made by the issuer (a direct connection, which stays open)."""
        run = self.run
        self.issuer = issuer = run.module.open_client(run.address, auto_ack=False)
        await issuer.connect()
        for name in (self.resumer, self.changer):
            await issuer.signup(name, PASSWORD)
            run.accounts.append(name)
            await issuer.logout()

    async def issue(self) -> None:
        """A fresh live token for ``resumer`` (the issuer's new login's)."""
        assert self.issuer is not None
        if self.issuer.logged_in:
            await self.issuer.logout()
        await self.issuer.login(self.resumer, PASSWORD)
        self.token = self.issuer.resume_token
        if len(self.token) != TOKEN_CHARS:
            raise MeasurementError(f"a resume token of {len(self.token)} characters, not 43")

    async def log_in_other(self, conn: Conn) -> None:
        """Connect O and log it in to the changer's account."""
        await conn.client.connect()
        await conn.client.login(self.changer, self.password)

    def next_password(self) -> tuple[str, str]:
        """(old, new): the changer's password now, and the one to change it to."""
        old = self.password
        return old, NEW_PASSWORD if old == PASSWORD else PASSWORD

    def changed(self, new: str) -> None:
        self.password = self.run.passwords[self.changer] = new

    async def change_alone(self, changer: Conn) -> None:
        """An unmeasured change while the user has no other session (the warm-up)."""
        old, new = self.next_password()
        await changer.client.change_password(old, new)
        self.changed(new)

    async def measure(self, resumer: Conn, changer: Conn, other: Conn, phase: str) -> None:
        """R's resume and P's change (with O's end), measured as one operation."""
        token, (old, new) = self.token, self.next_password()

        async def calls() -> tuple[LoginResult, PasswordChanged, None]:
            return await asyncio.gather(
                resumer.client.resume(token),
                changer.client.change_password(old, new),
                session_end(other.client),
            )

        (resumed, reply, _), calls_made = await self.run.measured([resumer, changer, other], calls)
        self.changed(new)
        if resumed.resume_token != token or resumed.pending:
            raise MeasurementError(f"resume gave {resumed!r}: another token or pending messages")
        if reply.sessions_ended != 1 or len(reply.resume_token) != TOKEN_CHARS:
            raise MeasurementError(f"change_password gave {reply!r}")
        for op, call in zip(ACCOUNT_OPS, calls_made, strict=True):
            self.run.keep(op, phase, call)
        await self.drop(other)

    async def close(self) -> None:
        if self.issuer is not None:
            await self.issuer.close()


async def account_calls(run: _Run) -> None:
    """The ``first`` and ``steady`` rows of resume, change_password and password_changed."""
    account = _Account(run)
    await account.prepare()
    try:
        await _measure(run, account)
    finally:
        await account.close()


async def _measure(run: _Run, account: _Account) -> None:
    resumer, changer, other = await account.open(), await account.open(), await account.open()

    async def set_up() -> None:
        await asyncio.gather(resumer.client.connect(), account.issue(), account.log_in_other(other))
        await changer.client.connect()
        await changer.client.login(account.changer, account.password)

    await run.unmeasured([resumer, changer, other], set_up)
    await account.measure(resumer, changer, other, "first")

    async def warm_resumer() -> None:
        await warm_up_requests(resumer.client, WARM_UP_REQUESTS - 1 - 2 * WARM_UP_CALLS)
        for _ in range(WARM_UP_CALLS):
            await resumer.client.logout()  # revokes the token it resumed with
            await account.issue()
            await resumer.client.resume(account.token)

    async def warm_changer() -> None:
        await warm_up_requests(changer.client, WARM_UP_REQUESTS - 2 - WARM_UP_CALLS)
        for _ in range(WARM_UP_CALLS):
            await account.change_alone(changer)

    rows: list[tuple[str, dict[str, Any]]] = [(op, {}) for op in ACCOUNT_OPS]
    made = 0
    while not run.enough(made, min(run.plan.repeats, STEADY_CALLS), *rows):
        other = await account.open()

        async def between(other: Conn = other, warm: bool = not made) -> None:
            if warm:  # before the first steady call (in the same quiet period)
                await asyncio.gather(warm_resumer(), warm_changer())
            await resumer.client.logout()  # revokes the token it resumed with
            await asyncio.gather(account.issue(), account.log_in_other(other))

        await run.unmeasured([resumer, changer, other], between)
        await account.measure(resumer, changer, other, "steady")
        made += 1
    await account.drop(resumer)
    await account.drop(changer)


__all__ = [
    "ACCOUNT_OPS",
    "NEW_PASSWORD",
    "STEADY_CALLS",
    "TOKEN_CHARS",
    "WARM_UP_CALLS",
    "WARM_UP_REQUESTS",
    "account_calls",
    "session_end",
    "warm_up_requests",
]
