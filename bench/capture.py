"""An independent check of the bench's steady byte figures: a packet capture on loopback.

``bench/wire.py`` counts bytes in a relay between client and server. This module measures the
same thing without the relay and without any of the bench's parsers: two real clients talk
to the server directly while ``tcpdump`` captures loopback; the TCP payload lengths of the
captured segments (IP total length minus the IP and TCP headers) are summed per direction of
each connection, for each of a series of steady send round trips (the send on the sender's
connection; the push and the ack on the receiver's), each call's window running from its
start to the next one's (so, like the bench, a call also takes the bytes that follow it).
The typical call (the most frequent (c2s, s2c) pair: calls near a timer-driven gRPC ping
differ) is the capture's steady figure: the sender's must equal the bench's ``send`` row, the
receiver's its ``deliver`` plus ``ack`` rows, within 1 %.

Where ``tcpdump`` is missing (or the process may not capture), the kernel's own per-socket
counters (``ss -ti``: bytes_received and bytes_acked of the server's socket) are read at the
same moments instead; that is an independent instrument too (the relay reads TCP_INFO of its
own sockets, not of the server's). Debian's ``tcpdump`` package provides the capture; ``ss``
(iproute2) also tells which server socket is which client's.

    python -m bench.capture [--transports custom,grpc] [--calls 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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
#: Bytes of each packet tcpdump keeps: enough for any IPv4 + TCP header.
SNAPLEN = 160


@dataclass(frozen=True)
class CallBytes:
    """TCP payload bytes of one call on the sender's connection."""

    c2s: int
    s2c: int


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
        command = [
            "tcpdump",
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-n",
            "-s",
            str(SNAPLEN),
            "-w",
            str(self.path),
        ]
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
            self.proc.send_signal(signal.SIGINT)  # flushes the file and exits
            try:
                _, errors = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, errors = self.proc.communicate()
            self.report = errors.decode(errors="replace").strip()

    def segments(self) -> list[tuple[float, int, int, int]]:
        """(time, source port, destination port, TCP payload bytes) of every captured segment."""
        return list(read_pcap(self.path.read_bytes()))


def read_pcap(data: bytes) -> list[tuple[float, int, int, int]]:
    """Segments of a classic pcap file of IPv4/TCP on Ethernet or Linux cooked links."""
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
        sport, dport = struct.unpack_from("!HH", ip, ihl)
        tcp_header = (ip[ihl + 12] >> 4) * 4
        stamp = sec + frac / (1e9 if nano else 1e6)
        out.append((stamp, sport, dport, total - ihl - tcp_header))
    return out


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
#: What each connection of a round trip carries: the sender's the ``send`` op, the receiver's
#: the ``deliver`` and ``ack`` ops (the push, the credit for it, the ack and its reply).
SENDER, RECEIVER = "send", "deliver+ack"


async def steady_round_trips(
    transport: str, address: tuple[str, int], calls: int
) -> dict[str, list[CallBytes]]:
    """``calls`` steady send round trips (32-byte ASCII body, one 12-character recipient: the
    send, its push, the receiver's ack) by clients connected straight to the server, each
    measured by the capture (or ss), per connection: {SENDER: [...], RECEIVER: [...]}."""
    port = address[1]
    module = registry.get(transport)
    capture = Tcpdump(port) if tcpdump_usable() else None
    if capture is not None:
        capture.start()
    tag = os.urandom(3).hex()
    names = [username(tag, "c", 0), username(tag, "c", 1)]
    clients: list[ChatClient] = [module.open_client(address, auto_ack=False) for _ in names]
    client_ports: list[int] = []
    marks: list[float] = []
    kernel: list[dict[int, tuple[int, int]]] = []
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
            if index >= WARM_UP:
                await asyncio.sleep(GAP)
                marks.append(time.time())
                kernel.append(server_socket_counts(port))
            _, delivery = await asyncio.gather(
                sender.send([names[1]], body), receiver.next_message(30.0)
            )
            await receiver.ack([delivery.message_id])
        await asyncio.sleep(GAP)
        marks.append(time.time())
        kernel.append(server_socket_counts(port))
        for client, name in zip(clients, names, strict=True):
            await client.delete_account(name)
    finally:
        for client in clients:
            await client.close()
        if capture is not None:
            capture.stop()
    result: dict[str, list[CallBytes]] = {SENDER: [], RECEIVER: []}
    segments = capture.segments() if capture is not None else []
    for key, peer in zip((SENDER, RECEIVER), client_ports, strict=True):
        if capture is None:
            result[key] = [
                CallBytes(after[peer][0] - start[peer][0], after[peer][1] - start[peer][1])
                for start, after in itertools.pairwise(kernel)
            ]
            continue
        for start, end in itertools.pairwise(marks):
            inside = [s for s in segments if start <= s[0] < end]
            c2s = sum(n for _, src, dst, n in inside if src == peer and dst == port)
            s2c = sum(n for _, src, dst, n in inside if src == port and dst == peer)
            result[key].append(CallBytes(c2s, s2c))
    return result


async def steady_sends(transport: str, address: tuple[str, int], calls: int) -> list[CallBytes]:
    """The sender's side of :func:`steady_round_trips`: one ``send`` op per call."""
    return (await steady_round_trips(transport, address, calls))[SENDER]


def bench_figures(rows: Sequence[dict[str, Any]]) -> dict[str, CallBytes]:
    """The bench's steady figures for what each connection of a round trip carries."""

    def row(op: str, labels: tuple[Any, ...]) -> dict[str, Any]:
        (found,) = [
            r
            for r in rows
            if (r["op"], r["phase"]) == (op, "steady")
            and (r["body_bytes"], r["recipients"], r["text"]) == labels
        ]
        return found

    base = (32, 1, "ascii")
    send, deliver, ack = row("send", base), row("deliver", base), row("ack", (None, None, None))
    return {
        SENDER: CallBytes(send["c2s_bytes"], send["s2c_bytes"]),
        RECEIVER: CallBytes(
            deliver["c2s_bytes"] + ack["c2s_bytes"], deliver["s2c_bytes"] + ack["s2c_bytes"]
        ),
    }


def typical(calls: Sequence[CallBytes]) -> CallBytes:
    """The most frequent (c2s, s2c) pair: the undisturbed steady call."""
    return collections.Counter(calls).most_common(1)[0][0]


def instrument() -> str:
    return "tcpdump" if tcpdump_usable() else "ss (kernel TCP counters of the server's sockets)"


def main(argv: Sequence[str] | None = None) -> int:
    from bench.wire import measure_sizes
    from wirechat.launch import ServerProcess

    parser = argparse.ArgumentParser(prog="python -m bench.capture", description=__doc__)
    parser.add_argument("--transports", default=",".join(registry.WIRE_TRANSPORTS))
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    names = [n for n in args.transports.split(",") if n]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(names, Path(tmp) / "db") as server:
        print(f"instrument: {instrument()}")
        for name in names:
            address = server.addresses[name]
            rows = asyncio.run(measure_sizes(name, address, WIRE_QUICK))
            bench = bench_figures(rows)
            seen = asyncio.run(steady_round_trips(name, address, args.calls))
            for key in (SENDER, RECEIVER):
                want, got = bench[key], typical(seen[key])
                error = abs((want.c2s + want.s2c) - (got.c2s + got.s2c)) / (want.c2s + want.s2c)
                worst = max(worst, error)
                print(
                    f"{name:13} {key:12} bench {want.c2s} + {want.s2c}   "
                    f"capture {got.c2s} + {got.s2c}   {error:.2%}"
                )
    return 0 if worst <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
