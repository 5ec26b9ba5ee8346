"""The gRPC byte counter (transports/grpc/_bytes.py): hyperframe's frames, our breakdown.

Every stream is fed whole, one byte at a time and in random chunks (h11's test_io habit): the
frames found and the categories counted must not depend on how the bytes arrived. Frames are
built with hyperframe's own serializer, so the tests also pin what a real HTTP/2 peer sends.
"""

from __future__ import annotations

import random

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from transports.grpc._bytes import (
    CLIENT_PREFACE,
    FrameSplitter,
    GrpcWireAccount,
    ProtocolViolation,
    accounts,
    frame_kind,
)


def grpc_message(body: bytes) -> bytes:
    return b"\x00" + len(body).to_bytes(4, "big") + body


def data(stream: int, payload: bytes, *flags: str, pad: int = 0) -> bytes:
    frame = DataFrame(stream, payload, flags=flags)
    if pad:
        frame.flags.add("PADDED")
        frame.pad_length = pad
    return frame.serialize()


def headers(stream: int, block: bytes, *flags: str) -> bytes:
    return HeadersFrame(stream, block, flags=flags).serialize()


def window_update(stream: int, increment: int = 1) -> bytes:
    return WindowUpdateFrame(stream, window_increment=increment).serialize()


def extension(type_: int, payload: bytes) -> bytes:
    """An unknown frame type (hyperframe's ExtensionFrame only re-serializes parsed frames)."""
    return len(payload).to_bytes(3, "big") + bytes([type_, 0]) + bytes(4) + payload


def ping(opaque: bytes, *flags: str) -> bytes:
    return PingFrame(0, opaque, flags=flags).serialize()


def chunkings(data: bytes, seed: int = 7) -> list[list[bytes]]:
    """The same bytes whole, byte by byte, and in three random chunkings."""
    rng = random.Random(seed)
    out = [[data], [data[i : i + 1] for i in range(len(data))]]
    for _ in range(3):
        chunks, pos = [], 0
        while pos < len(data):
            step = rng.randint(1, 40)
            chunks.append(data[pos : pos + step])
            pos += step
        out.append(chunks)
    return out


PROTO = b"\x0a\x0cwcabcdefr000\x12\x20" + b"x" * 32  # a 48-byte SendRequest-like message
HPACK = bytes(range(17))  # header block bytes: their content does not matter to the count

# A client->server unary call as grpc-core writes it, plus every control frame type.
CLIENT_STREAM = b"".join(
    [
        CLIENT_PREFACE,  # 24, control
        SettingsFrame(0, {3: 0, 4: 4194304, 6: 16384, 0xFE03: 1}).serialize(),  # 33, control
        window_update(0, 1 << 30),  # 13, control
        SettingsFrame(0, flags=["ACK"]).serialize(),  # 9, control
        headers(1, HPACK),  # 26, headers
        ContinuationFrame(1, HPACK[:5], flags=["END_HEADERS"]).serialize(),  # 14, headers
        data(1, grpc_message(PROTO), "END_STREAM"),  # 9 + 5 + 48
        ping(bytes(8)),  # 17, control
        PriorityFrame(3, depends_on=1, stream_weight=16).serialize(),  # 14, control
        RstStreamFrame(3, error_code=8).serialize(),  # 13, control
        extension(0x42, b"ext"),  # 12, an extension frame: control
        GoAwayFrame(0, last_stream_id=1).serialize(),  # 17, control
    ]
)
CLIENT_EXPECTED = {
    "payload": 48,
    "framing": 9 + 5,
    "headers": 26 + 14,
    "control": 24 + 33 + 13 + 9 + 17 + 14 + 13 + 12 + 17,
}


def account_of(chunks: list[bytes], *, client_to_server: bool) -> GrpcWireAccount:
    account = GrpcWireAccount(client_to_server=client_to_server)
    for chunk in chunks:
        account.receive_data(chunk)
    return account


@pytest.mark.parametrize("chunks", chunkings(CLIENT_STREAM), ids=lambda c: f"{len(c)}chunks")
def test_client_stream_is_split_into_the_four_categories(chunks: list[bytes]) -> None:
    account = account_of(chunks, client_to_server=True)
    assert dict(account.totals) == CLIENT_EXPECTED
    assert account.parsed == len(CLIENT_STREAM)
    assert account.pending == 0
    assert account.messages == 1
    assert account.by_kind["PREFACE"] == 24
    assert account.by_kind["SETTINGS_ACK"] == 9
    assert account.by_kind["TYPE_0x42"] == 12
    assert account.by_kind["GOAWAY"] == 17
    assert account.frames["SETTINGS"] == 1


def test_splitter_returns_the_same_frames_however_the_bytes_arrive() -> None:
    whole = FrameSplitter(expect_preface=True).receive_data(CLIENT_STREAM)
    assert whole[0] == (None, 24)
    kinds = [frame_kind(f) for f, _ in whole[1:] if f is not None]
    assert kinds[:4] == ["SETTINGS", "WINDOW_UPDATE", "SETTINGS_ACK", "HEADERS"]
    expected = [(None if f is None else f.serialize(), size) for f, size in whole]
    for chunks in chunkings(CLIENT_STREAM):
        splitter = FrameSplitter(expect_preface=True)
        frames = [item for chunk in chunks for item in splitter.receive_data(chunk)]
        assert [(None if f is None else f.serialize(), n) for f, n in frames] == expected
        assert splitter.pending == 0


def test_an_incomplete_frame_is_held_back_and_counted_as_pending() -> None:
    frame = ping(bytes(8))
    account = GrpcWireAccount(client_to_server=False)
    account.receive_data(frame[:-3])
    assert account.pending == 14 and account.parsed == 0
    account.receive_data(frame[-3:])
    assert account.pending == 0 and dict(account.totals)["control"] == 17


def test_a_grpc_message_spanning_data_frames_and_a_split_prefix() -> None:
    # One 20-byte message split 2+3 across its prefix and again inside the message, then two
    # messages (one of them empty) in a single DATA frame, on another stream in between.
    message = grpc_message(b"m" * 20)
    both = grpc_message(b"") + grpc_message(b"n" * 7)
    stream = b"".join(
        [
            data(1, message[:2]),
            data(3, both),
            data(1, message[2:12]),
            data(1, message[12:], "END_STREAM"),
        ]
    )
    for chunks in chunkings(stream):
        account = account_of(chunks, client_to_server=False)
        assert account.totals["payload"] == 20 + 7
        assert account.totals["framing"] == 4 * 9 + 3 * 5
        assert account.messages == 3
        assert account.open_messages == 0


def test_padding_in_data_frames_is_framing() -> None:
    frame = data(1, grpc_message(b"p" * 10), "END_STREAM", pad=6)
    account = account_of([frame], client_to_server=False)
    assert account.totals["payload"] == 10
    assert account.totals["framing"] == 9 + 1 + 6 + 5


def test_padding_longer_than_the_frame_is_refused() -> None:
    header = (4).to_bytes(3, "big") + bytes([0x0, 0x8]) + (1).to_bytes(4, "big")
    with pytest.raises(ProtocolViolation):
        GrpcWireAccount(client_to_server=False).receive_data(header + bytes([9]) + b"abc")


def test_a_wrong_preface_is_refused_as_soon_as_it_differs() -> None:
    with pytest.raises(ProtocolViolation):
        FrameSplitter(expect_preface=True).receive_data(b"GET / HTTP/1.1\r\n")
    splitter = FrameSplitter(expect_preface=True)
    assert splitter.receive_data(CLIENT_PREFACE[:10]) == []  # a prefix of it: wait
    with pytest.raises(ProtocolViolation):
        splitter.receive_data(b"X")


def test_the_server_direction_has_no_preface() -> None:
    stream = SettingsFrame(0, {4: 1}).serialize() + headers(1, HPACK, "END_HEADERS")
    account = account_of([stream], client_to_server=False)
    assert dict(account.totals) == {"payload": 0, "framing": 0, "headers": 26, "control": 15}


def test_stream_state_is_forgotten_when_the_stream_ends() -> None:
    account = GrpcWireAccount(client_to_server=False)
    account.receive_data(data(5, grpc_message(b"abc")[:3]))
    assert account.open_messages == 1
    account.receive_data(RstStreamFrame(5, error_code=8).serialize())
    assert account.open_messages == 0


def test_pings_window_updates_and_settings_are_the_connections_frames() -> None:
    assert GrpcWireAccount.TIMER_KINDS == {"PING", "PING_ACK"}
    assert GrpcWireAccount.FLOW_KINDS == {"WINDOW_UPDATE", "WINDOW_UPDATE_STREAM"}
    assert GrpcWireAccount.CONNECTION_KINDS == {
        "PING",
        "PING_ACK",
        "WINDOW_UPDATE",
        "WINDOW_UPDATE_STREAM",
        "SETTINGS",
        "SETTINGS_ACK",
        "GOAWAY",
    }
    account = account_of([ping(b"12345678") + ping(b"12345678", "ACK")], client_to_server=False)
    assert account.by_kind == {"PING": 17, "PING_ACK": 17}


frames = st.one_of(
    st.builds(
        lambda s, p, end: data(s, p, *(["END_STREAM"] if end else [])),
        st.integers(1, 2**31 - 1),
        st.binary(max_size=64),
        st.booleans(),
    ),
    st.builds(lambda s, b: headers(s, b), st.integers(1, 2**31 - 1), st.binary(max_size=64)),
    st.builds(lambda s, i: window_update(s, i), st.integers(0, 99), st.integers(1, 2**31 - 1)),
    st.builds(lambda o: ping(o), st.binary(min_size=8, max_size=8)),
    st.builds(
        extension,
        st.integers(0x0B, 0xFF),
        st.binary(max_size=32),
    ),
)


@settings(deadline=None)  # a loaded machine may take longer: no timed assertions
@given(st.lists(frames, max_size=12), st.randoms(use_true_random=False))
def test_every_byte_is_classified_once_however_it_is_chunked(items, rng) -> None:
    # Arbitrary valid frames: the categories always add up to the bytes fed, and chunking
    # never changes the result.
    stream = CLIENT_PREFACE + b"".join(items)
    whole = account_of([stream], client_to_server=True)
    assert whole.parsed == len(stream) and whole.pending == 0
    chunks, pos = [], 0
    while pos < len(stream):
        step = rng.randint(1, 30)
        chunks.append(stream[pos : pos + step])
        pos += step
    pieces = account_of(chunks, client_to_server=True)
    assert pieces.totals == whole.totals
    assert pieces.by_kind == whole.by_kind


def test_window_updates_on_stream_0_and_on_a_stream_are_told_apart() -> None:
    c2s, s2c = accounts()
    c2s.receive_data(CLIENT_PREFACE + data(1, grpc_message(b"q")))
    c2s.receive_data(window_update(3) + window_update(0) + data(5, grpc_message(b"r")))
    s2c.receive_data(SettingsFrame(0, flags=["ACK"]).serialize() + window_update(0))
    assert c2s.by_kind["WINDOW_UPDATE_STREAM"] == c2s.by_kind["WINDOW_UPDATE"] == 13
    assert s2c.by_kind == {"SETTINGS_ACK": 9, "WINDOW_UPDATE": 13}
    own = set(c2s.by_kind) - GrpcWireAccount.CONNECTION_KINDS
    assert own == {"PREFACE", "DATA"}  # the call's: a headline counts these only
