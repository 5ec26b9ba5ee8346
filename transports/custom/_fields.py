"""Field readers and writers of the custom protocol (PROTOCOL.md section 2), shared by the
message coders of every version (``_messages``, ``_history``).

``FrameReader`` reads the fields of one frame in place, never past its end; the ``_put_*``
writers append fields to a bytearray and refuse (``LocalProtocolError``) what the wire cannot
carry. Errors are worded for a person: a peer's bad text is "not well-formed UTF-8", not a
codec's message.
"""

from __future__ import annotations

from transports.custom._wire import (
    U32_MAX,
    U64_MAX,
    VARINT32_BYTES,
    VARINT64_BYTES,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    put_varint,
)


def read_varint(buf: bytearray, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, next_pos), next_pos -1 if it runs past end."""
    value = 0
    shift = 0
    for i in range(max_bytes):
        if pos + i >= end:
            return 0, -1
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i:
                raise ProtocolError(ErrorCode.MALFORMED, "varint is not minimally encoded")
            return value, pos + i + 1
        shift += 7
    raise ProtocolError(ErrorCode.MALFORMED, f"varint longer than {max_bytes} bytes")


def _malformed(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, message)


def _not_utf8(exc: UnicodeDecodeError) -> ProtocolError:
    """INVALID_UTF8 in our words (Python's own text names its codec internals)."""
    bad = exc.object[exc.start]
    return ProtocolError(
        ErrorCode.INVALID_UTF8,
        f"a text field is not well-formed UTF-8 (byte 0x{bad:02X} at offset {exc.start} of the "
        "field cannot start or continue a character there)",
    )


#: Up to this many bytes, ``rest_text`` decodes a copy rather than a view of the buffer: for a
#: 32-byte body ~2,000 instructions against ~4,100 (callgrind); at 64 KiB the copy adds ~12 %.
_COPY_UP_TO = 4096


class FrameReader:
    """Reads the fields of one frame in place; never past ``end``. One per connection,
    re-aimed at each frame with ``reset`` (no object per frame)."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.end = 0

    def reset(self, buf: bytearray, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def _truncated(self, what: str) -> ProtocolError:
        return _malformed(f"{what} runs past the end of the frame")

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self._truncated("a u8 field")
        self.pos = pos + 1
        return self.buf[pos]

    def v32(self) -> int:
        pos = self.pos
        if pos < self.end:
            byte = self.buf[pos]
            if byte < 0x80:  # the common case: one byte
                self.pos = pos + 1
                return byte
        value, nxt = read_varint(self.buf, pos, self.end, VARINT32_BYTES)
        if nxt < 0:
            raise self._truncated("a varint")
        if value > U32_MAX:
            raise _malformed("varint exceeds 2^32-1")
        self.pos = nxt
        return value

    def v64(self) -> int:
        value, nxt = read_varint(self.buf, self.pos, self.end, VARINT64_BYTES)
        if nxt < 0:
            raise self._truncated("a varint")
        if value > U64_MAX:
            raise _malformed("varint exceeds 2^64-1")
        self.pos = nxt
        return value

    def text(self) -> str:
        pos = self.pos
        if pos < self.end and self.buf[pos] < 0x80:  # (v32 inlined: a length below 128)
            size = self.buf[pos]
            pos += 1
        else:
            size = self.v32()
            pos = self.pos
        if size > self.end - pos:
            raise self._truncated("a string")
        self.pos = pos + size
        try:
            return self.buf[pos : pos + size].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(exc) from None

    def texts(self, count: int) -> tuple[str, ...]:
        if count > self.end - self.pos:  # each string takes at least its length byte
            raise self._truncated("a list of strings")
        return tuple([self.text() for _ in range(count)])

    def rest(self) -> bytes:
        pos, self.pos = self.pos, self.end
        return bytes(self.buf[pos : self.end])

    def rest_text(self) -> str:
        pos, self.pos = self.pos, self.end
        if self.end - pos <= _COPY_UP_TO:  # (a copy of a short body is cheaper than a view)
            try:
                return self.buf[pos : self.end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(exc) from None
        # Decode in place (a body can be 64 KiB) and release the view before anything can keep
        # it alive (a traceback would): a live view stops the buffer from resizing.
        view = memoryview(self.buf)[pos : self.end]
        try:
            return str(view, "utf-8")
        except UnicodeDecodeError as exc:
            problem = _not_utf8(exc)
        finally:
            view.release()
        raise problem


def _request_id(rid: int) -> int:
    if rid == 0:
        raise _zero_request_id()
    return rid


def _zero_request_id() -> ProtocolError:
    return _malformed("request id 0 is reserved for the server; requests use 1..2^32-1")


def _no_request_id(rid: int, what: str) -> None:
    if rid != 0:
        raise _malformed(f"{what} travels with request id 0")


def _refuse(message: str, code: ErrorCode = ErrorCode.MALFORMED) -> LocalProtocolError:
    return LocalProtocolError(code, message)


def _put_u8(out: bytearray, value: int, what: str) -> None:
    if not 0 <= value <= 0xFF:
        raise _refuse(f"{what} must fit in a byte: {value}")
    out.append(value)


def _put_v32(out: bytearray, value: int, what: str) -> None:
    if not 0 <= value <= U32_MAX:
        raise _refuse(f"{what} must be in 0..2^32-1: {value}")
    put_varint(out, value)


def _put_v64(out: bytearray, value: int, what: str) -> None:
    if not 0 <= value <= U64_MAX:
        raise _refuse(f"{what} must be in 0..2^64-1: {value}")
    put_varint(out, value)


def _put_rid(out: bytearray, rid: int) -> None:
    if not 1 <= rid <= U32_MAX:
        raise _refuse(f"a request id is 1..2^32-1, not {rid}")
    put_varint(out, rid)


class RisingVarint:
    """Writes the varints of one field whose values rise slowly (a clock in milliseconds, ids
    that count up), for the frames every send and push writes.

    Why. A varint is written seven bits at a time, each a few operations on a Python int of
    up to 64 bits: the six bytes of a millisecond timestamp cost ~6,000 instructions, as much
    as the rest of a SENT frame. How. Its bytes after the first are those of ``value >> 7``,
    which changes once every 128 values (128 ms of a clock): those bytes are kept from the
    last value, and only the first byte is computed. The last (``value >> 7``, bytes) pair is
    one attribute, replaced whole, so a codec used from several threads never reads half of it.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        #: (``value >> 7``, its varint bytes) of the last value of at least 0x80 (a caller
        #: may write a value whose ``value >> 7`` matches itself: ``_enc_sent_v2``)
        self.last: tuple[int, bytes] = (-1, b"")

    def put(self, out: bytearray, value: int) -> None:
        """Append ``value`` (0..2^64-1, checked by the caller) as a varint."""
        if value < 0x80:
            out.append(value)
            return
        high = value >> 7
        last = self.last
        if last[0] != high:
            rest = bytearray()
            put_varint(rest, high)
            last = self.last = (high, bytes(rest))
        out.append((value & 0x7F) | 0x80)
        out += last[1]


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = ord(exc.object[exc.start])
        raise _refuse(
            f"the text holds U+{char:04X}, a lone surrogate, which UTF-8 cannot carry",
            ErrorCode.INVALID_UTF8,
        ) from None


def _put_str(out: bytearray, text: str) -> None:
    data = _utf8(text)
    put_varint(out, len(data))
    out += data


def _put_strs(out: bytearray, texts: tuple[str, ...]) -> None:
    put_varint(out, len(texts))
    for text in texts:
        _put_str(out, text)


__all__ = ["FrameReader", "RisingVarint", "read_varint"]
