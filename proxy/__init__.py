"""Switchyard: online, reversible embedding-model migrations for Qdrant.

``switchyard.proxy`` is the shared core (errors, config, state store, model registry, embedders,
upstream clients), the sidecar proxy, and the embedded Qdrant-compatible upstream.
``switchyard.backfill`` imports it. The folder is named ``proxy`` but installs as
``switchyard.proxy`` (setup.py); importing it as a top-level ``proxy`` (possible from the
repository root, where the folder is on ``sys.path``) would load a second copy of every module,
so it is refused.
"""

if __name__ != "switchyard.proxy":
    raise ImportError(f"import switchyard.proxy, not {__name__} (the folder installs as switchyard.proxy)")

__version__ = "0.1.0"
