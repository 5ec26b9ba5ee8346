"""The WebSocket byte counter (transports/websocket/_bytes.py) on bytes that the websockets
library's own sans-IO client and server protocols write."""

from __future__ import annotations

import json
import random

import pytest
from websockets.client import ClientProtocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from transports.websocket._bytes import WebSocketWireAccount, accounts

REQUEST = {"id": 7, "op": "send", "to": ["wcabcdefr000"], "body": "x" * 32}


def handshake() -> tuple[ClientProtocol, ServerProtocol, bytes, bytes]:
    client = ClientProtocol(parse_uri("ws://127.0.0.1:7004/chat"))
    server = ServerProtocol()
    client.send_request(client.connect())
    upgrade = b"".join(client.data_to_send())
    server.receive_data(upgrade)
    server.send_response(server.accept(server.events_received()[0]))
    response = b"".join(server.data_to_send())
    client.receive_data(response)
    return client, server, upgrade, response


def text(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def feed(account: WebSocketWireAccount, data: bytes, how: str) -> None:
    if how == "whole":
        account.receive_data(data)
        return
    rng, pos = random.Random(3), 0
    while pos < len(data):
        step = 1 if how == "bytewise" else rng.randint(1, 40)
        account.receive_data(data[pos : pos + step])
        pos += step


@pytest.mark.parametrize("how", ["whole", "bytewise", "chunks"])
def test_client_frames_upgrade_masks_and_field_names(how: str) -> None:
    client, _, upgrade, _ = handshake()
    small = text(REQUEST)  # < 126 bytes: 2 + 4 (mask) header bytes
    big = text({"id": 8, "op": "send", "to": ["b"], "body": "y" * 300})  # 2 + 2 + 4
    client.send_text(small)
    client.send_text(big)
    client.send_ping(b"k")
    stream = upgrade + b"".join(client.data_to_send())
    c2s, _ = accounts()
    feed(c2s, stream, how)
    assert c2s.pending == 0
    assert dict(c2s.totals) == {
        "control": len(upgrade) + 2 + 4 + 1,  # the GET upgrade, a masked 1-byte PING
        "framing": 6 + 8,
        "payload": len(small) + len(big),
        "headers": 0,
    }
    keys = sum(len(json.dumps(k)) for k in REQUEST) + sum(len(json.dumps(k)) for k in REQUEST)
    assert c2s.by_kind["TEXT_FIELD_NAMES"] == keys  # "id", "op", "to", "body" in each text
    assert c2s.by_kind["HTTP_UPGRADE"] == len(upgrade)
    assert c2s.frames["TEXT"] == 2
    assert c2s.last_ids == {"request": 8}
    assert sum(c2s.by_kind.values()) == len(stream)


def test_server_frames_are_not_masked_and_close_is_control() -> None:
    _, server, _, response = handshake()
    reply = text({"id": 7, "ok": True, "message_id": 1234, "sent_at_ms": 1764000000000})
    server.send_text(reply)
    server.send_close(1000)
    _, s2c = accounts()
    stream = response + b"".join(server.data_to_send())
    feed(s2c, stream, "chunks")
    assert s2c.totals["framing"] == 2
    assert s2c.totals["payload"] == len(reply)
    assert s2c.totals["control"] == len(response) + 2 + 2  # 101 response; CLOSE with a code
    assert s2c.by_kind["CLOSE"] == 4
    assert s2c.last_ids == {}  # only the client's requests carry request ids


def test_keepalive_pings_are_timer_driven_and_ids_are_decimal() -> None:
    assert WebSocketWireAccount.TIMER_KINDS == {"PING", "PONG"}
    assert WebSocketWireAccount.id_class(1234) == (1000, 9999)
    assert WebSocketWireAccount.id_class(7) == (0, 9)


def test_an_incomplete_frame_is_pending() -> None:
    client, _, upgrade, _ = handshake()
    client.send_text(text(REQUEST))
    frame = b"".join(client.data_to_send())
    c2s, _ = accounts()
    c2s.receive_data(upgrade + frame[:-5])
    assert c2s.pending == len(frame) - 5  # the incomplete frame, held back
    c2s.receive_data(frame[-5:])
    assert c2s.pending == 0
