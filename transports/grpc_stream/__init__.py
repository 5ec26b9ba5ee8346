"""wirechat over one gRPC bidirectional stream per session (``wirechat.v1.ChatStream``).

    server = await start_server(service, "127.0.0.1", 0)   # server.address == (host, port)
    client = open_client(server.address)      # core.ChatClient(GrpcStreamTransport(...))

The contract is ``transports/grpc/chat.proto`` (section "The stream service"): the same
messages as the unary ``grpc`` transport, so the step between the two on the bench's ladder is
the per-call HEADERS, metadata and trailers alone.
"""

from transports.grpc_stream._client import GrpcStreamTransport, open_client
from transports.grpc_stream._server import SERVICE_NAME, ChatStreamServer, start_server

__all__ = ["SERVICE_NAME", "ChatStreamServer", "GrpcStreamTransport", "open_client", "start_server"]
