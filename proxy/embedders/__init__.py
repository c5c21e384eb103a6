"""Embedders: one protocol, three providers (OpenAI-compatible HTTP, local ONNX, hashing).

``make_embedder(spec)`` builds the provider for a :class:`switchyard.proxy.modelspec.ModelSpec`;
``fingerprint(embedder)`` identifies the vector space it produces. See ``docs/embedders.md``.
"""

from switchyard.proxy.embedders.base import Embedder, make_embedder
from switchyard.proxy.embedders.fingerprint import fingerprint, fingerprint_of

__all__ = ["Embedder", "fingerprint", "fingerprint_of", "make_embedder"]
