"""Read routing of a ``split`` migration after ``switch-reads``: which targets a read needs, and
how their answers combine into the one answer the logical name gives. Pure functions.

* :func:`targets_for` reads the request's ``filter``: conditions in its ``must`` (and in the
  ``must`` of filters nested there, at any depth) of the form ``{"key": F, "match": {"value":
  V}}`` or ``{"match": {"any": [...]}}`` on a split field pin that field; a read whose pins
  select one key goes to that key's collection alone (the client's request, renamed), otherwise
  it fans out to every target the pins still allow (all of them without pins). Anything else
  in the filter (``should``, ``must_not``, other fields) only narrows further, so it never makes
  a target unnecessary and is left to each target to apply.
* :func:`merge_scored` combines fanned-out similarity answers: each target was asked for
  ``offset + limit`` hits from offset 0; the hits are ordered by score (higher first, or lower
  for distance metrics), ties by target order then rank, and ``offset`` / ``limit`` applied.
  Every point lives in exactly one target, so for a nearest-neighbour query this is the answer
  of one collection holding all of them (fusion queries' scores are per target: documented).
* :func:`merge_scroll` combines scroll pages (no ``order_by``): each target was asked for
  ``limit + 1`` points from the client's offset; merged by point id (Qdrant's order: integers,
  then UUIDs), the first ``limit`` are the page and the next id is ``next_page_offset``.
* :func:`merge_count` sums counts; :func:`merge_retrieve` joins retrieved points in the
  requested order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from switchyard.proxy.dataplane.split_routing import SplitLayout, key_id

#: The most targets one read fans out to; a wider split is refused with the reason.
MAX_FANOUT = 64
#: How deep nested ``must`` filters are searched for pins.
MAX_DEPTH = 8
LOWER_IS_BETTER = ("Euclid", "Manhattan")


@dataclass(frozen=True, slots=True)
class ReadRoute:
    """The targets a read needs (in fan-out order) and a readable reason (debug header, logs)."""

    collections: tuple[str, ...]
    reason: str

    @property
    def single(self) -> bool:
        return len(self.collections) == 1


def pins(flt: Any, fields: Sequence[str], depth: int = 0) -> dict[str, set[str]]:
    """Per split field the values (by :func:`key_id` of one) the filter's ``must`` allows.

    Several pins on one field intersect (``must`` is a conjunction)."""
    out: dict[str, set[str]] = {}
    if not isinstance(flt, Mapping) or depth > MAX_DEPTH:
        return out
    must = flt.get("must")
    conditions = must if isinstance(must, list) else [must] if isinstance(must, Mapping) else []
    for cond in conditions:
        found: dict[str, set[str]] = {}
        if isinstance(cond, Mapping) and isinstance(cond.get("key"), str) and cond["key"] in fields:
            allowed = _match_values(cond.get("match"))
            if allowed is not None:
                found = {cond["key"]: allowed}
        elif isinstance(cond, Mapping) and any(k in cond for k in ("must", "should", "must_not")):
            found = pins(cond, fields, depth + 1)
        for name, values in found.items():
            out[name] = out[name] & values if name in out else set(values)
    return out


def _match_values(match: Any) -> set[str] | None:
    if not isinstance(match, Mapping):
        return None
    if "value" in match and isinstance(match["value"], (str, int)):
        return {key_id([match["value"]])}
    if isinstance(match.get("any"), list) and all(isinstance(v, (str, int)) for v in match["any"]):
        return {key_id([v]) for v in match["any"]}
    return None


def targets_for(layout: SplitLayout, flt: Any) -> ReadRoute:
    """The targets a read with filter ``flt`` must ask (see the module docstring)."""
    pinned = pins(flt, layout.fields)
    chosen = []
    for kid, name in sorted(layout.targets.items(), key=lambda kv: kv[1]):
        values = orjson.loads(kid)
        if all(key_id([v]) in pinned[f] for f, v in zip(layout.fields, values, strict=True) if f in pinned):
            chosen.append(name)
    if not pinned:
        reason = f"split: no filter pins {', '.join(layout.fields)}; fan-out to {len(chosen)} targets"
    elif len(chosen) == 1:
        reason = f"split: filter pins the key; routed to {chosen[0]}"
    else:
        reason = f"split: filter allows {len(chosen)} of {len(layout.targets)} targets; fan-out"
    return ReadRoute(tuple(chosen), reason)


def fanout_limit(limit: int, offset: int) -> int:
    """What each target is asked for so the merged page is exact: ``offset + limit`` hits."""
    return max(0, offset) + max(0, limit)


def merge_scored(answers: Sequence[Sequence[Mapping[str, Any]]], limit: int, offset: int,
                 distance: str = "Cosine") -> list[Mapping[str, Any]]:
    """One page of scored points out of per-target answers (in fan-out order)."""
    lower = distance in LOWER_IS_BETTER
    ranked = [(float(p.get("score") or 0.0), t, i, p)
              for t, hits in enumerate(answers) for i, p in enumerate(hits)]
    ranked.sort(key=lambda r: (r[0] if lower else -r[0], r[1], r[2]))
    return [r[3] for r in ranked[max(0, offset):max(0, offset) + max(0, limit)]]


def id_order(point_id: Any) -> tuple[int, int, str]:
    """Qdrant's point-id order: unsigned integers first (by value), then UUIDs (by value)."""
    if isinstance(point_id, int) and not isinstance(point_id, bool):
        return (0, point_id, "")
    try:
        return (1, 0, str(uuid.UUID(str(point_id))))
    except ValueError:
        return (2, 0, str(point_id))


def merge_scroll(pages: Sequence[Sequence[Mapping[str, Any]]], limit: int) -> tuple[list[Mapping[str, Any]], Any]:
    """The merged page and its ``next_page_offset`` (``None`` at the end). Each page holds a
    target's first ``limit + 1`` points at or after the client's offset."""
    merged = sorted((p for page in pages for p in page), key=lambda p: id_order(p.get("id")))
    page = merged[:max(0, limit)]
    nxt = merged[limit].get("id") if len(merged) > limit else None
    return page, nxt


def merge_count(counts: Sequence[int]) -> int:
    return sum(int(c) for c in counts)


def merge_retrieve(requested: Sequence[Any], answers: Sequence[Sequence[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    """Retrieved points of every target, in the order the ids were requested, each once."""
    found = {str(p.get("id")): p for hits in answers for p in hits}
    out, seen = [], set()
    for pid in requested:
        canon = _canon(pid)
        if canon in found and canon not in seen:
            seen.add(canon)
            out.append(found[canon])
    return out


def _canon(point_id: Any) -> str:
    try:
        return str(uuid.UUID(str(point_id))) if not isinstance(point_id, int) else str(point_id)
    except ValueError:
        return str(point_id)


def check_fanout(layout: SplitLayout, route: ReadRoute) -> str | None:
    """Why a fan-out is refused (``None``: allowed): more than :data:`MAX_FANOUT` targets."""
    if len(route.collections) > MAX_FANOUT:
        return (f"split: this read would fan out to {len(route.collections)} targets (at most "
                f"{MAX_FANOUT}); pin {', '.join(layout.fields)} in the filter's must")
    return None
