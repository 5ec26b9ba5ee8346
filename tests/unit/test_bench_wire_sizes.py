"""measure_sizes against a real server process, for every wire transport in the registry.

One quick run per transport (module-scoped: a few seconds each); the tests then check the
rows against what the protocols say they must be.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.payloads import make_body, payload_sizes
from bench.wire import QUICK, measure_sizes
from transports import registry
from wirechat.launch import ServerProcess

pytestmark = pytest.mark.slow

TRANSPORTS = [name for name in ("custom", "grpc") if name in registry.TRANSPORTS]
CATEGORIES = ("payload", "framing", "headers", "control")
ONCE_PER_CONNECTION = {"connect", "delete_account", "close"}
OPS = {"connect", "signup", "login", "list_accounts", "send", "deliver", "ack", "logout",
       "delete_account", "close"}  # fmt: skip


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
            cache[transport] = asyncio.run(measure_sizes(transport, address, quick=True))
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


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_op_is_measured_and_every_byte_is_in_one_part(rows_of, transport) -> None:
    rows = rows_of(transport)
    phases = {(r["op"], r["phase"]) for r in rows}
    expected = {(op, "first") for op in OPS}
    expected |= {(op, "steady") for op in OPS - ONCE_PER_CONNECTION}
    assert phases == expected
    for row in rows:
        for d in ("c2s", "s2c"):
            assert row[f"{d}_bytes"] == sum(row[f"{d}_{c}"] for c in CATEGORIES), row
            assert row[f"{d}_range"][0] <= row[f"{d}_bytes"] <= row[f"{d}_range"][1]
    sends = {(r["body_bytes"], r["text"]) for r in rows if r["op"] == "send"}
    assert {(size, "ascii") for size in QUICK.body_sizes} <= sends
    assert {(size, "utf8") for size in QUICK.body_sizes if size > 1} <= sends
    assert {r["recipients"] for r in rows if r["op"] == "send"} == set(QUICK.recipient_counts)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_payload_is_exactly_the_encoded_message(rows_of, transport) -> None:
    # Names in the run and in payload_sizes() differ but have the same lengths, so an
    # encoded request must have the same size in both.
    rows = rows_of(transport)
    expected = {
        (r["op"], r["direction"], r["body_bytes"], r["recipients"], r["text"]): r
        for r in payload_sizes(quick=True)
        if r["note"] is None
    }
    key = "custom_bytes" if transport == "custom" else "protobuf_bytes"
    for row in rows:
        if row["phase"] != "steady" or row["op"] not in ("send", "list_accounts", "login"):
            continue
        want = expected[(row["op"], "c2s", row["body_bytes"], row["recipients"], row["text"])]
        assert row["c2s_payload"] == want[key], row
    listing = find(rows, "list_accounts", "steady")
    assert listing["s2c_payload"] == expected[("list_accounts", "s2c", None, None, None)][key]


def varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def test_custom_bytes_match_the_protocol_formulas(rows_of) -> None:
    if "custom" not in TRANSPORTS:
        pytest.skip("the custom transport is not in the registry")
    # PROTOCOL.md section 11: a frame costs V(P) + P. In the steady state the request id is 1,
    # so a SEND of body B to one recipient N has P = len(B) + len(N) + 4 (len(B) + len(N) + 5
    # bytes while P < 128); a DELIVER has P = len(B) + len(sender) + 9 + V(message_id); an
    # ACK of one id costs 4 + V(message_id). Bench names are 12 characters.
    rows = rows_of("custom")
    ack = find(rows, "ack", "steady")
    assert ack["c2s_range"][0] == ack["c2s_range"][1]
    id_size = ack["c2s_bytes"] - 4
    for row in rows:
        if row["phase"] != "steady" or row["recipients"] != 1:
            continue
        body = row["body_bytes"]
        if row["op"] == "send":
            p = body + 12 + 4
            assert row["c2s_bytes"] == varint_size(p) + p, row
            assert row["c2s_headers"] == row["c2s_control"] == 0
            assert row["c2s_range"][0] == row["c2s_range"][1]  # deterministic: no stray bytes
        elif row["op"] == "deliver":
            p = body + 12 + 9 + id_size
            assert row["s2c_bytes"] == varint_size(p) + p, row
            assert row["c2s_bytes"] == 0
    assert find(rows, "send", "steady", 32, 1, "ascii")["c2s_bytes"] == 32 + 12 + 5
    connect = find(rows, "connect", "first")
    assert connect["c2s_bytes"] == connect["c2s_control"] == 1 + 6  # HELLO: V(6) + 6
    assert connect["s2c_bytes"] == connect["s2c_control"] > 0  # WELCOME


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_non_ascii_text_costs_its_bytes_and_no_more(rows_of, transport) -> None:
    rows = rows_of(transport)
    for size in QUICK.body_sizes:
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
    if "grpc" not in TRANSPORTS:
        pytest.skip("the gRPC transport is not in the registry")
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
    assert deliver["c2s_payload"] == 0 and deliver["c2s_bytes"] == deliver["c2s_control"]
