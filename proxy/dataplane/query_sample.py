"""A bounded sample of the query texts shadow reads compared, for ``migrate eval`` (issue 15).

``migrate eval`` without ``--queries`` samples its queries from here. Per migration one
reservoir (Algorithm R, so every shadow-compared text is equally likely to be kept however long
the migration runs) of at most ``max_texts`` distinct texts, each at most ``max_chars``
characters (longer texts are not kept rather than cut, so a sampled query is one a client really
sent). Only inference-object texts are kept: the query string, never headers, keys or payloads.
:meth:`QuerySamples.record` is a list update on the shadow task; at most every ``every``
seconds (the first record at once), when something changed, one owned background flush writes kind ``shadow_queries``, key
``"<migration>/<proxy instance>"`` (:mod:`flushed_records`). A failed flush is logged and retried; it never affects a read.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from switchyard.proxy.dataplane.flushed_records import FlushedRecords
from switchyard.proxy.state.store import StateStore

KIND = "shadow_queries"
MAX_TEXTS = 500
MAX_CHARS = 2000


@dataclass
class Reservoir:
    """Algorithm R over distinct texts (pure apart from its seeded generator)."""

    max_texts: int = MAX_TEXTS
    max_chars: int = MAX_CHARS
    seen: int = 0
    texts: list[str] = field(default_factory=list)
    changes: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def offer(self, text: str) -> None:
        if not text.strip() or len(text) > self.max_chars or text in self.texts:
            return
        self.seen += 1
        if len(self.texts) < self.max_texts:
            self.texts.append(text)
            self.changes += 1
            return
        j = self.rng.randrange(self.seen)
        if j < self.max_texts:
            self.texts[j] = text
            self.changes += 1

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "texts": list(self.texts), "at": time.time()}


class QuerySamples(FlushedRecords[Reservoir]):
    def __init__(self, store: StateStore, owner: str, every: float = 30.0,
                 max_texts: int = MAX_TEXTS, max_chars: int = MAX_CHARS) -> None:
        super().__init__(store, owner, KIND, lambda: Reservoir(max_texts, max_chars), every=every,
                         first_at_once=True, what="shadow query sample")

    def record(self, migration_id: str, texts: Iterable[str]) -> None:
        """Offer ``texts`` for ``migration_id``; maybe start a flush."""
        r = self.entry(migration_id)
        for text in texts:
            r.offer(text)
        self.changed()


async def sampled(store: StateStore, migration_id: str, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` distinct texts from every proxy's sample for ``migration_id`` (seeded)."""
    texts: set[str] = set()
    for env in await store.list(KIND):
        if env.key.startswith(f"{migration_id}/"):
            texts.update(str(t) for t in env.data.get("texts") or [])
    ordered = sorted(texts)
    random.Random(seed).shuffle(ordered)
    return ordered[:n]
