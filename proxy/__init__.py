"""Switchyard: online, reversible embedding-model migrations for Qdrant.

``proxy`` is the shared core (errors, config, state store, model registry, embedders, upstream
clients), the sidecar proxy, and the embedded Qdrant-compatible upstream. ``backfill`` imports it.
"""

__version__ = "0.1.0"
