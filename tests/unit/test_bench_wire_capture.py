"""bench/capture.py's own parsing: pcap records, TCP reassembly, and its walk of the captured
bytes that finds the connection's frames (written from the RFCs, not the bench's counters)."""

from __future__ import annotations

import struct

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, SettingsFrame, WindowUpdateFrame
from websockets.frames import Frame, Opcode

from bench.capture import (
    H2_PREFACE,
    CallBytes,
    Segment,
    connection_frames,
    protocol_of,
    read_pcap,
    reassemble,
    split_calls,
)


def segment(time: float, seq: int, payload: bytes, sport: int = 5000, dport: int = 80) -> Segment:
    return Segment(time, sport, dport, seq, payload, len(payload))


def test_reassembly_takes_each_byte_once_and_refuses_a_gap() -> None:
    chunks = reassemble(
        [
            segment(1.0, 100, b"abcd"),
            segment(1.1, 100, b"abcd"),  # retransmitted whole
            segment(1.2, 102, b"cdef"),  # overlaps: only "ef" is new
            segment(1.3, 106, b"g"),
        ]
    )
    assert chunks == [(1.0, b"abcd"), (1.2, b"ef"), (1.3, b"g")]
    with pytest.raises(RuntimeError, match="missed bytes"):
        reassemble([segment(1.0, 100, b"ab"), segment(1.1, 110, b"cd")])
    short = Segment(1.0, 1, 2, 100, b"ab", 10)
    with pytest.raises(RuntimeError, match="cut a packet short"):
        reassemble([short])


def test_sequence_numbers_wrap_around() -> None:
    top = (1 << 32) - 2
    assert reassemble([segment(1.0, top, b"abcd"), segment(1.1, 2, b"ef")]) == [
        (1.0, b"abcd"),
        (1.1, b"ef"),
    ]


def test_http2_walk_finds_settings_pings_and_window_updates_only() -> None:
    call = HeadersFrame(1, b"h" * 20).serialize() + DataFrame(1, b"d" * 30).serialize()
    credit = WindowUpdateFrame(0, window_increment=30).serialize()
    credit += WindowUpdateFrame(1, window_increment=30).serialize()
    ping = PingFrame(0, b"12345678").serialize()
    settings = SettingsFrame(0, flags=["ACK"]).serialize()
    # Frames split across segments anywhere: each connection frame is dated by its first byte.
    stream = H2_PREFACE + call + credit + ping + settings
    cut = len(H2_PREFACE) + len(call) + 5
    chunks = [(1.0, stream[:cut]), (2.0, stream[cut:])]
    assert protocol_of(chunks) == "h2"
    found = list(connection_frames(chunks, "h2", client_to_server=True))
    assert found == [(1.0, 13), (2.0, 13), (2.0, 17), (2.0, 9)]
    server = list(connection_frames([(1.0, call + credit)], "h2", client_to_server=False))
    assert [size for _, size in server] == [13, 13]


def test_websocket_walk_skips_the_upgrade_and_finds_ping_and_pong() -> None:
    upgrade = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
    text = Frame(Opcode.TEXT, b'{"op":"send"}').serialize(mask=True)
    ping = Frame(Opcode.PING, b"abcd").serialize(mask=True)
    big = Frame(Opcode.TEXT, b"x" * 300).serialize(mask=True)  # a 16-bit extended length
    chunks = [(1.0, upgrade + text), (2.0, big + ping)]
    assert protocol_of(chunks) == "websocket"
    assert list(connection_frames(chunks, "websocket", client_to_server=True)) == [(2.0, 2 + 4 + 4)]
    pong = Frame(Opcode.PONG, b"abcd").serialize(mask=False)
    reply = [(1.0, b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + pong)]
    assert list(connection_frames(reply, "websocket", client_to_server=False)) == [(1.0, 6)]


def test_other_protocols_have_no_connection_frames() -> None:
    chunks = [(1.0, b"\x07\x01\x00hello")]
    assert protocol_of(chunks) is None
    assert list(connection_frames(chunks, None, client_to_server=True)) == []


def test_calls_are_cut_by_time_and_their_own_bytes_exclude_the_connections() -> None:
    up = H2_PREFACE + DataFrame(1, b"q" * 10).serialize()
    credit = WindowUpdateFrame(0, window_increment=10).serialize()
    segments = [
        segment(1.0, 0, up, 7000, 50051),
        segment(1.1, 500, DataFrame(1, b"r" * 4).serialize(), 50051, 7000),
        segment(2.0, len(up), credit + DataFrame(1, b"q" * 10).serialize(), 7000, 50051),
    ]
    calls = split_calls(segments, 50051, {"send": (7000, [(0.5, 1.5), (1.5, 2.5)])})
    first, second = calls["send"]
    assert first == CallBytes(len(up), 13, 0, 0, len(up), 13)
    assert second == CallBytes(13 + 19, 0, 13, 0, 19, 0) and second.own == (19, 0)
    assert first.resent == second.resent == 0
    # A retransmitted segment is TCP payload, but no frame's bytes twice.
    again = [*segments, segment(2.1, len(up), credit, 7000, 50051)]
    (_, third) = split_calls(again, 50051, {"send": (7000, [(0.5, 1.5), (1.5, 2.5)])})["send"]
    assert third.own == (19, 0) and third.resent == 13


def pcap(*packets: bytes) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet
    for n, packet in enumerate(packets):
        frame = bytes(14) + packet
        out += struct.pack("<IIII", 10 + n, 500_000, len(frame), len(frame)) + frame
    return out


def ipv4_tcp(sport: int, dport: int, seq: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0, bytes(4), bytes(4))
    return ip + tcp + payload


def test_a_pcap_gives_each_segments_ports_sequence_and_payload() -> None:
    data = pcap(ipv4_tcp(7000, 80, 42, b"hello"), ipv4_tcp(80, 7000, 9, b""))  # a pure ACK
    (only,) = read_pcap(data)
    assert (only.sport, only.dport, only.seq, only.payload, only.length) == (
        7000,
        80,
        42,
        b"hello",
        5,
    )
    assert only.time == pytest.approx(10.5)
    with pytest.raises(ValueError, match="not a pcap"):
        read_pcap(b"nope" + bytes(40))
