"""bench/tls_relay.py's readers of a TLS byte stream, on a real handshake made in memory."""

from __future__ import annotations

import ssl
from pathlib import Path

from bench.tls_relay import Records, server_hello
from bench.tls_report import section
from tests.conftest import make_tls_files


def _handshake(directory: Path) -> tuple[bytes, bytes, str]:
    """The bytes each side sends during a TLS handshake (client, server) and the suite chosen."""
    files = make_tls_files(directory)
    server_ctx = files.server.context()
    client_ctx = files.client.context()
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    sent_c, sent_s = b"", b""
    for _ in range(10):  # a handshake takes a few flights
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        data_c, data_s = c_out.read(), s_out.read()
        sent_c, sent_s = sent_c + data_c, sent_s + data_s
        s_in.write(data_c)
        c_in.write(data_s)
        if not data_c and not data_s:
            break
    cipher = client.cipher()
    assert cipher is not None
    return sent_c, sent_s, cipher[0]


def test_server_hello_names_the_version_and_suite(tmp_path: Path) -> None:
    _, from_server, suite = _handshake(tmp_path)
    version, chosen, group = server_hello(from_server)
    assert (version, chosen) == ("TLS 1.3", suite)
    assert group in ("x25519", "X25519MLKEM768", "secp256r1")  # OpenSSL 3.0 picks x25519
    assert server_hello(b"\x17\x03\x03\x00\x01x") == (None, None, None)  # not a handshake


def test_records_are_counted_across_any_split(tmp_path: Path) -> None:
    from_client, from_server, _ = _handshake(tmp_path)
    whole = Records()
    whole.feed(from_server)
    assert whole.count >= 3  # ServerHello, then at least the encrypted flight
    for size in (1, 2, 5, 7, 100):
        split = Records()
        for i in range(0, len(from_server), size):
            split.feed(from_server[i : i + size])
        assert split.count == whole.count and split.head == whole.head
        assert split.skip == 0 and split.header == b""  # ends on a record boundary
    client = Records()
    client.feed(from_client)
    assert client.count >= 2  # ClientHello, Finished (and maybe a ChangeCipherSpec)


def test_report_section_puts_tls_beside_plain() -> None:
    def size(mode: str, op: str, c2s: int, s2c: int, records: int | None) -> dict[str, object]:
        return {
            "kind": "bytes",
            "transport": "custom",
            "mode": mode,
            "op": op,
            "c2s_bytes": c2s,
            "s2c_bytes": s2c,
            "c2s_records": records,
            "s2c_records": records,
            "tls_version": "TLS 1.3" if records else None,
            "cipher_suite": "TLS_AES_256_GCM_SHA384" if records else None,
        }

    timed = {"transport": "custom", "samples": 10, "client_cpu_us": 1.0, "server_cpu_us": 2.0}
    rows = [
        size("plain", "send", 44, 12, None),
        size("tls", "send", 66, 34, 1),
        {**timed, "kind": "handshake", "mode": "plain", "p50_us": 100.0},
        {**timed, "kind": "handshake", "mode": "tls", "p50_us": 900.0},
        {**timed, "kind": "send", "mode": "plain", "p50_us": 100.0},
        {**timed, "kind": "send", "mode": "tls", "p50_us": 150.0},
    ]
    text = section({"tls": rows})
    assert "| custom | send | 44 + 12 = 56 | 66 + 34 = 100 | +44 | 1 + 1 | 22.0 |" in text
    assert "TLS 1.3, TLS_AES_256_GCM_SHA384" in text
    assert "1.50" in text
    assert section({}) == ""
