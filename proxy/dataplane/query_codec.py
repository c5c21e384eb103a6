"""Similarity reads decoded just enough to merge them: the shared form, and the REST codec.

A merged read needs, per sub-request (one for a single read, one per entry of a batch): the
vector slots (raw dense vectors and inference objects, see ``query_vectors``), ``limit``,
``offset``, ``score_threshold``, the group settings, and the client's payload selector. Each
side then gets the client's own request with only these rewritten (collection name, slot
vectors, ``limit + offset`` with offset 0, the doc-key payload field added to the selector,
no threshold on the source side whose scores are on another scale); every other field is
forwarded as the client sent it.

The REST codec works on ``orjson`` dicts; the gRPC codec (``query_codec_grpc``) on
``qdrant_client.grpc`` messages. Both expose the same :class:`ReadCodec` surface so
``reads.MergedReader`` is protocol-neutral.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from switchyard.proxy.dataplane.query_vectors import SlotInfo
from switchyard.proxy.intercept.routes import rest_target

#: REST path suffix -> (family, shape).
REST_READS: dict[str, tuple[str, str]] = {
    "/points/query": ("query", "single"), "/points/query/batch": ("query", "batch"),
    "/points/query/groups": ("query", "groups"),
    "/points/search": ("search", "single"), "/points/search/batch": ("search", "batch"),
    "/points/search/groups": ("search", "groups"),
    "/points/recommend": ("recommend", "single"), "/points/recommend/batch": ("recommend", "batch"),
    "/points/recommend/groups": ("recommend", "groups"),
    "/points/discover": ("discover", "single"), "/points/discover/batch": ("discover", "batch"),
}
#: gRPC ``qdrant.Points`` method -> (family, shape).
GRPC_READS: dict[str, tuple[str, str]] = {
    "Query": ("query", "single"), "QueryBatch": ("query", "batch"), "QueryGroups": ("query", "groups"),
    "Search": ("search", "single"), "SearchBatch": ("search", "batch"),
    "SearchGroups": ("search", "groups"),
    "Recommend": ("recommend", "single"), "RecommendBatch": ("recommend", "batch"),
    "RecommendGroups": ("recommend", "groups"),
    "Discover": ("discover", "single"), "DiscoverBatch": ("discover", "batch"),
}
_POINTS = "/qdrant.Points/"


def is_similarity_rest(method: str, rest_path: str) -> bool:
    """True for a similarity read; ``rest_path`` is the full path or the part after the collection."""
    if method != "POST":
        return False
    if rest_path.startswith("/collections/"):
        found = rest_target(method, rest_path)
        return found is not None and found[1] in REST_READS
    return rest_path.rstrip("/") in REST_READS


def is_similarity_grpc(method: str) -> bool:
    return method.startswith(_POINTS) and method[len(_POINTS):] in GRPC_READS


@dataclass
class SubRead:
    """One sub-request: its decoded body (dict or protobuf message) and what the merge needs."""

    body: Any
    slots: list[SlotInfo]
    limit: int
    offset: int = 0
    score_threshold: float | None = None
    group_size: int = 1
    #: False for a universal query that ranks by something else than similarity (no query,
    #: ``order_by``, ``sample``): such a read goes to the read authority, never merged.
    ranked: bool = True


@dataclass
class SimilarityRead:
    """A decoded similarity read; ``mergeable`` says whether every sub-request ranks by score."""

    protocol: str  # "rest" | "grpc"
    family: str  # query | search | recommend | discover
    shape: str  # single | batch | groups
    collection: str
    subs: list[SubRead]
    envelope: Any = None  # the batch request itself (its other fields are kept)
    rest: str = ""  # REST path after the collection

    @property
    def mergeable(self) -> bool:
        return all(sub.ranked for sub in self.subs)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """How one side's copy of a sub-request differs from the client's."""

    vectors: dict[int, list[float]] = field(default_factory=dict)  # slot index -> vector
    limit: int | None = None  # None: keep the client's limit and offset (inference only)
    strip_threshold: bool = False
    payload_field: str | None = None  # make sure this payload field is returned


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    wire: Any  # the group as received (id and lookup are returned as is)
    hits: list[Any]


class ReadCodec(Protocol):
    """What ``MergedReader`` needs of a protocol; points are the protocol's wire form."""

    def side_body(self, read: SimilarityRead, parts: list[tuple[int, Rewrite]], collection: str) -> bytes: ...
    def parse(self, read: SimilarityRead, body: bytes) -> list[Any]: ...
    def encode(self, read: SimilarityRead, results: list[Any], elapsed: float) -> bytes: ...
    def point_id(self, point: Any) -> str: ...
    def point_field(self, point: Any, name: str) -> Any: ...
    def score(self, point: Any) -> float: ...
    def with_score(self, point: Any, score: float) -> Any: ...
    def prune(self, point: Any, sub: SubRead, name: str) -> Any: ...
    def group_parts(self, group: Any) -> tuple[str, list[Any]]: ...
    def make_group(self, group: Any, hits: list[Any]) -> Any: ...


def canonical_id(value: Any) -> str:
    """A point id as a string that is equal for equal ids (uuids in lower-case hyphenated form)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


# ---------------------------------------------------------------- REST

def _is_dense(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
    )


def _vector_input(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], SlotInfo]]:
    """Slots of a REST ``VectorInput`` (dense vector, Document, id, ...)."""
    if _is_dense(value):
        yield path, SlotInfo(dims=len(value), vector=value)
    elif isinstance(value, dict) and isinstance(value.get("text"), str) and "model" in value:
        yield path, SlotInfo(text=value["text"], model=str(value["model"]))


def _pairs(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], SlotInfo]]:
    items = value if isinstance(value, list) else [value]
    base = path if isinstance(value, list) else None
    for i, pair in enumerate(items):
        p = (*path, i) if base is not None else path
        if isinstance(pair, dict):
            for side in ("positive", "negative"):
                yield from _vector_input(pair.get(side), (*p, side))


def _examples(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], SlotInfo]]:
    """A list of examples, each an id or a vector (``[1]`` is one id, never a 1-d vector)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _vector_input(item, (*path, i))


def _query(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], SlotInfo]]:
    """Slots of a REST ``QueryInterface``."""
    if not isinstance(value, dict) or ("text" in value and "model" in value):
        yield from _vector_input(value, path)
        return
    if "nearest" in value:
        yield from _vector_input(value["nearest"], (*path, "nearest"))
    elif isinstance(value.get("recommend"), dict):
        for side in ("positive", "negative"):
            yield from _examples(value["recommend"].get(side), (*path, "recommend", side))
    elif isinstance(value.get("discover"), dict):
        yield from _vector_input(value["discover"].get("target"), (*path, "discover", "target"))
        yield from _pairs(value["discover"].get("context"), (*path, "discover", "context"))
    elif "context" in value:
        yield from _pairs(value["context"], (*path, "context"))


def rest_slots(family: str, body: dict[str, Any]) -> list[tuple[tuple[Any, ...], SlotInfo]]:
    """Every vector slot of a REST sub-request, in a fixed order, with its key path."""
    out: list[tuple[tuple[Any, ...], SlotInfo]] = []
    if family == "query":
        out += _query(body.get("query"), ("query",))
        out += _prefetch(body.get("prefetch"), ("prefetch",))
    elif family == "search":
        vector = body.get("vector")
        if isinstance(vector, dict) and "vector" in vector:
            out += _vector_input(vector["vector"], ("vector", "vector"))
        else:
            out += _vector_input(vector, ("vector",))
    elif family == "recommend":
        for side in ("positive", "negative"):
            out += _examples(body.get(side), (side,))
    elif family == "discover":
        out += _vector_input(body.get("target"), ("target",))
        out += _pairs(body.get("context"), ("context",))
    return out


def _prefetch(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], SlotInfo]]:
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    for i, item in enumerate(items):
        p = (*path, i) if isinstance(value, list) else path
        if isinstance(item, dict):
            yield from _query(item.get("query"), (*p, "query"))
            yield from _prefetch(item.get("prefetch"), (*p, "prefetch"))


def set_path(body: Any, path: tuple[Any, ...], value: Any) -> None:
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _sub(family: str, shape: str, body: Any) -> SubRead:
    if not isinstance(body, dict):
        raise ValueError("a similarity request must be a JSON object")
    limit = body.get("limit")
    offset = body.get("offset")
    threshold = body.get("score_threshold")
    return SubRead(
        body=body,
        slots=[info for _, info in rest_slots(family, body)],
        limit=int(limit) if isinstance(limit, int) else 10,
        offset=0 if shape == "groups" or not isinstance(offset, int) else int(offset),
        score_threshold=float(threshold) if isinstance(threshold, (int, float)) else None,
        group_size=int(body.get("group_size") or 3) if shape == "groups" else 1,
        ranked=family != "query" or _ranked_rest(body),
    )


def _ranked_rest(body: dict[str, Any]) -> bool:
    query = body.get("query")
    if query is None:
        return bool(body.get("prefetch"))  # prefetch without query: the prefetch's ranking
    return not (isinstance(query, dict) and ("order_by" in query or "sample" in query))


def decode_rest(method: str, path: str, body: bytes) -> SimilarityRead | None:
    """The read, or ``None`` when this is not a similarity read or its body does not parse."""
    found = rest_target(method, path)
    if found is None or found[1] not in REST_READS:
        return None
    collection, rest, _ = found
    family, shape = REST_READS[rest]
    try:
        data = orjson.loads(body)
        orjson.dumps(data)  # re-encodable (orjson writes at most 254 levels): else left to Qdrant
        if shape == "batch":
            searches = data.get("searches") if isinstance(data, dict) else None
            if not isinstance(searches, list):
                return None
            subs = [_sub(family, shape, s) for s in searches]
            return SimilarityRead("rest", family, shape, collection, subs, data, rest)
        return SimilarityRead("rest", family, shape, collection, [_sub(family, shape, data)], None, rest)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None


def ensure_payload_field(selector: Any, name: str) -> Any:
    """A REST ``with_payload`` value that returns at least ``name`` (and what the client asked)."""
    if selector is True:
        return True
    if selector is None or selector is False:
        return [name]
    if isinstance(selector, list):
        return selector if name in selector else [*selector, name]
    if isinstance(selector, dict) and isinstance(selector.get("include"), list):
        inc = selector["include"]
        return selector if name in inc else {**selector, "include": [*inc, name]}
    if isinstance(selector, dict) and isinstance(selector.get("exclude"), list):
        return {**selector, "exclude": [k for k in selector["exclude"] if k != name]}
    return selector


def _wants_payload_field(selector: Any, name: str) -> bool:
    if selector is True:
        return True
    if isinstance(selector, list):
        return name in selector
    if isinstance(selector, dict):
        if isinstance(selector.get("include"), list):
            return name in selector["include"]
        if isinstance(selector.get("exclude"), list):
            return name not in selector["exclude"]
    return False


class RestQueryCodec:
    """:class:`ReadCodec` over Qdrant's REST JSON."""

    def side_body(self, read: SimilarityRead, parts: list[tuple[int, Rewrite]], collection: str) -> bytes:
        bodies = [self._rewrite(read, read.subs[i], rw) for i, rw in parts]
        if read.shape == "batch":
            return orjson.dumps({**read.envelope, "searches": bodies})
        return orjson.dumps(bodies[0])

    @staticmethod
    def _rewrite(read: SimilarityRead, sub: SubRead, rw: Rewrite) -> dict[str, Any]:
        body = copy.deepcopy(sub.body)
        paths = [p for p, _ in rest_slots(read.family, body)]
        for index, vector in rw.vectors.items():
            set_path(body, paths[index], vector)
        if rw.limit is not None:
            body["limit"] = rw.limit
            if read.shape != "groups":
                body["offset"] = 0
        if rw.strip_threshold:
            body.pop("score_threshold", None)
        if rw.payload_field is not None:
            body["with_payload"] = ensure_payload_field(body.get("with_payload"), rw.payload_field)
        return body

    def parse(self, read: SimilarityRead, body: bytes) -> list[Any]:
        """Per sub-request: a list of points, or of groups (``shape == "groups"``)."""
        result = orjson.loads(body)["result"]
        if read.shape == "groups":
            return [result["groups"]]
        if read.shape == "batch":
            return [r["points"] if read.family == "query" else r for r in result]
        return [result["points"] if read.family == "query" else result]

    def encode(self, read: SimilarityRead, results: list[Any], elapsed: float) -> bytes:
        if read.shape == "groups":
            result: Any = {"groups": results[0]}
        elif read.family == "query":
            pages = [{"points": r} for r in results]
            result = pages if read.shape == "batch" else pages[0]
        else:
            result = results if read.shape == "batch" else results[0]
        return orjson.dumps({"result": result, "status": "ok", "time": elapsed})

    def point_id(self, point: Any) -> str:
        return canonical_id(point.get("id"))

    def point_field(self, point: Any, name: str) -> Any:
        payload = point.get("payload")
        return payload.get(name) if isinstance(payload, dict) else None

    def score(self, point: Any) -> float:
        return float(point.get("score") or 0.0)

    def with_score(self, point: Any, score: float) -> Any:
        return {**point, "score": score}

    def prune(self, point: Any, sub: SubRead, name: str) -> Any:
        """Drop the doc-key field (or the whole payload) again if the client did not ask for it."""
        selector = sub.body.get("with_payload")
        if _wants_payload_field(selector, name):
            return point
        if selector is None or selector is False:
            return {k: v for k, v in point.items() if k != "payload"}
        payload = point.get("payload")
        if isinstance(payload, dict) and name in payload:
            return {**point, "payload": {k: v for k, v in payload.items() if k != name}}
        return point

    def group_parts(self, group: Any) -> tuple[str, list[Any]]:
        return canonical_group(group.get("id")), list(group.get("hits") or [])

    def make_group(self, group: Any, hits: list[Any]) -> Any:
        return {**group, "hits": hits}


def canonical_group(value: Any) -> str:
    return orjson.dumps(value).decode()
