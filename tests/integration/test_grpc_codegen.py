"""`python -m transports.grpc.codegen [--check]`: fresh on a clean tree, stale after a proto
change (made in a temporary copy: the real chat.proto is never touched)."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import grpc

import transports.grpc.codegen as codegen

REPO = Path(__file__).resolve().parents[2]


def run_codegen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transports.grpc.codegen", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_passes_on_the_committed_code() -> None:
    result = run_codegen("--check")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_check_fails_when_the_proto_changes(tmp_path: Path) -> None:
    changed = tmp_path / "chat.proto"
    text = codegen.PROTO.read_text()
    marker = "  uint64 conversation_id = 7;\n}"
    assert text.count(marker) == 1
    changed.write_text(
        text.replace(marker, "  uint64 conversation_id = 7;\n  string topic = 8;\n}")
    )
    result = run_codegen("--check", "--proto", str(changed))
    assert result.returncode == 1
    assert "stale" in result.stderr and "make gen" in result.stderr
    assert "chat_pb2.py" in result.stderr and "chat_pb2.pyi" in result.stderr


def test_check_fails_when_a_generated_file_is_missing(tmp_path: Path) -> None:
    copy = tmp_path / "_generated"
    shutil.copytree(codegen.GENERATED, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "chat_pb2_grpc.py").unlink()
    result = run_codegen("--check", "--out", str(copy))
    assert result.returncode == 1
    assert "chat_pb2_grpc.py" in result.stderr


def test_generation_reproduces_the_committed_files(tmp_path: Path) -> None:
    codegen.generate(codegen.PROTO, tmp_path)
    matched, mismatch, errors = filecmp.cmpfiles(
        tmp_path, codegen.GENERATED, codegen.GENERATED_FILES, shallow=False
    )
    assert (sorted(matched), mismatch, errors) == (sorted(codegen.GENERATED_FILES), [], [])


def test_generated_code_imports_by_package_and_shadows_nothing() -> None:
    from transports.grpc._generated import chat_pb2, chat_pb2_grpc

    stub_source = (codegen.GENERATED / "chat_pb2_grpc.py").read_text()
    assert "from transports.grpc._generated import chat_pb2 as" in stub_source
    assert "\nimport chat_pb2" not in stub_source and "from wirechat" not in stub_source
    assert chat_pb2_grpc.grpc is grpc and "site-packages" in (grpc.__file__ or "")
    assert chat_pb2.Delivery.__module__ == "transports.grpc._generated.chat_pb2"
    assert chat_pb2.DESCRIPTOR.name == "wirechat/v1/chat.proto"


def test_importing_the_package_does_not_import_grpc() -> None:
    probe = "import sys, transports, transports.grpc; print('grpc' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr
