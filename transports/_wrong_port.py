"""What answers on a port that does not speak the client's protocol, said in a person's words.

A client pointed at the wrong port used to report whatever its parser tripped on first
("ProtocolError(MALFORMED, 'a frame holds at least an opcode and an id')", "cannot connect to
gRPC server", a ten-second timeout). Each transport's client now asks this module, only on the
failure path of connect, what is listening there, and raises :class:`WrongPort` (a
ConnectionError) with a sentence naming it and the ``--transport`` that would fit.

What is recognised, by the first bytes on the wire (the families of the transport ladder):

* **HTTP/2** (the gRPC transports): a server's connection preface is a SETTINGS frame on stream
  0 (RFC 9113 section 3.4), which gRPC servers send without waiting for the client;
* **HTTP/1.x** (the websocket transport): a status line ``HTTP/1.`` in answer to a request;
* **wirechat frames** (custom, protobuf-tcp): an answer to a wirechat HELLO (PROTOCOL.md
  section 5); the protobuf-tcp server names itself in its BAD_HANDSHAKE error;
* **nothing listening**: the connection is refused;
* **TLS** (any transport started with ``--tls-cert``): a TLS server says nothing first and hangs
  up on (or sends an alert record, first byte 0x15/0x16 then 0x03 0x0X, to) anything but a
  ClientHello, so the last step is a TLS handshake. A client that itself speaks TLS
  (``probe(..., tls=)``) first tries the handshake with its own CA, to tell "not TLS at all"
  from "TLS, but the certificate is not trusted".

The probe itself always speaks in clear but for that handshake, which sends no chat bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from transports._tls import ClientTls

#: Seconds each probe step waits for an answer (a real server answers in milliseconds).
PROBE_STEP = 0.4
#: Seconds without any answer to a handshake after which a client probes the port (an HTTP/1
#: server waits silently for a request line that a binary HELLO never completes).
SILENT_AFTER = 1.0

# What the families are called, and the --transport that speaks each.
_SPEAKS = {
    "http2": ("HTTP/2 (a gRPC server)", "grpc or --transport grpc-stream"),
    "http1": ("HTTP/1.1 (the websocket transport or a web server)", "websocket"),
    "custom": ("wirechat's custom protocol", "custom"),
    "protobuf-tcp": ("wirechat's protobuf-tcp protocol", "protobuf-tcp"),
}
#: Families found by the TLS handshake step: the port speaks TLS (and, for a client that gave
#: its CA, "tls-untrusted": the certificate is not one that CA vouches for).
TLS, TLS_UNTRUSTED = "tls", "tls-untrusted"
# A wirechat HELLO offering versions 1-2 in the custom framing (PROTOCOL.md section 5): length 6,
# opcode HELLO, request id 0, magic "WC", versions 1..2.
_WIRECHAT_HELLO = b"\x06\x01\x00WC\x01\x02"


class WrongPort(ConnectionError):
    """Connected, but the port speaks another protocol (the message says which)."""


def looks_like_http2(data: bytes) -> bool:
    """A server's HTTP/2 preface: a SETTINGS frame (type 4) on stream 0, flags 0 or ACK."""
    return len(data) >= 9 and data[3] == 0x04 and data[4] in (0, 1) and data[5:9] == bytes(4)


def looks_like_http1(data: bytes) -> bool:
    return data.startswith(b"HTTP/1.")


def looks_like_tls(data: bytes) -> bool:
    """A TLS record header: handshake (0x16) or alert (0x15), then version 3.x."""
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 0x03 and data[2] <= 0x04


def family_of(data: bytes) -> str | None:
    """The family a server's first bytes belong to, if they tell."""
    if looks_like_http2(data):
        return "http2"
    if looks_like_http1(data):
        return "http1"
    if looks_like_tls(data):
        return TLS
    return None


def telling(found: str | None, ours: str | None, *, tls: bool) -> bool:
    """Whether ``found`` explains a failed connect of a client speaking ``ours`` (a family
    of :data:`_SPEAKS`, None for the gRPC ones), with TLS or without."""
    if found is None:
        return False
    if tls:
        return found != TLS  # a port that does TLS fine: the trouble is elsewhere
    return found != ours


def explain(
    address: tuple[str, int], expected: str, family: str | None, *, tls: bool = False
) -> str:
    """The sentence for a client of ``expected`` (e.g. "the custom protocol") that found
    ``family`` (see the module docstring; None: unknown) at ``address``; ``tls``: the client
    spoke TLS."""
    where = f"{address[0]}:{address[1]}"
    if family == "refused":
        return (
            f"nothing is listening at {where}: is the chat server running "
            "(`make server`), and is the port right?"
        )
    if family == TLS and not tls:
        return (
            f"{where}: that port speaks TLS; use --tls (and --ca FILE when its certificate "
            "is not signed by a public authority)"
        )
    if family == TLS_UNTRUSTED:
        return (
            f"{where} speaks TLS, but its certificate is not trusted: give the CA that signed "
            "it with --ca FILE, and dial the name the certificate was made for"
        )
    if tls and family in _SPEAKS:
        speaks, _ = _SPEAKS[family]
        return (
            f"{where}: that port does not speak TLS (it speaks {speaks} in clear); drop --tls, "
            "or start the server with --tls-cert FILE --tls-key FILE"
        )
    if family in _SPEAKS:
        speaks, transport = _SPEAKS[family]
        return (
            f"{where} speaks {speaks}, not {expected}: wrong port or wrong transport; "
            f"did you mean --transport {transport}?"
        )
    return f"{where} answered, but not in {expected}: is it the chat server's port for it?"


async def probe(host: str, port: int, *, tls: ClientTls | None = None) -> str | None:
    """What listens at (host, port): "refused", a family of :data:`_SPEAKS`, :data:`TLS`,
    :data:`TLS_UNTRUSTED` (only for a client that gives its ``tls``), or None.
    Up to four short connections (each family answers a different greeting)."""
    silent = await _exchange(host, port, b"")
    if silent is None or silent == b"refused":
        return "refused" if silent == b"refused" else None
    if looks_like_http2(silent):
        return "http2"
    if _wirechat_error(silent):  # a wirechat server refusing everyone up front (SERVER_BUSY)
        return None
    if silent == b"" and tls is not None:  # a TLS client: most likely a TLS server; check first
        found = await _handshake(host, port, tls)
        if found is not None:
            return found
    answer = await _exchange(host, port, _WIRECHAT_HELLO)
    if answer and looks_like_tls(answer):
        return TLS
    if answer and answer != b"refused":
        return "protobuf-tcp" if b"protobuf-tcp" in answer else "custom"
    answer = await _exchange(host, port, b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n")
    if answer and looks_like_http1(answer):
        return "http1"
    if answer and looks_like_tls(answer):
        return TLS
    if silent == b"" and tls is None:
        return await _handshake(host, port, None)
    return None


async def _handshake(host: str, port: int, tls: ClientTls | None) -> str | None:
    """A TLS handshake (no chat bytes): :data:`TLS` if it completes, :data:`TLS_UNTRUSTED` if
    the server's certificate fails ``tls``'s checks, None if the port does not speak TLS."""
    if tls is None:  # only "is it TLS at all?": any certificate will do
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        name = None
    else:
        context, name = tls.context(), tls.server_hostname or host
    try:
        async with asyncio.timeout(PROBE_STEP * 2):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=name)
    except ssl.SSLCertVerificationError:
        return TLS_UNTRUSTED
    except (OSError, TimeoutError, ssl.SSLError, EOFError):
        return None
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return TLS


def _wirechat_error(data: bytes) -> bool:
    """An unprompted wirechat ERROR frame (a varint length, then opcode 0xFF): a custom or
    protobuf-tcp server that refuses the connection before HELLO, whichever it speaks."""
    for i, byte in enumerate(data[:5]):
        if byte < 0x80:
            return data[i + 1 : i + 2] == b"\xff"
    return False


async def _exchange(host: str, port: int, greeting: bytes) -> bytes | None:
    """Send ``greeting`` (maybe nothing) and return what came back within PROBE_STEP
    (b"" for silence, b"refused", None if the connection failed otherwise)."""
    try:
        async with asyncio.timeout(PROBE_STEP * 2):
            reader, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return b"refused"
    except (OSError, TimeoutError):
        return None
    try:
        if greeting:
            writer.write(greeting)
            await writer.drain()
        try:
            async with asyncio.timeout(PROBE_STEP):
                return await reader.read(512)
        except TimeoutError:
            return b""
    except OSError:
        return None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


__all__ = [
    "SILENT_AFTER",
    "TLS",
    "TLS_UNTRUSTED",
    "WrongPort",
    "explain",
    "family_of",
    "looks_like_http2",
    "looks_like_tls",
    "probe",
    "telling",
]
