"""The issue-13 rows of the bytes-on-the-wire bench (bench/wire_account.py): resume,
change_password and the push that ends the user's other session, on every wire transport of
the registry, against a real server process.

Each transport is measured twice (two runs, fresh accounts each, ``parts=("account",)``:
about a second each); the steady rows must be the same in every call and in both runs.
"""

from __future__ import annotations

import asyncio

import pytest

from bench import capture, capture_account
from bench.config import WIRE_QUICK
from bench.wire import account_factory, account_traits, measure_sizes
from bench.wire_account import ACCOUNT_OPS, STEADY_CALLS, TOKEN_CHARS
from transports import registry
from wirechat.launch import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRANSPORTS = list(registry.WIRE_TRANSPORTS)
CATEGORIES = ("payload", "framing", "headers", "control")
#: What must be equal between two runs: the headline, its parts, its frames and its ids.
FIGURES = tuple(f"{d}_{k}" for d in ("c2s", "s2c") for k in ("bytes", *CATEGORIES, "detail"))
FIGURES += ("holds_for",)
PASSWORD_BYTES = 16  # bench.payloads.PASSWORD and wire_account.NEW_PASSWORD


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(TRANSPORTS, tmp_path_factory.mktemp("wire-account") / "db") as process:
        yield process


@pytest.fixture(scope="module")
def runs_of(server):
    cache: dict[str, tuple[list[dict], list[dict]]] = {}

    def runs(transport: str) -> tuple[list[dict], list[dict]]:
        if transport not in cache:
            address = server.addresses[transport]

            def once() -> list[dict]:
                return asyncio.run(
                    measure_sizes(transport, address, WIRE_QUICK, parts=("account",))
                )

            cache[transport] = (once(), once())
        return cache[transport]

    return runs


def find(rows: list[dict], op: str, phase: str) -> dict:
    (row,) = [r for r in rows if (r["op"], r["phase"]) == (op, phase)]
    return row


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_wire_transport_has_the_account_rows(runs_of, transport) -> None:
    for rows in runs_of(transport):
        assert {(r["op"], r["phase"]) for r in rows} == {
            (op, phase) for op in ACCOUNT_OPS for phase in ("first", "steady")
        }
        for row in rows:
            want = 1 if row["phase"] == "first" else min(WIRE_QUICK.repeats, STEADY_CALLS)
            assert row["samples"] == want, row
            for d in ("c2s", "s2c"):
                assert row[f"{d}_bytes"] == sum(row[f"{d}_{c}"] for c in CATEGORIES), row


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_steady_rows_are_the_same_in_every_call_and_in_two_runs(runs_of, transport) -> None:
    first_run, second_run = runs_of(transport)
    connection_kinds, _ = account_traits(account_factory(transport))
    for op in ACCOUNT_OPS:
        one, two = find(first_run, op, "steady"), find(second_run, op, "steady")
        for row in (one, two):
            for d in ("c2s", "s2c"):
                lo, hi = row[f"{d}_range"]
                assert lo == hi, row  # every call the same, no tolerance
                assert not set(row[f"{d}_detail"]) & connection_kinds, row
        assert {k: one[k] for k in FIGURES} == {k: two[k] for k in FIGURES}, op


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_rows_carry_the_token_the_passwords_and_the_end(runs_of, transport) -> None:
    rows, _ = runs_of(transport)
    for phase in ("first", "steady"):
        resume = find(rows, "resume", phase)
        assert resume["c2s_payload"] >= TOKEN_CHARS  # the token out ...
        assert resume["s2c_payload"] >= TOKEN_CHARS  # ... and back
        change = find(rows, "change_password", phase)
        assert change["c2s_payload"] >= 2 * PASSWORD_BYTES  # old and new
        assert change["s2c_payload"] >= TOKEN_CHARS  # the new token
        assert find(rows, "password_changed", phase)["s2c_bytes"] > 0  # the notice


def test_custom_account_frames_match_the_protocol(runs_of) -> None:
    # PROTOCOL.md: a frame is V(P) + P, P = opcode + V(request id) + body; a string is
    # V(len) + bytes. RESUME: token. CHANGE_PASSWORD: old, new, flags u8. PASSWORD_CHANGED:
    # token, sessions_ended v32. LOGGED_IN (v3): pending v32, token, username (12).
    rows, _ = runs_of("custom")
    resume = find(rows, "resume", "steady")
    assert resume["c2s_bytes"] == 1 + (1 + 1 + 1 + TOKEN_CHARS)
    assert resume["s2c_bytes"] == 1 + (1 + 1 + 1 + 1 + TOKEN_CHARS + 1 + 12)
    change = find(rows, "change_password", "steady")
    assert change["c2s_bytes"] == 1 + (1 + 1 + 2 * (1 + PASSWORD_BYTES) + 1)
    assert change["s2c_bytes"] == 1 + (1 + 1 + 1 + TOKEN_CHARS + 1)
    assert find(rows, "password_changed", "steady")["c2s_bytes"] == 0  # a push, no reply


#: Resumes the capture takes (each must be the same).
CAPTURE_CALLS = 10


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_steady_resume_matches_a_packet_capture(server, runs_of, transport) -> None:
    # tcpdump on loopback (or the kernel's counters of the server's sockets), a resumer
    # connected straight to the server: every resume's own bytes equal the bench's row.
    seen = asyncio.run(
        capture_account.steady_resumes(transport, server.addresses[transport], CAPTURE_CALLS)
    )
    rows, _ = runs_of(transport)
    c = capture.comparison(transport, "resume", capture_account.bench_resume(rows), seen)
    assert c.error <= 0.01, (capture.instrument(), c)
    if capture.tcpdump_usable():
        assert c.capture == c.bench and c.same == c.calls, c  # to the byte, every call
