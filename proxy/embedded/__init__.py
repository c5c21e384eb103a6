"""The embedded upstream: a Qdrant-compatible REST + gRPC server over qdrant-client's local engine.

For the first run, demos and tests. Production uses a real Qdrant; nothing in the proxy or the
backfill may depend on this server's quirks.
"""
