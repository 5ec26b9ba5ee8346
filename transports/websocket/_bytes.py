"""The bench's byte counter for the WebSocket transport (registry entry ``websocket``).

Frames are parsed by the ``websockets`` library's own sans-IO frame parser
(``websockets.frames.Frame.parse`` over its generator-based ``StreamReader``: bytes in, frames
out, no socket), the one the transport itself runs on, so no second dependency (wsproto) and
no hand-written RFC 6455 parser. This module only decides what each byte is.

Breakdown
    control  the HTTP/1.1 upgrade: the client's GET request and the server's
             ``101 Switching Protocols`` response, headers and blank line included (kind
             ``HTTP_UPGRADE``); and whole PING, PONG and CLOSE frames.
    framing  each data frame's header: 2 bytes, plus 2 or 8 of extended length for payloads of
             126 bytes or more, plus the 4-byte masking key on every client-to-server frame
             (RFC 6455 section 5.2): 6, 8 or 14 bytes client to server, 2, 4 or 10 back.
    payload  the frame's payload: the JSON text (or, were permessage-deflate negotiated, the
             compressed bytes as sent).
    headers  always 0 (the upgrade's headers are connection set-up: control).

Details (``by_kind``): ``TEXT`` is a text frame's bytes except the JSON object keys, which
are counted under ``TEXT_FIELD_NAMES`` (each key with its two quotes, as JSON spells it; the
colons, commas and braces stay under ``TEXT``): what positional or tagged encodings avoid.

``TIMER_KINDS`` and ``CONNECTION_KINDS``: PING and PONG, which ``websockets`` sends on its
keepalive timer (every 20 s by default), never because of a call: the connection's frames,
never in a call's headline (the bench reports them per second and amortized per call).

Numbers in JSON are decimal text, so a figure that carries a message or request id holds for
ids of the same number of digits (``id_class = decimal_class``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Generator, Sequence
from typing import Any, ClassVar

from websockets.frames import Frame, Opcode

from transports._bytes import CONTROL, FRAMING, PAYLOAD, ByteAccount, decimal_class

#: The longest upgrade line we accept (websockets itself allows 8 KiB per line).
MAX_LINE = 8192
#: At most this many header lines in the upgrade (websockets allows 128).
MAX_HEADER_LINES = 256
#: JSON keys whose integer value is a request id (for the bench's "holds for" note).
REQUEST_ID_KEYS = ("id", "rid", "request_id", "req")


class _KeepCompressed:
    """An 'extension' that accepts RSV1 (permessage-deflate) frames without inflating them:
    the counter wants the bytes as sent."""

    name = "keep-compressed"

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        return dataclasses.replace(frame, rsv1=False)

    def encode(self, frame: Frame) -> Frame:  # pragma: no cover - never used to send
        return frame


class WebSocketWireAccount(ByteAccount):
    """Counts one direction of a WebSocket connection (see the module docstring)."""

    TIMER_KINDS: ClassVar[frozenset[str]] = frozenset({"PING", "PONG"})
    CONNECTION_KINDS: ClassVar[frozenset[str]] = TIMER_KINDS
    id_class = staticmethod(decimal_class)

    def __init__(self, *, client_to_server: bool) -> None:
        super().__init__()
        self.client_to_server = client_to_server
        from websockets.streams import StreamReader

        self._reader = StreamReader()
        self._fed = 0
        self._consumed = 0
        self._parser = self._parse()
        next(self._parser)

    @property
    def pending(self) -> int:
        """Bytes fed since the last whole item (the parser may hold some of them itself)."""
        return self._fed - self._consumed

    def receive_data(self, data: bytes) -> None:
        self._reader.feed_data(data)
        self._fed += len(data)
        next(self._parser)

    def _size(self) -> int:
        """Bytes consumed since the previous call: the whole of the item just parsed."""
        consumed = self._fed - len(self._reader.buffer)
        size, self._consumed = consumed - self._consumed, consumed
        return size

    def _parse(self) -> Generator[None, None, None]:
        for _ in range(MAX_HEADER_LINES):
            line = yield from self._reader.read_line(MAX_LINE)
            if line in (b"\r\n", b"\n"):
                break
        else:
            raise ValueError(f"an HTTP upgrade of more than {MAX_HEADER_LINES} lines")
        self.count("HTTP_UPGRADE", {CONTROL: self._size()})
        extensions: Sequence[Any] = [_KeepCompressed()]
        while True:
            frame = yield from Frame.parse(
                self._reader.read_exact,
                mask=self.client_to_server,
                max_size=None,
                extensions=extensions,
            )
            self._frame(frame, self._size())

    def _frame(self, frame: Frame, size: int) -> None:
        data = len(frame.data)
        if frame.opcode in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
            self.count(frame.opcode.name, {CONTROL: size})
            return
        if frame.opcode is not Opcode.TEXT or not frame.fin:
            self.count(frame.opcode.name, {FRAMING: size - data, PAYLOAD: data})
            return
        names = self._field_names(bytes(frame.data))
        self.count("TEXT", {FRAMING: size - data, PAYLOAD: data - names})
        if names:
            self.count("TEXT_FIELD_NAMES", {PAYLOAD: names})
            self.frames["TEXT_FIELD_NAMES"] -= 1  # part of the TEXT frame, not a frame

    def _field_names(self, text: bytes) -> int:
        """Bytes of the JSON object keys (quotes included) in one whole JSON text, or 0."""
        keys: list[str] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            keys.extend(key for key, _ in items)
            found = dict(items)
            if self.client_to_server:
                for key in REQUEST_ID_KEYS:
                    value = found.get(key)
                    if isinstance(value, int) and not isinstance(value, bool):
                        self.last_ids["request"] = value
            return found

        try:
            json.loads(text, object_pairs_hook=pairs)
        except ValueError:
            return 0  # compressed, or not JSON: all of it is payload
        return sum(len(json.dumps(key, ensure_ascii=False).encode()) for key in keys)


def accounts() -> tuple[WebSocketWireAccount, WebSocketWireAccount]:
    """The (client-to-server, server-to-client) counters of one WebSocket connection."""
    return WebSocketWireAccount(client_to_server=True), WebSocketWireAccount(client_to_server=False)


__all__ = ["WebSocketWireAccount", "accounts"]
