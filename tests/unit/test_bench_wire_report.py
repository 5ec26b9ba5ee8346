"""bench/report_bytes.py: the byte definitions and tables that REPORT.md shows."""

from __future__ import annotations

from bench.report_bytes import bytes_section


def steady(transport: str, c2s: int, s2c: int, holds_for: str | None) -> dict:
    return {
        "transport": transport,
        "op": "send",
        "phase": "steady",
        "body_bytes": 32,
        "recipients": 1,
        "text": "ascii",
        "c2s_bytes": c2s,
        "s2c_bytes": s2c,
        "samples": 12,
        "c2s_range": [c2s, c2s],
        "s2c_range": [s2c, s2c],
        "holds_for": holds_for,
    }


def amortized(transport: str, op: str, control: int) -> dict:
    return {
        "transport": transport,
        "op": op,
        "phase": "amortized",
        "calls": 1000,
        "seconds": 5.0,
        "control_bytes": control,
        "control_bytes_per_call": control / 1000,
        "control_bytes_per_s": control / 5.0,
        "c2s_bytes": 160.0,
        "s2c_bytes": 90.5,
        "c2s_detail": {"WINDOW_UPDATE": control - 100, "PING": 50},
        "s2c_detail": {"PING_ACK": 50},
    }


def test_the_section_defines_each_figure_and_shows_ids_and_the_connections_frames() -> None:
    sizes = [
        steady("custom", 49, 12, "message ids 128..16383; request ids 0..127"),
        steady("grpc", 147, 74, "message ids 128..16383"),
        amortized("grpc", "send", 300),
        amortized("grpc", "deliver", 340),
    ]
    text = bytes_section({"sizes": sizes}, order=["custom", "grpc"])
    assert "deterministic steady call" in text and "amortized" in text
    assert "WINDOW_UPDATE" in text and "determinism" in text and "128..16383" in text
    assert (
        "| custom | 49 | 12 | 61 | 12, all identical | — "
        "| message ids 128..16383; request ids 0..127 |" in text
    )
    assert "| grpc | 147 | 74 | 221 | 12, all identical | 250.5 |" in text
    assert (
        "| grpc | receiver (push + ack) | 1,000 | 5.0 | 340 | 0.34 | 68.0 "
        "| WINDOW_UPDATE 240, PING 50, PING_ACK 50 |" in text
    )
    assert bytes_section({"sizes": []}) == ""


def account(transport: str, op: str, c2s: int, s2c: int) -> dict:
    return {
        "transport": transport,
        "op": op,
        "phase": "steady",
        "body_bytes": None,
        "recipients": None,
        "text": None,
        "c2s_bytes": c2s,
        "s2c_bytes": s2c,
        "samples": 5,
        "c2s_range": [c2s, c2s],
        "s2c_range": [s2c, s2c],
        "holds_for": None,
    }


def test_the_account_table_shows_resume_and_change_password_per_transport() -> None:
    sizes = [
        steady("custom", 49, 12, None),
        account("custom", "resume", 47, 61),
        account("custom", "change_password", 38, 48),
        account("custom", "password_changed", 0, 47),
        account("grpc", "resume", 190, 146),  # a transport without the other two rows
        steady("websocket", 90, 40, None),  # and one without any
    ]
    text = bytes_section({"sizes": sizes}, order=["custom", "grpc", "websocket"])
    assert "resume token" in text and "43 characters" in text  # the definitions say so
    assert "| custom | 47 + 61 = 108 | 38 + 48 = 86 | 0 + 47 = 47 |" in text
    assert "| grpc | 190 + 146 = 336 | — | — |" in text
    assert "| websocket | —" not in text
