"""Regenerate ``transports/grpc/_generated/`` from ``chat.proto``, or check it is up to date.

It also compiles ``transports/protobuf_tcp/frames.proto`` (the protobuf-tcp transport's own frame
bodies) into ``transports/protobuf_tcp/_generated/``: one script, one make target, one check.

    python -m transports.grpc.codegen            # write _generated/ (what `make gen` runs)
    python -m transports.grpc.codegen --check    # exit 1 if _generated/ is stale (`make check`)

protoc (from grpcio-tools) compiles the proto as ``wirechat/v1/chat.proto``: the file name
registered in protobuf's global descriptor pool and shown by server reflection then follows the
package, as is the convention, and cannot collide with some other library's ``chat.proto``.
The generated stub imports its messages as ``from wirechat.v1 import chat_pb2``, a module that
does not exist here, so we rewrite that line (and the module name given to the message classes)
to ``transports.grpc._generated.chat_pb2``. Everything is imported absolutely: our package is
``transports.grpc``, and nothing generated may shadow the real ``grpc``.
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "chat.proto"
GENERATED = HERE / "_generated"
PACKAGE = "transports.grpc._generated"
PROTO_NAME = "wirechat/v1/chat.proto"  # the name protoc and the descriptor pool see
GENERATED_FILES = ("__init__.py", "chat_pb2.py", "chat_pb2.pyi", "chat_pb2_grpc.py")

INIT = '''"""Generated from transports/grpc/chat.proto by `python -m transports.grpc.codegen`.

Do not edit: run `make gen` after changing the proto; `make check` fails if these are stale.
"""
'''

# (file, pattern, replacement): each must match exactly once, or protoc's output changed shape
# and this script needs a look rather than a silent half-fix.
REWRITES = (
    (
        "chat_pb2_grpc.py",
        r"^from wirechat\.v1 import chat_pb2 as ",
        f"from {PACKAGE} import chat_pb2 as ",
    ),
    ("chat_pb2.py", r"'wirechat\.v1\.chat_pb2'", f"'{PACKAGE}.chat_pb2'"),
)


@dataclasses.dataclass(frozen=True)
class Target:
    """One .proto and the package generated from it."""

    proto: Path
    out: Path
    proto_name: str  # the name protoc and the descriptor pool see
    files: tuple[str, ...]
    rewrites: tuple[tuple[str, str, str], ...]
    init: str
    grpc: bool = True  # also generate the service stub (*_pb2_grpc.py)


CHAT = Target(PROTO, GENERATED, PROTO_NAME, GENERATED_FILES, REWRITES, INIT)
_FRAMES_PACKAGE = "transports.protobuf_tcp._generated"
FRAMES = Target(
    proto=HERE.parent / "protobuf_tcp" / "frames.proto",
    out=HERE.parent / "protobuf_tcp" / "_generated",
    proto_name="wirechat/tcp/v1/frames.proto",
    files=("__init__.py", "frames_pb2.py", "frames_pb2.pyi"),
    rewrites=(
        ("frames_pb2.py", r"'wirechat\.tcp\.v1\.frames_pb2'", f"'{_FRAMES_PACKAGE}.frames_pb2'"),
    ),
    init=INIT.replace("transports/grpc/chat.proto", "transports/protobuf_tcp/frames.proto"),
    grpc=False,
)
TARGETS = (CHAT, FRAMES)


class CodegenError(RuntimeError):
    """protoc failed or produced output we do not know how to fix up."""


def generate(proto: Path, out: Path, target: Target = CHAT) -> None:
    """Compile ``proto`` into ``out`` (created if needed; our files in it are replaced)."""
    from grpc_tools import protoc  # dev dependency: import only when generating

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wirechat-codegen-") as tmp:
        src, dst = Path(tmp, "src"), Path(tmp, "out")
        staged = src / target.proto_name
        staged.parent.mkdir(parents=True)
        dst.mkdir()
        shutil.copyfile(proto, staged)
        well_known = resources.files("grpc_tools") / "_proto"
        stubs = [f"--grpc_python_out={dst}"] if target.grpc else []
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{src}",
                f"-I{well_known}",
                f"--python_out={dst}",
                f"--pyi_out={dst}",
                *stubs,
                str(staged),
            ]
        )
        if status != 0:
            raise CodegenError(f"protoc failed on {proto} (exit status {status})")
        produced = dst / Path(target.proto_name).parent
        for name in target.files:
            if name == "__init__.py":
                continue
            if not (produced / name).is_file():
                raise CodegenError(f"protoc did not produce {name}")
        for name, pattern, replacement in target.rewrites:
            path = produced / name
            text, count = re.subn(pattern, replacement, path.read_text(), flags=re.MULTILINE)
            if count != 1:
                raise CodegenError(f"expected one match of {pattern!r} in {name}, got {count}")
            path.write_text(text)
        (produced / "__init__.py").write_text(target.init)
        for name in target.files:
            shutil.copyfile(produced / name, out / name)


def stale_files(proto: Path, committed: Path, target: Target = CHAT) -> list[str]:
    """Names of generated files that differ from a fresh generation (missing counts)."""
    with tempfile.TemporaryDirectory(prefix="wirechat-codegen-check-") as tmp:
        fresh = Path(tmp)
        generate(proto, fresh, target)
        return [
            name
            for name in target.files
            if not (committed / name).is_file()
            or not filecmp.cmp(fresh / name, committed / name, shallow=False)
        ]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m transports.grpc.codegen", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="fail if the output is stale")
    parser.add_argument(
        "--proto", type=Path, help="compile this instead of chat.proto (and skip frames.proto)"
    )
    parser.add_argument(
        "--out", type=Path, help="chat.proto's generated package (and skip frames.proto)"
    )
    args = parser.parse_args(argv)
    targets = list(TARGETS)
    if args.proto or args.out:
        targets = [dataclasses.replace(CHAT, proto=args.proto or PROTO, out=args.out or GENERATED)]
    status = 0
    try:
        for target in targets:
            if not args.check:
                generate(target.proto, target.out, target)
                print(f"generated {', '.join(target.files)} in {target.out}")
                continue
            stale = stale_files(target.proto, target.out, target)
            if stale:
                print(
                    f"generated code in {target.out} is stale against {target.proto}: "
                    f"{', '.join(stale)} differ. Run `make gen` and commit the result.",
                    file=sys.stderr,
                )
                status = 1
            else:
                print(f"generated code in {target.out} is up to date")
    except CodegenError as exc:
        print(f"codegen: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
