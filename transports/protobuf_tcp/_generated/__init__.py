"""Generated from transports/protobuf_tcp/frames.proto by `python -m transports.grpc.codegen`.

Do not edit: run `make gen` after changing the proto; `make check` fails if these are stale.
"""
