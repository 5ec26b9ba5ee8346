"""measure_sizes against a real server process, for every wire transport in the registry.

One quick run per transport (module-scoped: 10-20 s each); the tests then check the rows
against what the protocols say they must be, and the steady send against a packet capture
of a client talking to the server directly (bench/capture.py).
"""

from __future__ import annotations

import asyncio

import pytest

from bench import capture
from bench.config import QUICK_SIZES, WIRE_QUICK
from bench.payloads import make_body, payload_sizes
from bench.wire import account_factory, account_traits, measure_sizes
from bench.wire_account import ACCOUNT_OPS
from bench.wire_history import HISTORY_PAGE
from transports import registry
from wirechat.launch import ServerProcess

pytestmark = pytest.mark.slow

TRANSPORTS = list(registry.WIRE_TRANSPORTS)
CATEGORIES = ("payload", "framing", "headers", "control")
ONCE_PER_CONNECTION = {"connect", "delete_account", "close"}
HISTORY_OPS = {"read_history", "mark_read", "list_conversations", "delete_messages"}
OPS = {"connect", "signup", "login", "list_accounts", "send", "deliver", "ack", "logout",
       "delete_account", "close"} | HISTORY_OPS | set(ACCOUNT_OPS)  # fmt: skip
#: Transports whose payload is exactly one message of payload_sizes(): which encoding.
ENCODED_AS = {"custom": "custom_bytes", "protobuf-tcp": "protobuf_bytes", "grpc": "protobuf_bytes"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(TRANSPORTS, tmp_path_factory.mktemp("wire") / "db") as process:
        yield process


@pytest.fixture(scope="module")
def rows_of(server):
    cache: dict[str, list[dict]] = {}

    def rows(transport: str) -> list[dict]:
        if transport not in cache:
            address = server.addresses[transport]
            cache[transport] = asyncio.run(measure_sizes(transport, address, WIRE_QUICK))
        return cache[transport]

    return rows


def find(rows, op, phase, body_bytes=None, recipients=None, text=None):
    (row,) = [
        r
        for r in rows
        if (r["op"], r["phase"], r["body_bytes"], r["recipients"], r["text"])
        == (op, phase, body_bytes, recipients, text)
    ]
    return row


def per_call_rows(rows):
    return [r for r in rows if r["phase"] != "amortized"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_op_is_measured_and_every_byte_is_in_one_part(rows_of, transport) -> None:
    rows = rows_of(transport)
    phases = {(r["op"], r["phase"]) for r in rows}
    expected = {(op, "first") for op in OPS}
    expected |= {(op, "steady") for op in OPS - ONCE_PER_CONNECTION}
    expected |= {("send", "amortized"), ("deliver", "amortized")}
    assert phases == expected
    for row in per_call_rows(rows):
        for d in ("c2s", "s2c"):
            assert row[f"{d}_bytes"] == sum(row[f"{d}_{c}"] for c in CATEGORIES), row
            assert row[f"{d}_range"][0] <= row[f"{d}_bytes"] <= row[f"{d}_range"][1]
    sends = {(r["body_bytes"], r["text"]) for r in rows if r["op"] == "send"}
    assert {(size, "ascii") for size in WIRE_QUICK.body_sizes} <= sends
    assert {(size, "utf8") for size in WIRE_QUICK.body_sizes if size > 1} <= sends
    assert {r["recipients"] for r in rows if r["op"] == "send"} == set(WIRE_QUICK.recipient_counts)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_steady_figures_are_deterministic_and_say_which_ids_they_hold_for(
    rows_of, transport
) -> None:
    rows = rows_of(transport)
    connection_kinds, _ = account_traits(account_factory(transport))
    for row in per_call_rows(rows):
        if row["phase"] != "steady":
            continue
        assert row["samples"] >= 2, row
        for d in ("c2s", "s2c"):
            lo, hi = row[f"{d}_range"]
            assert lo == hi, row  # one figure, every call: no tolerance on any transport
            # The connection's frames (gRPC WINDOW_UPDATE, PING, SETTINGS; WebSocket
            # keepalive) are never in a headline.
            assert not set(row[f"{d}_detail"]) & connection_kinds, row
    send = find(rows, "send", "steady", 32, 1, "ascii")
    assert "message ids" in send["holds_for"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_connections_frames_are_amortized_over_a_long_window(rows_of, transport) -> None:
    rows = rows_of(transport)
    connection_kinds, _ = account_traits(account_factory(transport))
    for op in ("send", "deliver"):
        row = find(rows, op, "amortized", 32, 1, "ascii")
        assert row["calls"] >= 1000 and row["seconds"] > 0
        assert row["control_bytes_per_call"] == pytest.approx(row["control_bytes"] / row["calls"])
        per_s = row["control_bytes"] / row["seconds"]
        assert row["control_bytes_per_s"] == pytest.approx(per_s, rel=0.01, abs=0.06)
        assert set(row["c2s_detail"]) | set(row["s2c_detail"]) <= connection_kinds
        if not connection_kinds:
            assert row["control_bytes"] == 0  # nothing of the connection's own
        # Over the window a call costs its headline plus its share of the connection's frames.
        steady = find(rows, op, "steady", 32, 1, "ascii")
        if op == "send":
            for d in ("c2s", "s2c"):
                extra = row[f"{d}_bytes"] - steady[f"{d}_bytes"] - row[f"{d}_connection_bytes"]
                assert abs(extra) <= 2, (row, steady)  # ids grow a byte over the window


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_payload_is_the_encoded_message(rows_of, transport) -> None:
    # Names in the run and in payload_sizes() differ but have the same lengths, so an
    # encoded request must have the same size in both.
    rows = rows_of(transport)
    expected = {
        (r["op"], r["direction"], r["body_bytes"], r["recipients"], r["text"]): r
        for r in payload_sizes(QUICK_SIZES)
        if r["note"] is None
    }
    key = ENCODED_AS.get(transport)
    for row in per_call_rows(rows):
        if row["phase"] != "steady" or row["op"] not in ("send", "list_accounts", "login"):
            continue
        want = expected[(row["op"], "c2s", row["body_bytes"], row["recipients"], row["text"])]
        assert row["c2s_payload"] >= want["text_bytes"], row  # it carries the strings
        if key is not None:
            assert row["c2s_payload"] == want[key], row
    if key is not None:
        listing = find(rows, "list_accounts", "steady")
        assert listing["s2c_payload"] == expected[("list_accounts", "s2c", None, None, None)][key]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_history_rows_carry_the_page_and_the_push_of_a_delete(rows_of, transport) -> None:
    # A page of 50 messages carries at least 50 bodies of 32 bytes (a protocol need not
    # repeat the sender's name per message); the MESSAGES_GONE push a delete sends to the
    # caller's own session is part of the delete.
    rows = rows_of(transport)
    for phase in ("first", "steady"):
        page = find(rows, "read_history", phase)
        assert page["s2c_payload"] >= HISTORY_PAGE * 32, page
        assert page["c2s_bytes"] < 200 and page["holds_for"].startswith("message ids")
        for op in HISTORY_OPS:
            row = find(rows, op, phase)
            assert row["c2s_bytes"] > 0 and row["s2c_bytes"] > 0, row
    if transport == "custom":  # PROTOCOL.md: the reply (REMOVED) and the MESSAGES_GONE push
        delete = find(rows, "delete_messages", "steady")
        assert set(delete["s2c_detail"]) == {"REMOVED", "MESSAGES_GONE"}, delete


def varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def test_custom_bytes_match_the_protocol_formulas(rows_of) -> None:
    # PROTOCOL.md section 11: a frame costs V(P) + P. With request id r, a SEND of body B to
    # one recipient N has P = len(B) + len(N) + 3 + V(r); a (version 2) one-to-one DELIVER has
    # P = len(B) + len(sender) + 11 + V(message_id) + V(conversation_id); an ACK of one id
    # costs 4 + V(message_id).
    rows = rows_of("custom")
    ack = find(rows, "ack", "steady")
    assert ack["c2s_range"][0] == ack["c2s_range"][1]
    id_size = ack["c2s_bytes"] - 4
    assert ack["holds_for"].startswith("message ids 128..16383") and id_size == 2
    for row in per_call_rows(rows):
        if row["phase"] != "steady" or row["recipients"] != 1:
            continue
        body = row["body_bytes"]
        if row["op"] == "send":
            p = body + 12 + 3 + 1  # the client's request ids stay below 128
            assert row["c2s_bytes"] == varint_size(p) + p, row
            assert row["c2s_headers"] == row["c2s_control"] == 0
        elif row["op"] == "deliver":
            p = body + 12 + 11 + id_size + 1  # (the run's conversation ids stay below 128)
            assert row["s2c_bytes"] == varint_size(p) + p, row
            assert row["c2s_bytes"] == 0
    assert find(rows, "send", "steady", 32, 1, "ascii")["c2s_bytes"] == 32 + 12 + 5
    connect = find(rows, "connect", "first")
    assert connect["c2s_bytes"] == connect["c2s_control"] == 1 + 6  # HELLO: V(6) + 6
    assert connect["s2c_bytes"] == connect["s2c_control"] > 0  # WELCOME


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_non_ascii_text_costs_its_bytes_and_no_more(rows_of, transport) -> None:
    rows = rows_of(transport)
    for size in WIRE_QUICK.body_sizes:
        if size < 2:
            continue
        ascii_row = find(rows, "send", "steady", size, 1, "ascii")
        utf8_row = find(rows, "send", "steady", size, 1, "utf8")
        assert ascii_row["c2s_payload"] == utf8_row["c2s_payload"]
        deliver_ascii = find(rows, "deliver", "steady", size, 1, "ascii")
        deliver_utf8 = find(rows, "deliver", "steady", size, 1, "utf8")
        assert deliver_ascii["s2c_payload"] == deliver_utf8["s2c_payload"]
    assert len(make_body(65536, "utf8").encode()) == 65536


def test_grpc_first_calls_pay_for_hpack_and_connection_setup(rows_of) -> None:
    rows = rows_of("grpc")
    connect = find(rows, "connect", "first")
    assert connect["c2s_detail"]["PREFACE"] == 24
    assert connect["c2s_bytes"] == connect["c2s_control"]  # preface, SETTINGS, WINDOW_UPDATE
    for op in ("list_accounts", "logout"):
        first, steady = find(rows, op, "first"), find(rows, op, "steady")
        assert first["c2s_headers"] > steady["c2s_headers"] > 0
    send = find(rows, "send", "steady", 32, 1, "ascii")
    assert send["c2s_framing"] == 9 + 5  # one DATA frame header + the gRPC message prefix
    assert send["s2c_headers"] > 0  # response headers and trailers, every call
    deliver = find(rows, "deliver", "steady", 32, 1, "ascii")
    assert deliver["s2c_headers"] == 0  # a message on an open stream: DATA only
    assert deliver["c2s_bytes"] == 0  # the receiver's credit for it is the connection's


#: Round trips the capture takes (each op's calls must all be the same).
CAPTURE_CALLS = 30


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_steady_calls_match_a_packet_capture(server, rows_of, transport) -> None:
    # An instrument independent of the relay and of every counter: tcpdump on loopback (or,
    # without it, the kernel's counters of the server's own sockets), clients connected
    # straight to the server, the connection's frames found by a walk of the captured bytes
    # written from the RFCs. Every call's own bytes equal the bench's headline.
    seen = asyncio.run(
        capture.steady_round_trips(transport, server.addresses[transport], CAPTURE_CALLS)
    )
    for c in capture.compare(transport, rows_of(transport), seen):
        assert c.error <= 0.01, (capture.instrument(), c)
        if capture.tcpdump_usable():
            assert c.capture == c.bench and c.same == c.calls, c  # to the byte, every call
