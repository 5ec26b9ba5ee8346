"""TLS for every wire transport: what a server and a client are given, and what each library needs.

DESIGN.md, "Security at the edge": passwords and messages must not cross a network in clear.
A server gets :class:`ServerTls` (a certificate chain and its key, PEM files); a client gets
:class:`ClientTls` (the CA to trust: a PEM file, or None for the system's store; and the name
to check in the server's certificate, or None for the host it dials). Each transport turns
them into what its library takes, in one place here:

* asyncio (custom, protobuf-tcp) and ``websockets``: an :class:`ssl.SSLContext`
  (:meth:`ServerTls.context`, :meth:`ClientTls.context`);
* grpcio: PEM bytes (:meth:`ServerTls.grpc_credentials`, :meth:`ClientTls.grpc_credentials`);
  grpc negotiates ALPN ``h2`` and its own TLS versions (1.2 and 1.3) itself.

TLS 1.2 is the floor (RFC 8996 retires 1.0 and 1.1); 1.3 is what both ends pick when they can.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Handshake failures that mean "the peer does not speak TLS at all" (a plain server answered
#: our ClientHello with its own bytes, or hung up), as opposed to a certificate problem.
NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


class TlsSetupError(ValueError):
    """A certificate, key or CA file that cannot be used (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A server's certificate chain and private key (PEM files)."""

    cert_file: str
    key_file: str

    def context(self) -> ssl.SSLContext:
        """A server-side context for asyncio's ``create_server(ssl=)`` and ``websockets``."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError(
                f"cannot use the certificate {self.cert_file!r} with the key {self.key_file!r}: "
                f"{_reason(exc)}"
            ) from exc
        return ctx

    def grpc_credentials(self) -> Any:
        """``grpc.ssl_server_credentials`` for ``server.add_secure_port``."""
        import grpc

        self.context()  # the same checks, with the same message, before grpc sees the files
        key, cert = _read(self.key_file), _read(self.cert_file)
        return grpc.ssl_server_credentials([(key, cert)])


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What a client trusts: ``ca_file`` (PEM; None: the system's CAs) and the name the
    server's certificate must carry (None: the host the client dials)."""

    ca_file: str | None = None
    server_hostname: str | None = None

    def context(self) -> ssl.SSLContext:
        """A client context that verifies the server's certificate and name (shared: built
        once per CA file, see :func:`_client_context`; do not modify it)."""
        return _client_context(self.ca_file)

    def grpc_credentials(self) -> Any:
        """``grpc.ssl_channel_credentials`` for ``secure_channel`` (None: system roots)."""
        import grpc

        if self.ca_file is not None:
            self.context()  # the same checks, with the same message
        ca = _read(self.ca_file) if self.ca_file is not None else None
        return grpc.ssl_channel_credentials(root_certificates=ca)


@functools.lru_cache(maxsize=8)
def _client_context(ca_file: str | None) -> ssl.SSLContext:
    """Built once per process and CA file: building one reads its CAs, and the system's store
    (~150 CAs) cost ~70 ms of CPU per context here (measured by bench/tls_rows.py: it was paid
    on every connect). With ``ca_file``, only that CA is trusted (what ``--ca`` says: instead
    of the system's authorities). A failure is not cached (lru_cache keeps results only)."""
    if ca_file is None:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError(
                f"cannot use {ca_file!r} as a CA certificate: {_reason(exc)}"
            ) from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def grpc_channel(target: str, options: Any, tls: ClientTls | None) -> Any:
    """A ``grpc.aio`` channel to ``target``: in clear, or over TLS checking ``tls``."""
    import grpc

    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    if tls.server_hostname is not None:  # the name to check, when it is not the target's host
        options = (*options, ("grpc.ssl_target_name_override", tls.server_hostname))
    return grpc.aio.secure_channel(target, tls.grpc_credentials(), options=options)


def hostname_for(tls: ClientTls, host: str) -> str:
    """The name a client checks in the server's certificate."""
    return tls.server_hostname or host


def describe_failure(exc: BaseException, address: tuple[str, int]) -> str | None:
    """A person's sentence for a TLS client's failed handshake at ``address``, or None when
    ``exc`` is not about TLS. A certificate the client cannot trust gets its own sentence;
    "the peer is not speaking TLS" is left to the caller, which probes the port to say what
    it does speak (transports._wrong_port)."""
    where = f"{address[0]}:{address[1]}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or _reason(exc)
        return (
            f"{where} speaks TLS, but its certificate is not trusted ({why}): "
            "give the CA that signed it with --ca FILE, and dial the name the certificate "
            "was made for"
        )
    return None


def not_tls(exc: BaseException) -> bool:
    """True when a handshake failed because the peer answered in something other than TLS."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    if isinstance(exc, ssl.SSLError):
        return any(r in str(exc).upper() for r in NOT_TLS_REASONS) or "EOF" in str(exc).upper()
    return isinstance(exc, (ConnectionResetError, EOFError))


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsSetupError(f"cannot read {path!r}: {exc.strerror or exc}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    reason = getattr(exc, "reason", None)
    return str(reason or exc).replace("_", " ").lower()


__all__ = [
    "ClientTls",
    "ServerTls",
    "TlsSetupError",
    "describe_failure",
    "grpc_channel",
    "hostname_for",
    "not_tls",
]
