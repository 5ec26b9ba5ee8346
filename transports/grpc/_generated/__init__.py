"""Generated from transports/grpc/chat.proto by `python -m transports.grpc.codegen`.

Do not edit: run `make gen` after changing the proto; `make check` fails if these are stale.
"""
