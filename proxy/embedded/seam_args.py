"""An engine seam call's arguments by name.

The seam speaks ``QdrantLocal``'s method names and arguments; the Edge engine dispatches on
them and both engines' strict-mode checks read them, so each binds a call the same way: by
``QdrantLocal``'s signature, positional arguments named, ``**kwargs`` extras flattened.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from qdrant_client.local.qdrant_local import QdrantLocal


@functools.lru_cache(maxsize=128)
def signature(method: str) -> inspect.Signature | None:
    """``QdrantLocal.<method>``'s signature, ``None`` for a name it does not have."""
    fn = getattr(QdrantLocal, method, None)
    return inspect.signature(fn) if callable(fn) else None


def by_name(sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name; ``TypeError`` when they do not bind."""
    bound = sig.bind(None, *args, **kwargs).arguments
    bound.pop("self", None)
    extra = bound.pop("kwargs", {})
    return {**bound, **extra}
