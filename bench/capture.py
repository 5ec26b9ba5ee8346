"""An independent check of the bench's steady byte figures: a packet capture on loopback.

``bench/wire.py`` counts bytes in a relay between client and server. This module measures the
same calls without the relay and without any of the bench's parsers: two real clients talk
to the server directly while ``tcpdump`` captures loopback (whole packets). Each direction of
each connection is put back together from the captured TCP segments (by sequence number),
and a series of steady send round trips is cut into calls by time: on the sender's
connection the ``send`` op (from its start to the next one's); on the receiver's the
``deliver`` op (the push: from the send's start to the ack's) and the ``ack`` op (from the
ack's start to the next send's). Between calls the clients wait GAP, so every frame a call
causes is inside its window.

For each call it reports the TCP payload bytes (IP total length minus the IP and TCP
headers, summed over the call's segments) and, of those, the bytes of the connection's own
frames, found by a walk of the reassembled bytes written here from the RFCs (24-bit length
and type of each HTTP/2 frame; opcode and length of each WebSocket frame), not by the
bench's counters (hyperframe, websockets): HTTP/2 SETTINGS, PING, GOAWAY and WINDOW_UPDATE
frames (RFC 9113 types 0x4, 0x6, 0x7, 0x8), WebSocket PING and PONG (opcodes 0x9, 0xA). A
call's own bytes are its other frames (each read once): exactly what the bench's headline
counts (``CONNECTION_KINDS``, bench/wire.py). They must equal the bench's ``send``, ``deliver`` and
``ack`` rows within 1 % (they are equal to the byte, in every call); the TCP payload itself
equals them in every call that carried no connection frame (always on custom and
protobuf-tcp; on gRPC the WINDOW_UPDATEs come and go by grpc-core's estimate) and no
retransmitted segment: on a loaded machine the kernel retransmits now and then even on
loopback; those bytes are TCP payload, counted apart (``resent``), and frames are read once.

Where ``tcpdump`` is missing (or the process may not capture), the kernel's own per-socket
counters (``ss -ti``: bytes_received and bytes_acked of the server's socket) are read at the
same moments instead: an independent instrument of the TCP payload, which cannot tell a
call's frames from the connection's (so it checks custom, protobuf-tcp and WebSocket only).
Debian's ``tcpdump`` package provides the capture (``make capture-tools``).

    python -m bench.capture [--transports custom,grpc] [--calls 40]

The steady ``resume`` (issue 13) is checked the same way by ``bench/capture_account.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import WIRE_QUICK
from bench.payloads import PASSWORD, make_body, username
from core.client import ChatClient
from transports import registry

#: Seconds between two measured calls: longer than any immediate reaction of a peer (a reply,
#: a WINDOW_UPDATE) on loopback, so each call's bytes are inside its window.
GAP = 0.05
#: Round trips before the measured ones: message ids and request ids past 127, as in the bench.
WARM_UP = 128
#: Bytes of each packet tcpdump keeps: all of it (loopback's MTU is 65536).
SNAPLEN = 65536 + 128
#: Seconds to wait before stopping tcpdump: more than its packet buffer timeout (1 s).
BLOCK_TIMEOUT = 2.0
#: The ops measured: the sender's ``send``; the receiver's ``deliver`` and ``ack``.
OPS = ("send", "deliver", "ack")
#: HTTP/2 frame types that are the connection's (RFC 9113 section 6): SETTINGS, PING, GOAWAY,
#: WINDOW_UPDATE.
H2_CONNECTION_TYPES = frozenset({0x4, 0x6, 0x7, 0x8})
#: WebSocket opcodes that are the connection's (RFC 6455 section 5.5): PING, PONG.
WS_CONNECTION_OPCODES = frozenset({0x9, 0xA})
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass(frozen=True)
class CallBytes:
    """TCP payload bytes of one call on one connection, and of them the connection's frames."""

    c2s: int
    s2c: int
    c2s_connection: int = 0
    s2c_connection: int = 0
    c2s_own: int | None = None  # the call's own frames (None: not walked: all but connection's)
    s2c_own: int | None = None

    @property
    def own(self) -> tuple[int, int]:
        """(c2s, s2c) of the call's own frames: what the bench's headline counts."""
        c2s = self.c2s - self.c2s_connection if self.c2s_own is None else self.c2s_own
        s2c = self.s2c - self.s2c_connection if self.s2c_own is None else self.s2c_own
        return c2s, s2c

    @property
    def resent(self) -> int:
        """TCP payload bytes beyond the frames: retransmitted bytes (0 on a calm loopback)."""
        own = sum(self.own)
        return self.c2s + self.s2c - own - self.c2s_connection - self.s2c_connection


@dataclass(frozen=True)
class Segment:
    """One captured TCP segment with a payload."""

    time: float
    sport: int
    dport: int
    seq: int
    payload: bytes
    length: int  # payload bytes on the wire (``payload`` holds what was captured of them)


# -- instruments ---------------------------------------------------------------------------------
def tcpdump_usable() -> bool:
    """tcpdump is installed and we may capture (root, or a tcpdump with capabilities)."""
    return shutil.which("tcpdump") is not None and os.geteuid() == 0


class Tcpdump:
    """``tcpdump -i lo`` of one server port into a pcap file; read back after ``stop``."""

    name = "tcpdump"

    def __init__(self, port: int) -> None:
        self.port = port
        self.path = Path(tempfile.mkdtemp(prefix="wirechat-capture-")) / "lo.pcap"
        self.proc: subprocess.Popen[bytes] | None = None
        self.report = ""  # what tcpdump said when it stopped ("N packets captured ...")

    def start(self) -> None:
        # Whole packets (the frame walk needs the payload; loopback's MTU is 65536) into a
        # 64 MiB kernel buffer. No --immediate-mode: it makes libpcap use fixed ring slots of
        # the snapshot length (a 16 MiB buffer then holds only ~250 packets, and tcpdump
        # starved of CPU on a loaded machine dropped some); the file is read after tcpdump
        # exits, and a loss is an error (stop()), never a silent gap.
        command = ["tcpdump", "-i", "lo", "-n", "-s", str(SNAPLEN), "-B", "65536"]
        command += ["-w", str(self.path)]
        self.proc = subprocess.Popen(
            [*command, f"tcp port {self.port}"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline().decode(errors="replace")  # "listening on lo, ..."
        if "listening" not in line:
            self.stop()
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # libpcap hands packets over a block at a time, a block at the latest after its
            # timeout (tcpdump's: 1 s); packets of a block not yet handed over when tcpdump
            # exits are lost. Wait them out first.
            time.sleep(BLOCK_TIMEOUT)
            self.proc.send_signal(signal.SIGINT)  # flushes the file and exits
            try:
                _, errors = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, errors = self.proc.communicate()
            self.report = errors.decode(errors="replace").strip()
            dropped = re.search(r"(\d+) packets? dropped by kernel", self.report)
            if dropped and int(dropped.group(1)):
                raise RuntimeError(f"tcpdump lost packets: {self.report}")

    def segments(self) -> list[Segment]:
        """Every captured TCP segment that carries a payload, in capture order."""
        segments = read_pcap(self.path.read_bytes())
        self.path.unlink()
        self.path.parent.rmdir()
        return segments


def read_pcap(data: bytes) -> list[Segment]:
    """Segments with a payload of a classic pcap file of IPv4/TCP on Ethernet or Linux cooked
    links."""
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    link = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype & 0xFFFF)
    if link is None:
        raise ValueError(f"unsupported pcap link type {linktype}")
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, captured, _ = struct.unpack_from(endian + "IIII", data, pos)
        packet = data[pos + 16 : pos + 16 + captured]
        pos += 16 + captured
        ip = packet[link:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue  # not IPv4/TCP
        ihl = (ip[0] & 0x0F) * 4
        (total,) = struct.unpack_from("!H", ip, 2)
        sport, dport, seq = struct.unpack_from("!HHI", ip, ihl)
        tcp_header = (ip[ihl + 12] >> 4) * 4
        length = total - ihl - tcp_header
        if length > 0:
            stamp = sec + frac / (1e9 if nano else 1e6)
            payload = bytes(ip[ihl + tcp_header : total])
            out.append(Segment(stamp, sport, dport, seq, payload, length))
    return out


# -- the connection's frames, from the reassembled bytes ----------------------------------------
def reassemble(segments: Sequence[Segment]) -> list[tuple[float, bytes]]:
    """The bytes of one direction of one connection in order, as (capture time, new bytes)
    per segment; a retransmitted byte is taken once. Raises if the capture misses bytes."""
    chunks: list[tuple[float, bytes]] = []
    expected: int | None = None
    for segment in segments:
        if len(segment.payload) != segment.length:
            raise RuntimeError("the capture cut a packet short: capture whole packets (-s 0)")
        if expected is None:
            expected = segment.seq
        offset = (expected - segment.seq) % (1 << 32)
        if offset >= 1 << 31:
            raise RuntimeError("the capture missed bytes of a connection (a gap in its sequence)")
        if offset >= segment.length:
            continue  # a retransmission of bytes already taken
        data = segment.payload[offset:]
        chunks.append((segment.time, data))
        expected = (expected + len(data)) % (1 << 32)
    return chunks


@dataclass(frozen=True)
class WireFrame:
    """One frame found in the captured bytes: when its first byte was captured, its size on
    the wire, its type (HTTP/2 frame type, WebSocket opcode; None for a preface, an upgrade
    or bytes of a protocol not walked) and whether it is the connection's own."""

    time: float
    size: int
    type: int | None
    connection: bool


def frames(
    chunks: Sequence[tuple[float, bytes]], protocol: str | None, *, client_to_server: bool
) -> Iterator[WireFrame]:
    """Every frame of one direction of one connection (``protocol`` "h2" or "websocket");
    for another protocol, each captured chunk as one piece of the calls' own bytes. A frame
    cut off by the end of the capture is left out."""
    if protocol is None:
        yield from (WireFrame(t, len(chunk), None, False) for t, chunk in chunks)
        return
    data = b"".join(chunk for _, chunk in chunks)
    starts = list(_starts(chunks))
    times = [t for t, _ in chunks]

    def at(offset: int) -> float:
        return times[bisect.bisect_right(starts, offset) - 1]

    pos = 0
    if protocol == "h2":
        if client_to_server and data.startswith(H2_PREFACE):
            yield WireFrame(at(0), len(H2_PREFACE), None, False)
            pos = len(H2_PREFACE)
        while pos + 9 <= len(data):
            size = 9 + int.from_bytes(data[pos : pos + 3], "big")
            if pos + size > len(data):
                return
            kind = data[pos + 3]
            yield WireFrame(at(pos), size, kind, kind in H2_CONNECTION_TYPES)
            pos += size
        return
    end = data.find(b"\r\n\r\n")  # the HTTP upgrade (request or response)
    if end < 0:
        return
    yield WireFrame(at(0), end + 4, None, False)
    pos = end + 4
    while pos + 2 <= len(data):
        opcode, second = data[pos] & 0x0F, data[pos + 1]
        length, header = second & 0x7F, 2
        if length == 126:
            length, header = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            length, header = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        size = header + (4 if second & 0x80 else 0) + length
        if pos + size > len(data):
            return
        yield WireFrame(at(pos), size, opcode, opcode in WS_CONNECTION_OPCODES)
        pos += size


def connection_frames(
    chunks: Sequence[tuple[float, bytes]], protocol: str | None, *, client_to_server: bool
) -> Iterator[tuple[float, int]]:
    """(time of its first byte, size) of every frame of the connection's own in one direction."""
    for frame in frames(chunks, protocol, client_to_server=client_to_server):
        if frame.connection:
            yield frame.time, frame.size


def _starts(chunks: Sequence[tuple[float, bytes]]) -> Iterator[int]:
    offset = 0
    for _, chunk in chunks:
        yield offset
        offset += len(chunk)


def protocol_of(c2s: Sequence[tuple[float, bytes]]) -> str | None:
    """What a connection speaks, from its first client bytes: "h2", "websocket" or None."""
    head = b"".join(chunk for _, chunk in c2s[:4])[:4096]
    if head.startswith(H2_PREFACE):
        return "h2"
    if head.startswith(b"GET ") and b"websocket" in head.lower():
        return "websocket"
    return None


_SS_SOCKET = re.compile(r"\S+:(\d+)\s+\S+:(\d+)\s*\n?\s*(.*?)(?=\n\S|\Z)", re.S)


def server_socket_counts(port: int) -> dict[int, tuple[int, int]]:
    """{client port: (bytes the server received, bytes it sent that were acked)} from ss."""
    text = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts = {}
    for local, peer, info in _SS_SOCKET.findall(text):
        if int(local) != port:
            continue
        received = re.search(r"bytes_received:(\d+)", info)
        acked = re.search(r"bytes_acked:(\d+)", info)
        counts[int(peer)] = (
            int(received.group(1)) if received else 0,
            int(acked.group(1)) if acked else 0,
        )
    return counts


# -- the measurement -----------------------------------------------------------------------------
@dataclass
class _Marks:
    """When each measured call began, and (kernel fallback) the server's socket counters then."""

    times: list[float]
    kernel: list[dict[int, tuple[int, int]]]

    def mark(self, port: int, *, kernel: bool) -> None:
        self.times.append(time.time())
        if kernel:
            self.kernel.append(server_socket_counts(port))


async def steady_round_trips(
    transport: str, address: tuple[str, int], calls: int
) -> dict[str, list[CallBytes]]:
    """``calls`` steady send round trips (32-byte ASCII body, one 12-character recipient: the
    send, its push, the receiver's ack) by clients connected straight to the server, each op
    measured by the capture (or ss): {"send": [...], "deliver": [...], "ack": [...]}."""
    port = address[1]
    module = registry.get(transport)
    capture = Tcpdump(port) if tcpdump_usable() else None
    if capture is not None:
        capture.start()
    tag = os.urandom(3).hex()
    names = [username(tag, "c", 0), username(tag, "c", 1)]
    clients: list[ChatClient] = [module.open_client(address, auto_ack=False) for _ in names]
    client_ports: list[int] = []
    marks = _Marks([], [])  # per call: before the send, before the ack; and one at the end
    try:
        for client, name in zip(clients, names, strict=True):
            before = set(server_socket_counts(port))
            await client.connect()
            await client.signup(name, PASSWORD)
            await asyncio.sleep(GAP)
            new = set(server_socket_counts(port)) - before
            if len(new) != 1:
                raise RuntimeError(f"{transport}: a client opened {len(new)} connections, not 1")
            client_ports += new
        sender, receiver = clients
        body = make_body(32, "ascii")
        for index in range(WARM_UP + calls):
            measured = index >= WARM_UP
            if measured:
                await asyncio.sleep(GAP)
                marks.mark(port, kernel=capture is None)
            _, delivery = await asyncio.gather(
                sender.send([names[1]], body), receiver.next_message(30.0)
            )
            if measured:
                await asyncio.sleep(GAP)
                marks.mark(port, kernel=capture is None)
            await receiver.ack([delivery.message_id])
        await asyncio.sleep(GAP)
        marks.mark(port, kernel=capture is None)
        for client, name in zip(clients, names, strict=True):
            await client.delete_account(name, PASSWORD)
    finally:
        for client in clients:
            await client.close()
        if capture is not None:
            capture.stop()
    sender_port, receiver_port = client_ports
    # marks: send i runs from mark 2i to 2i+2; its push (deliver) to 2i+1, the ack from there
    spans = {
        "send": (sender_port, [(2 * i, 2 * i + 2) for i in range(calls)]),
        "deliver": (receiver_port, [(2 * i, 2 * i + 1) for i in range(calls)]),
        "ack": (receiver_port, [(2 * i + 1, 2 * i + 2) for i in range(calls)]),
    }
    if capture is None:
        k = marks.kernel
        return {
            op: [
                CallBytes(k[b][peer][0] - k[a][peer][0], k[b][peer][1] - k[a][peer][1])
                for a, b in pairs
            ]
            for op, (peer, pairs) in spans.items()
        }
    t = marks.times
    windows = {op: (peer, [(t[a], t[b]) for a, b in pairs]) for op, (peer, pairs) in spans.items()}
    return split_calls(capture.segments(), port, windows)


def split_calls(
    segments: Sequence[Segment],
    port: int,
    windows: dict[str, tuple[int, list[tuple[float, float]]]],
) -> dict[str, list[CallBytes]]:
    """Each op's calls from the captured segments: {op: (client port, [(start, end)...])}."""
    result: dict[str, list[CallBytes]] = {}
    for op, (peer, spans) in windows.items():
        up = [s for s in segments if (s.sport, s.dport) == (peer, port)]
        down = [s for s in segments if (s.sport, s.dport) == (port, peer)]
        c2s, s2c = reassemble(up), reassemble(down)
        protocol = protocol_of(c2s)
        walked = {
            "up": list(frames(c2s, protocol, client_to_server=True)),
            "down": list(frames(s2c, protocol, client_to_server=False)),
        }

        def within(items: Sequence[tuple[float, int]], a: float, b: float) -> int:
            return sum(n for stamp, n in items if a <= stamp < b)

        def part(found: list[WireFrame], connection: bool) -> list[tuple[float, int]]:
            return [(f.time, f.size) for f in found if f.connection is connection]

        sizes_up = [(x.time, x.length) for x in up]
        sizes_down = [(x.time, x.length) for x in down]
        result[op] = [
            CallBytes(
                within(sizes_up, a, b),
                within(sizes_down, a, b),
                within(part(walked["up"], True), a, b),
                within(part(walked["down"], True), a, b),
                within(part(walked["up"], False), a, b),
                within(part(walked["down"], False), a, b),
            )
            for a, b in spans
        ]
        empty = sum(1 for c in result[op] if not c.c2s and not c.s2c)
        if empty:
            raise RuntimeError(f"the capture holds no packet of {empty} {op} calls: packets lost")
    return result


def bench_figures(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """The bench's steady headline (c2s, s2c) of each op in OPS (32 B body, one recipient)."""

    def row(op: str, labels: tuple[Any, ...]) -> dict[str, Any]:
        (found,) = [
            r
            for r in rows
            if (r["op"], r["phase"]) == (op, "steady")
            and (r["body_bytes"], r["recipients"], r["text"]) == labels
        ]
        return found

    base = (32, 1, "ascii")
    labels = {"send": base, "deliver": base, "ack": (None, None, None)}
    return {op: (row(op, labels[op])["c2s_bytes"], row(op, labels[op])["s2c_bytes"]) for op in OPS}


def typical(calls: Sequence[CallBytes]) -> tuple[tuple[int, int], int]:
    """The most frequent (c2s, s2c) of the calls' own frames, and how many calls had it."""
    return collections.Counter(c.own for c in calls).most_common(1)[0]


def instrument() -> str:
    return "tcpdump" if tcpdump_usable() else "ss (kernel TCP counters of the server's sockets)"


@dataclass(frozen=True)
class Comparison:
    """One op of one transport: the bench's headline against the capture's calls."""

    transport: str
    op: str
    bench: tuple[int, int]
    capture: tuple[int, int]  # the typical call's own frames
    same: int  # calls whose own frames were exactly ``capture``
    calls: int
    payload: tuple[int, int, float]  # TCP payload per call (both ways): min, max, mean
    plain: int  # calls that carried no connection frame (their TCP payload is the call's)
    connection_mean: float  # the connection's frames per call (both ways)
    resent: int  # TCP payload bytes retransmitted over all the calls (both ways)

    @property
    def error(self) -> float:
        want = sum(self.bench)
        return abs(want - sum(self.capture)) / want


def comparison(
    transport: str, op: str, bench: tuple[int, int], calls: Sequence[CallBytes]
) -> Comparison:
    """The bench's headline (c2s, s2c) of one op against its captured calls."""
    own, same = typical(calls)
    payloads = [c.c2s + c.s2c for c in calls]
    return Comparison(
        transport,
        op,
        bench,
        own,
        same,
        len(calls),
        (min(payloads), max(payloads), sum(payloads) / len(payloads)),
        sum(1 for c in calls if not c.c2s_connection and not c.s2c_connection),
        sum(c.c2s_connection + c.s2c_connection for c in calls) / len(calls),
        sum(c.resent for c in calls),
    )


def compare(
    transport: str, rows: Sequence[dict[str, Any]], seen: dict[str, list[CallBytes]]
) -> list[Comparison]:
    """The bench's rows against the captured calls, op by op."""
    bench = bench_figures(rows)
    return [comparison(transport, op, bench[op], seen[op]) for op in OPS]


def format_table(comparisons: Sequence[Comparison]) -> str:
    """A Markdown table of the comparisons."""
    head = (
        "| transport | op | bench c2s+s2c | capture c2s+s2c (calls identical) | "
        "TCP payload / call min..max (mean) | calls with no connection frame | "
        "connection frames B / call | retransmitted B | difference |\n|" + "---|" * 9
    )
    lines = [head]
    for c in comparisons:
        lo, hi, mean = c.payload
        lines.append(
            f"| {c.transport} | {c.op} | {c.bench[0]}+{c.bench[1]} = {sum(c.bench)} | "
            f"{c.capture[0]}+{c.capture[1]} = {sum(c.capture)} ({c.same}/{c.calls}) | "
            f"{lo}..{hi} ({mean:.1f}) | {c.plain}/{c.calls} | {c.connection_mean:.1f} | "
            f"{c.resent} | {c.error:.2%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.capture_account import bench_resume, steady_resumes
    from bench.wire import measure_sizes
    from wirechat.launch import ServerProcess

    parser = argparse.ArgumentParser(prog="python -m bench.capture", description=__doc__)
    parser.add_argument("--transports", default=",".join(registry.WIRE_TRANSPORTS))
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args(argv)
    names = [n for n in args.transports.split(",") if n]
    comparisons: list[Comparison] = []
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(names, Path(tmp) / "db") as server:
        for name in names:
            address = server.addresses[name]
            rows = asyncio.run(measure_sizes(name, address, WIRE_QUICK))
            seen = asyncio.run(steady_round_trips(name, address, args.calls))
            comparisons += compare(name, rows, seen)
            resumes = asyncio.run(steady_resumes(name, address, args.calls))
            comparisons.append(comparison(name, "resume", bench_resume(rows), resumes))
    print(f"instrument: {instrument()}; {args.calls} steady round trips and resumes per transport")
    print(format_table(comparisons))
    worst = max(c.error for c in comparisons)
    return 0 if worst <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
