"""Clients of the upstream Qdrant: a lean pooled HTTP/1.1 client and one gRPC channel."""
