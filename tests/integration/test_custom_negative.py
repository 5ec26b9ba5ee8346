"""Bad input against a real server process (Rule 18).

Each case writes raw bytes on its own connection and must get its ERROR code (request id 0)
and then a closed connection, while two users logged in on the same server keep chatting: after
every case they exchange messages, so one bad client visibly harms no other session. Frames are
built here from PROTOCOL.md, not with the codec under test.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
import struct
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from transports.custom import open_client
from wirechat.launch import ServerProcess

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]
WAIT = 5.0

# -- frames from the spec (PROTOCOL.md sections 2-3) ---------------------------------------------
MALFORMED, FRAME_TOO_LARGE, UNSUPPORTED_VERSION, UNKNOWN_OPCODE, BAD_HANDSHAKE, INVALID_UTF8 = (
    range(1, 7)
)
WELCOME, SIGNED_UP, ACCOUNTS, SENT, PONG, ERROR = 0x81, 0x82, 0x85, 0x86, 0x89, 0xFF
MAX_FRAME = 98_304


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return varint(len(data)) + data


def frame(opcode: int, request_id: int, body: bytes = b"") -> bytes:
    inner = bytes([opcode]) + varint(request_id) + body
    return varint(len(inner)) + inner


def raw(length: int | bytes, rest: bytes = b"") -> bytes:
    """A frame with a hand-made length field (to lie about it)."""
    return (varint(length) if isinstance(length, int) else length) + rest


HELLO = frame(0x01, 0, b"WC\x01\x01")


def parse(data: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """(opcode, request id, body) of each whole frame, and the bytes left over."""
    frames, pos = [], 0

    def read_varint() -> int | None:
        nonlocal pos
        value = shift = 0
        while pos < len(data):
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        return None

    while True:
        start = pos
        length = read_varint()
        if length is None or pos + length > len(data):
            return frames, data[start:]
        end = pos + length
        opcode = data[pos]
        pos += 1
        rid = read_varint()
        assert rid is not None
        frames.append((opcode, rid, data[pos:end]))
        pos = end


async def exchange(
    address: tuple[str, int], data: bytes, *, half_close: bool = False
) -> list[tuple[int, int, bytes]]:
    """Write ``data`` on a fresh connection, read until the server closes, return the frames."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        received = b""
        async with asyncio.timeout(WAIT):  # the server must close by itself
            while chunk := await reader.read(65536):
                received += chunk
    finally:
        writer.close()
    frames, leftover = parse(received)
    assert leftover == b"", f"the server closed in the middle of a frame: {leftover!r}"
    return frames


def assert_closed_with(frames: list[tuple[int, int, bytes]], code: int) -> None:
    assert frames, "the server closed without an ERROR"
    opcode, rid, body = frames[-1]
    assert (opcode, rid) == (ERROR, 0), frames[-1]
    assert body[0] == code, f"expected code 0x{code:02X}, got {frames[-1]}"
    body[1:].decode()  # a message for a person, in UTF-8


# -- the server and the two users who must not notice anything ----------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(["custom"], tmp_path_factory.mktemp("custom-negative") / "db.sqlite")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def address(server: ServerProcess) -> tuple[str, int]:
    return server.addresses["custom"]


class Witnesses:
    def __init__(self, address: tuple[str, int]) -> None:
        tag = secrets.token_hex(4)
        self.names = (f"alice_{tag}", f"bob_{tag}")
        self.alice = open_client(address)
        self.bob = open_client(address)
        self.rounds = 0

    async def start(self) -> None:
        for client, name in zip((self.alice, self.bob), self.names, strict=True):
            await client.connect()
            await client.signup(name, "pw-secret-123")

    async def chat(self) -> None:
        """One message each way on the same long-lived sessions."""
        self.rounds += 1
        alice, bob = self.names
        await self.alice.send([bob], f"ping {self.rounds}")
        assert (await self.bob.next_message(WAIT)).body == f"ping {self.rounds}"
        await self.bob.send([alice], f"pong {self.rounds}")
        assert (await self.alice.next_message(WAIT)).body == f"pong {self.rounds}"

    async def close(self) -> None:
        await self.alice.close()
        await self.bob.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def witnesses(address: tuple[str, int]) -> AsyncIterator[Witnesses]:
    pair = Witnesses(address)
    await pair.start()
    try:
        yield pair
    finally:
        await pair.close()


def assert_server_healthy(server: ServerProcess) -> None:
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    bad = [line for line in server.log_lines if "Traceback" in line or "never retrieved" in line]
    assert not bad, "\n".join(server.log_lines[-40:])


# -- the table: name -> (bytes, expected code, send HELLO first) --------------------------------
LOGIN_AB = frame(0x03, 1, string("a") + string("b"))
CASES: dict[str, tuple[bytes, int, bool]] = {
    "length varint not minimal": (b"\x80\x00", MALFORMED, True),
    "length varint over 5 bytes": (b"\xff\xff\xff\xff\xff\x01", MALFORMED, True),
    "request id varint over 5 bytes": (raw(7, b"\x04\xff\xff\xff\xff\xff\x01"), MALFORMED, True),
    "request id 0": (frame(0x04, 0), MALFORMED, True),
    "string runs past the frame": (raw(5, b"\x03\x01\x09ab"), MALFORMED, True),
    "missing field": (frame(0x03, 1, string("a")), MALFORMED, True),
    "trailing bytes": (frame(0x04, 1, b"\x00"), MALFORMED, True),
    "send to no one": (frame(0x06, 1, b"\x00hi"), MALFORMED, True),
    "send to 257": (frame(0x06, 1, varint(257) + string("x") * 257 + b"hi"), MALFORMED, True),
    "ack with a request id": (frame(0x07, 1, b"\x01\x05"), MALFORMED, True),
    "ack ids not increasing": (frame(0x07, 0, b"\x02\x05\x00"), MALFORMED, True),
    "oversized length, no body sent": (varint(MAX_FRAME + 1), FRAME_TOO_LARGE, True),
    "oversized length before HELLO": (varint(2**31), FRAME_TOO_LARGE, False),
    "over 1 KiB before a login": (varint(1025) + b"\x09\x01", FRAME_TOO_LARGE, True),
    "unknown opcode": (frame(0x42, 1), UNKNOWN_OPCODE, True),
    "server opcode from a client": (frame(0x83, 1, b"\x00"), UNKNOWN_OPCODE, True),
    "only later versions": (frame(0x01, 0, b"WC\x05\x07"), UNSUPPORTED_VERSION, False),
    "version range reversed": (frame(0x01, 0, b"WC\x01\x00"), BAD_HANDSHAKE, False),
    "bad magic": (frame(0x01, 0, b"HI\x01\x01"), BAD_HANDSHAKE, False),
    "HELLO with a request id": (frame(0x01, 5, b"WC\x01\x01"), BAD_HANDSHAKE, False),
    "request before HELLO": (LOGIN_AB, BAD_HANDSHAKE, False),
    "second HELLO": (HELLO, BAD_HANDSHAKE, True),
    "an HTTP request": (b"GET / HTTP/1.1\r\nHost: chat\r\n\r\n" + b" " * 64, BAD_HANDSHAKE, False),
    "username not UTF-8": (frame(0x02, 1, string(b"\xc3\x28") + string("pw")), INVALID_UTF8, True),
    "overlong UTF-8": (frame(0x03, 1, string(b"\xc0\xaf") + string("pw")), INVALID_UTF8, True),
    "body not UTF-8": (frame(0x06, 1, b"\x01" + string("b") + b"\xed\xa0\x80"), INVALID_UTF8, True),
}


@pytest.mark.parametrize("name", CASES)
async def test_bad_input_gets_its_error_then_a_close(
    name: str, address: tuple[str, int], witnesses: Witnesses, server: ServerProcess
) -> None:
    data, code, hello_first = CASES[name]
    frames = await exchange(address, HELLO + data if hello_first else data)
    if hello_first:
        assert frames[0][0] == WELCOME
    assert_closed_with(frames, code)
    assert len(frames) == (2 if hello_first else 1)
    await witnesses.chat()
    assert_server_healthy(server)


@pytest.mark.parametrize("seed", range(6))
async def test_random_bytes(
    seed: int, address: tuple[str, int], witnesses: Witnesses, server: ServerProcess
) -> None:
    """Random bytes, from the start or after HELLO; the client then closes its side, so a
    frame left incomplete is MALFORMED too. Whatever else happens, an ERROR ends it."""
    rng = random.Random(seed)
    garbage = rng.randbytes(rng.randrange(1, 3000))
    data = HELLO + garbage if seed % 2 else garbage
    frames = await exchange(address, data, half_close=True)
    opcode, rid, body = frames[-1]
    assert (opcode, rid) == (ERROR, 0)
    assert 0x01 <= body[0] <= 0x0F  # a connection-level code
    await witnesses.chat()
    assert_server_healthy(server)


async def test_end_of_stream_inside_a_frame(
    address: tuple[str, int], witnesses: Witnesses, server: ServerProcess
) -> None:
    frames = await exchange(address, HELLO + frame(0x09, 1, b"hello")[:-2], half_close=True)
    assert [f[0] for f in frames] == [WELCOME, ERROR]
    assert_closed_with(frames, MALFORMED)
    await witnesses.chat()
    assert_server_healthy(server)


async def test_abrupt_disconnect_mid_frame(
    address: tuple[str, int], witnesses: Witnesses, server: ServerProcess
) -> None:
    """A logged-in client vanishes (RST) halfway through a SEND; its session is cleaned up and
    a message to it waits for its next login."""
    carol = f"carol_{secrets.token_hex(4)}"
    reader, writer = await asyncio.open_connection(*address)
    writer.write(HELLO + frame(0x02, 1, string(carol) + string("pw-secret-123")))
    received = b""
    async with asyncio.timeout(WAIT):
        while len(parse(received)[0]) < 2:
            received += await reader.read(4096)
    assert [f[0] for f in parse(received)[0]] == [WELCOME, SIGNED_UP]
    writer.write(frame(0x06, 1, b"\x01" + string(witnesses.names[0]) + b"half a messa")[:-6])
    await writer.drain()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST, mid-frame

    await witnesses.chat()
    result = await witnesses.alice.send([carol], "are you there?")
    assert result.unknown_recipients == ()
    async with open_client(address) as again:
        assert (await again.login(carol, "pw-secret-123")).pending == 1
        assert (await again.next_message(WAIT)).body == "are you there?"
    assert_server_healthy(server)


async def test_pipelined_requests_then_garbage(
    address: tuple[str, int], witnesses: Witnesses, server: ServerProcess
) -> None:
    """Everything in one write: each request is answered in order with its own request id,
    then the garbage gets its ERROR. The message sent in the batch reaches its recipient."""
    dave, bob = f"dave_{secrets.token_hex(4)}", witnesses.names[1]
    batch = (
        HELLO
        + frame(0x02, 1, string(dave) + string("pw-secret-123"))
        + frame(0x09, 2, b"are you there")
        + frame(0x05, 3, string(dave) + string("") + varint(0))
        + frame(0x06, 4, b"\x01" + string(bob) + "pipelined ✓".encode())
        + frame(0x09, 5)
        + frame(0x42, 6)
    )
    frames = await exchange(address, batch)
    assert [(f[0], f[1]) for f in frames] == [
        (WELCOME, 0),
        (SIGNED_UP, 1),
        (PONG, 2),
        (ACCOUNTS, 3),
        (SENT, 4),
        (PONG, 5),
        (ERROR, 0),
    ]
    assert frames[2][2] == b"are you there"
    assert frames[3][2] == b"\x00\x01" + string(dave)  # more = 0, one name
    assert_closed_with(frames, UNKNOWN_OPCODE)
    message = await witnesses.bob.next_message(WAIT)
    assert (message.sender, message.body) == (dave, "pipelined ✓")
    await witnesses.chat()
    assert_server_healthy(server)


async def test_largest_frame_is_accepted(address: tuple[str, int], witnesses: Witnesses) -> None:
    payload = b"p" * (MAX_FRAME - 2)  # opcode + 1-byte request id + payload = the limit
    reader, writer = await asyncio.open_connection(*address)
    # (after a signup: before a login a frame is at most 1 KiB, PROTOCOL.md section 4)
    signup = frame(0x02, 1, string("largest") + string("pw-secret-123"))
    try:
        writer.write(HELLO + signup + frame(0x09, 2, payload))
        received = b""
        async with asyncio.timeout(WAIT):
            while len(parse(received)[0]) < 3:
                received += await reader.read(65536)
    finally:
        writer.close()
    frames, _ = parse(received)
    assert frames[1][:2] == (0x82, 1)  # SIGNED_UP
    assert frames[2] == (PONG, 2, payload)
    await witnesses.chat()
