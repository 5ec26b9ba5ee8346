"""TLS byte streams as bench/tls_rows.py counts them: a counting TCP relay in front of a
server, the TLS records of each direction (from their 5-byte headers, RFC 8446 5.1), and the
version, cipher suite and key exchange group the ServerHello (sent in clear) names."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from typing import Any

#: Seconds a relay must carry nothing before an operation's bytes are read (as bench/wire.py).
QUIET_S = 0.03
#: Seconds an operation (and its quiet gap) may take before the job fails.
OP_TIMEOUT_S = 30.0
#: TLS record content types (RFC 8446 5.1).
RECORD_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
#: Cipher suites by code (TLS 1.3, RFC 8446 B.4; the TLS 1.2 ones grpc may pick otherwise).
SUITES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02F: "ECDHE_RSA_AES_128_GCM_SHA256",
    0xC030: "ECDHE_RSA_AES_256_GCM_SHA384",
    0xC02B: "ECDHE_ECDSA_AES_128_GCM_SHA256",
    0xC02C: "ECDHE_ECDSA_AES_256_GCM_SHA384",
    0xCCA8: "ECDHE_RSA_CHACHA20_POLY1305",
    0xCCA9: "ECDHE_ECDSA_CHACHA20_POLY1305",
}
VERSIONS = {0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
#: Key exchange groups (RFC 8446 4.2.7; the hybrid post-quantum one is draft-kwiatkowski-tls-
#: ecdhe-mlkem: its key shares are ~1.2 kB each way, what BoringSSL in grpcio offers first).
GROUPS = {
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x001D: "x25519",
    0x11EC: "X25519MLKEM768",
    0x6399: "X25519Kyber768Draft00",
}
Hello = tuple[str | None, str | None, str | None]
NO_HELLO: Hello = (None, None, None)


class Records:
    """Counts the TLS records of one direction's byte stream (from their 5-byte headers) as
    it passes, and keeps its first bytes (s2c: the ServerHello, sent in clear)."""

    HEAD_BYTES = 4096

    def __init__(self) -> None:
        self.header = b""  # an incomplete record header
        self.skip = 0  # bytes of the current record's body still to pass
        self.count = 0
        self.head = b""  # the stream's first HEAD_BYTES

    def feed(self, data: bytes) -> None:
        if len(self.head) < self.HEAD_BYTES:
            self.head += data[: self.HEAD_BYTES - len(self.head)]
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                continue
            take = min(5 - len(self.header), n - i)
            self.header += data[i : i + take]
            i += take
            if len(self.header) == 5:
                self.count += 1
                self.skip = int.from_bytes(self.header[3:5], "big")
                self.header = b""


def server_hello(record: bytes | None) -> Hello:
    """(version, cipher suite, key exchange group) from the first bytes the server sent: a
    ServerHello, in clear (the group only in TLS 1.3: its key_share extension)."""
    if not record or len(record) < 5 + 4 + 2 + 32 + 1 or record[0] != 22 or record[5] != 2:
        return NO_HELLO
    body = record[9 : 5 + int.from_bytes(record[3:5], "big")]
    version = int.from_bytes(body[0:2], "big")
    pos = 2 + 32
    pos += 1 + body[pos]  # legacy_session_id_echo
    suite = int.from_bytes(body[pos : pos + 2], "big")
    pos += 3  # cipher_suite, legacy_compression_method
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    group = None
    while pos + 4 <= min(end, len(body)):
        kind = int.from_bytes(body[pos : pos + 2], "big")
        size = int.from_bytes(body[pos + 2 : pos + 4], "big")
        if kind == 43 and size == 2:  # supported_versions: the version actually chosen
            version = int.from_bytes(body[pos + 4 : pos + 6], "big")
        if kind == 51 and size >= 2:  # key_share: the group the server's key belongs to
            group = int.from_bytes(body[pos + 4 : pos + 6], "big")
        pos += 4 + size
    named = None if group is None else GROUPS.get(group, hex(group))
    return VERSIONS.get(version, hex(version)), SUITES.get(suite, hex(suite)), named


class Relay:
    """A TCP relay on 127.0.0.1 in front of ``target``, counting payload bytes both ways (and
    TLS records when ``tls``). ``address`` once started."""

    def __init__(self, target: tuple[str, int], *, tls: bool) -> None:
        self.target = target
        self.tls = tls
        self.bytes = {"c2s": 0, "s2c": 0}
        self.records = {"c2s": 0, "s2c": 0}
        self.hello: Hello = NO_HELLO
        self.last = time.monotonic()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        s2c = Records()
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, "c2s", Records())),
            asyncio.ensure_future(self._pump(up_reader, writer, "s2c", s2c)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            for w in (writer, up_writer):
                w.close()
            if self.tls and self.hello == NO_HELLO:
                self.hello = server_hello(s2c.head)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        records: Records,
    ) -> None:
        while data := await reader.read(65536):
            self.bytes[direction] += len(data)
            self.last = time.monotonic()
            if self.tls:
                before = records.count
                records.feed(data)
                self.records[direction] += records.count - before
                if direction == "s2c" and self.hello == NO_HELLO:
                    self.hello = server_hello(records.head)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def snapshot(self) -> tuple[int, int, int, int]:
        return self.bytes["c2s"], self.bytes["s2c"], self.records["c2s"], self.records["s2c"]

    async def quiet(self) -> None:
        """Wait until nothing has crossed for QUIET_S."""
        # polls a timestamp the pumps move (an Event per byte would cost the pumps more)
        while (gap := time.monotonic() - self.last) < QUIET_S:  # noqa: ASYNC110
            await asyncio.sleep(QUIET_S - gap + 0.002)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def counted(relays: Sequence[Relay], action: Awaitable[Any]) -> list[tuple[int, ...]]:
    """Per relay: (c2s, s2c, c2s records, s2c records) that ``action`` caused."""
    for relay in relays:
        await relay.quiet()
    before = [relay.snapshot() for relay in relays]
    async with asyncio.timeout(OP_TIMEOUT_S):
        await action
        for relay in relays:
            await relay.quiet()
    return [
        tuple(a - b for a, b in zip(relay.snapshot(), start, strict=True))
        for relay, start in zip(relays, before, strict=True)
    ]


__all__ = [
    "GROUPS",
    "NO_HELLO",
    "OP_TIMEOUT_S",
    "QUIET_S",
    "RECORD_TYPES",
    "SUITES",
    "VERSIONS",
    "Hello",
    "Relay",
    "counted",
    "server_hello",
]
