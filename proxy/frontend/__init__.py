"""The proxy's front ends: REST (aiohttp) and gRPC (grpc.aio), forwarding byte for byte."""
