"""The HTTP/2 frame splitter and the gRPC byte breakdown, on hand-built byte strings.

Every stream is fed whole, one byte at a time and in random chunks (h11's test_io habit): the
frames found and the categories counted must not depend on how the bytes arrived.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.h2frames import (
    CLIENT_PREFACE,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    Frame,
    FrameSplitter,
    FrameType,
    GrpcWireAccount,
    Preface,
    ProtocolViolation,
    encode_frame,
    grpc_accounts,
)


def grpc_message(body: bytes) -> bytes:
    return b"\x00" + len(body).to_bytes(4, "big") + body


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
        encode_frame(FrameType.SETTINGS, 0, 0, bytes(36)),  # 45, control
        encode_frame(FrameType.WINDOW_UPDATE, 0, 0, (1 << 30).to_bytes(4, "big")),  # 13
        encode_frame(FrameType.SETTINGS, FLAG_ACK, 0),  # 9, control
        encode_frame(FrameType.HEADERS, 0, 1, HPACK),  # 26, headers
        encode_frame(FrameType.CONTINUATION, FLAG_END_HEADERS, 1, HPACK[:5]),  # 14, headers
        encode_frame(FrameType.DATA, FLAG_END_STREAM, 1, grpc_message(PROTO)),  # 9+5+48
        encode_frame(FrameType.PING, 0, 0, bytes(8)),  # 17, control
        encode_frame(FrameType.PRIORITY, 0, 3, bytes(5)),  # 14, control
        encode_frame(FrameType.RST_STREAM, 0, 3, bytes(4)),  # 13, control
        encode_frame(0x42, 0, 0, b"ext"),  # 12, an extension frame: control
        encode_frame(FrameType.GOAWAY, 0, 0, bytes(8)),  # 17, control
    ]
)
CLIENT_EXPECTED = {
    "payload": 48,
    "framing": 9 + 5,
    "headers": 26 + 14,
    "control": 24 + 45 + 13 + 9 + 17 + 14 + 13 + 12 + 17,
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
    assert account.frames["SETTINGS"] == 1


def test_splitter_returns_the_same_frames_however_the_bytes_arrive() -> None:
    expected = FrameSplitter(expect_preface=True).receive_data(CLIENT_STREAM)
    assert isinstance(expected[0], Preface)
    assert [f.kind for f in expected[1:] if isinstance(f, Frame)][:4] == [
        "SETTINGS",
        "WINDOW_UPDATE",
        "SETTINGS_ACK",
        "HEADERS",
    ]
    for chunks in chunkings(CLIENT_STREAM):
        splitter = FrameSplitter(expect_preface=True)
        frames = [frame for chunk in chunks for frame in splitter.receive_data(chunk)]
        assert frames == expected
        assert splitter.pending == 0


def test_an_incomplete_frame_is_held_back_and_counted_as_pending() -> None:
    data = encode_frame(FrameType.PING, 0, 0, bytes(8))
    account = GrpcWireAccount(client_to_server=False)
    account.receive_data(data[:-3])
    assert account.pending == 14 and account.parsed == 0
    account.receive_data(data[-3:])
    assert account.pending == 0 and dict(account.totals)["control"] == 17


def test_a_grpc_message_spanning_data_frames_and_a_split_prefix() -> None:
    # One 20-byte message split 2+3 across its prefix and again inside the message, then two
    # messages (one of them empty) in a single DATA frame, on another stream in between.
    message = grpc_message(b"m" * 20)
    both = grpc_message(b"") + grpc_message(b"n" * 7)
    stream = b"".join(
        [
            encode_frame(FrameType.DATA, 0, 1, message[:2]),
            encode_frame(FrameType.DATA, 0, 3, both),
            encode_frame(FrameType.DATA, 0, 1, message[2:12]),
            encode_frame(FrameType.DATA, FLAG_END_STREAM, 1, message[12:]),
        ]
    )
    for chunks in chunkings(stream):
        account = account_of(chunks, client_to_server=False)
        assert account.totals["payload"] == 20 + 7
        assert account.totals["framing"] == 4 * 9 + 3 * 5
        assert account.messages == 3
        assert account.open_messages == 0


def test_padding_in_data_frames_is_framing() -> None:
    content = grpc_message(b"p" * 10)
    padded = bytes([6]) + content + bytes(6)
    account = account_of(
        [encode_frame(FrameType.DATA, FLAG_PADDED | FLAG_END_STREAM, 1, padded)],
        client_to_server=False,
    )
    assert account.totals["payload"] == 10
    assert account.totals["framing"] == 9 + 1 + 6 + 5


def test_padding_longer_than_the_frame_is_refused() -> None:
    bad = encode_frame(FrameType.DATA, FLAG_PADDED, 1, bytes([9]) + b"abc")
    with pytest.raises(ProtocolViolation):
        GrpcWireAccount(client_to_server=False).receive_data(bad)


def test_a_wrong_preface_is_refused_as_soon_as_it_differs() -> None:
    with pytest.raises(ProtocolViolation):
        FrameSplitter(expect_preface=True).receive_data(b"GET / HTTP/1.1\r\n")
    splitter = FrameSplitter(expect_preface=True)
    assert splitter.receive_data(CLIENT_PREFACE[:10]) == []  # a prefix of it: wait
    with pytest.raises(ProtocolViolation):
        splitter.receive_data(b"X")


def test_the_server_direction_has_no_preface() -> None:
    data = encode_frame(FrameType.SETTINGS, 0, 0, bytes(6)) + encode_frame(
        FrameType.HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, HPACK
    )
    account = account_of([data], client_to_server=False)
    assert dict(account.totals) == {"payload": 0, "framing": 0, "headers": 26, "control": 15}


def test_stream_state_is_forgotten_when_the_stream_ends() -> None:
    account = GrpcWireAccount(client_to_server=False)
    account.receive_data(encode_frame(FrameType.DATA, 0, 5, grpc_message(b"abc")[:3]))
    assert account.open_messages == 1
    account.receive_data(encode_frame(FrameType.RST_STREAM, 0, 5, bytes(4)))
    assert account.open_messages == 0


frame_specs = st.lists(
    st.tuples(
        st.sampled_from([t.value for t in FrameType] + [0x42]),
        st.integers(0, 0xFF),
        st.integers(0, 2**31 - 1),
        st.binary(max_size=64),
    ),
    max_size=12,
)


@given(frame_specs, st.randoms(use_true_random=False))
def test_every_byte_is_classified_once_however_it_is_chunked(specs, rng) -> None:
    # Arbitrary frames (DATA flags cleared of PADDED, so any content is valid): the categories
    # always add up to the bytes fed, and chunking never changes the result.
    frames = [encode_frame(t, f & ~FLAG_PADDED if t == 0 else f, s, p) for t, f, s, p in specs]
    data = CLIENT_PREFACE + b"".join(frames)
    whole = account_of([data], client_to_server=True)
    assert whole.parsed == len(data) and whole.pending == 0
    chunks, pos = [], 0
    while pos < len(data):
        step = rng.randint(1, 30)
        chunks.append(data[pos : pos + step])
        pos += step
    pieces = account_of(chunks, client_to_server=True)
    assert pieces.totals == whole.totals
    assert pieces.by_kind == whole.by_kind


def test_late_flow_control_frames_are_traced_to_the_data_that_caused_them() -> None:
    c2s, s2c = grpc_accounts()
    wu = lambda stream: encode_frame(FrameType.WINDOW_UPDATE, 0, stream, bytes(4))  # noqa: E731
    ping = encode_frame(FrameType.PING, 0, 0, b"opaque-1")
    # Epoch 1: a call on stream 1, and a push on the long-lived stream 3.
    c2s.epoch = 1
    c2s.receive_data(CLIENT_PREFACE + encode_frame(FrameType.DATA, 0, 1, grpc_message(b"q")))
    s2c.receive_data(encode_frame(FrameType.DATA, 0, 3, grpc_message(b"push")))
    s2c.receive_data(wu(0))  # the server credits the request it just received: epoch 1
    # Epoch 2: the client's next call carries the credit for the push first, then its own.
    c2s.epoch = 2
    c2s.receive_data(wu(3) + wu(0) + encode_frame(FrameType.DATA, 0, 5, grpc_message(b"r")))
    s2c.receive_data(encode_frame(FrameType.DATA, FLAG_END_STREAM, 5, grpc_message(b"s")))
    c2s.receive_data(wu(0))  # after DATA arrived in epoch 2: epoch 2's own
    # Epoch 3: the server's BDP timer fires (it last received DATA in epoch 2); the ACK follows.
    c2s.epoch = 3
    s2c.receive_data(ping)
    c2s.receive_data(encode_frame(FrameType.PING, FLAG_ACK, 0, b"opaque-1"))

    assert s2c.moved[0].counted_in == 3 and s2c.moved[0].epoch == 2
    assert [(m.counted_in, m.epoch, m.kind) for m in c2s.moved] == [
        (2, 1, "WINDOW_UPDATE_STREAM"),
        (2, 1, "WINDOW_UPDATE"),
        (3, 2, "PING_ACK"),
    ]
    assert len(s2c.moved) == 1  # the epoch-1 WINDOW_UPDATE of the server stayed in epoch 1
    assert all(m.size == 13 for m in c2s.moved[:2]) and c2s.moved[2].size == 17
