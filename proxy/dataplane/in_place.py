"""Planning for ``named-vector`` (in place) migrations: writes, reads, backfill, verify (pure).

An in-place migration adds model B's vector ``new`` beside model A's vector ``old`` in the one
collection the clients already use. There is one point per document, so nothing is mirrored:

* **writes** (:func:`plan_rest_write`, :func:`plan_grpc_points`): every upserted point gets
  B's vector for ``new`` in the same upsert, embedded from its text field or from an inference
  object's text, and keeps the vectors the client sent (``old`` included). A point that already
  carries ``new`` (the client sent it itself, as after ``switch-writes``) is kept as sent. A
  point with no text and no ``new`` vector is refused, with a reason, so nothing reaches the
  collection that the new vector would be missing on (fail closed). Deletes and payload updates
  pass through untouched. Each filled point also gets :data:`VECTOR_DIGEST` = the digest of
  the text its ``new`` vector was embedded from, which verify compares with the text.
* **reads** (:func:`side_filter_rest`, :func:`rewrite_rest`, and the gRPC forms): before
  ``switch-reads`` a merged read asks the collection twice, ranked by ``new`` among points that
  have it (``has_vector: new``) and by ``old`` among the others (``must_not has_vector: new``);
  the two sets are disjoint, so the merge by document (new wins) never sees a point twice.
  After ``switch-reads`` a read with no ``using``, or naming ``old``, is rewritten to ``new``.
* **backfill** (:func:`fill_operations`): B's vector goes in with ``update_vectors`` whose
  ``update_filter`` says the point still lacks ``new`` (Qdrant 1.16+), so a value a client wrote
  meanwhile is never overwritten; the digest is set only where the text is still the one that
  was embedded. Points deleted meanwhile are dropped before the write (:func:`missing_ids`).
* **verify** (:func:`check_point`): every point must have ``new`` and a digest equal to the
  digest of its current text.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import grpc as pb
from qdrant_client import models

#: Payload field on every point whose new vector the proxy or the backfill computed: the digest
#: of the text it was embedded from (``{vector name: digest}``, so two in-place migrations of
#: one collection never share a digest).
VECTOR_DIGEST = "switchyard_vector_digest"
DIGEST_CHARS = 32


def text_digest(text: str) -> str:
    """The digest of the text a new vector was embedded from (sha256, 32 hex characters)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True, slots=True)
class InPlace:
    """What an in-place migration's planning needs: the vector names and where text lives."""

    new: str
    old: str
    text_field: str = "text"
    #: names an inference object may use for model B / model A (spec id, provider model name)
    model_b: tuple[str, ...] = ()
    model_a: tuple[str, ...] = ()
    #: also compute A's vector for ``old`` when a point lacks it and has a text (until
    #: ``complete``: clients may send only B's vector once writes are switched, and a rollback
    #: must still find A's on every point) ...
    fill_old: bool = False
    #: ... and refuse a point that lacks it and has no text (``writes_switched``)
    require_old: bool = False

    def roles(self) -> tuple[tuple[str, str, tuple[str, ...], bool, bool], ...]:
        """``(role, vector name, model names, filled when missing, required)``: the new vector
        is always filled; the old one per ``fill_old`` / ``require_old`` (its inference objects
        are always served)."""
        return (("new", self.new, self.model_b, True, True),
                ("old", self.old, self.model_a, self.fill_old or self.require_old, self.require_old))


# ---------------------------------------------------------------- writes


@dataclass(slots=True)
class Fill:
    """One vector a point needs: its id, the role (``new``: model B, ``old``: model A), the
    text to embed, and where to put the result."""

    point_id: Any
    role: str
    text: str
    put: Callable[[list[float]], None]


@dataclass(slots=True)
class WritePlan:
    """The vectors a write needs computed, how many the client sent itself, and why the write
    must be refused (empty: it may go on)."""

    fills: list[Fill] = field(default_factory=list)
    client_sent: int = 0
    refusals: list[str] = field(default_factory=list)

    def reason(self) -> str:
        more = f" (and {len(self.refusals) - 3} more)" if len(self.refusals) > 3 else ""
        return "; ".join(self.refusals[:3]) + more + "; nothing was written"


def _is_document(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("text"), str) and "model" in value


def _text_of(payload: Any, vectors: Any, prefer: tuple[str, ...], text_field: str) -> str | None:
    """The text to embed: the payload's text field, else an inference object's text (one naming
    a ``prefer`` model first, then any: the text is the document's whichever model it names)."""
    value = payload.get(text_field) if isinstance(payload, dict) else None
    if isinstance(value, str):
        return value
    docs: list[dict[str, Any]] = []
    if _is_document(vectors):
        docs.append(vectors)
    elif isinstance(vectors, dict):
        docs.extend(v for v in vectors.values() if _is_document(v))
    docs.sort(key=lambda d: d.get("model") not in prefer)
    return str(docs[0]["text"]) if docs else None


def _cannot(pid: Any, name: str, role: str, cfg: InPlace) -> str:
    model = "B" if role == "new" else "A"
    return (f"point {pid}: no text in payload field `{cfg.text_field}` and no inference object, so "
            f"model {model}'s vector `{name}` cannot be computed; send `{name}` with the point")


def plan_rest_point(point: dict[str, Any], cfg: InPlace, plan: WritePlan) -> None:
    """Add one REST point (``{"id", "vector", "payload"}``) to ``plan``. The point is edited
    (digest of a client-sent new vector) now, and by each fill's ``put`` after embedding."""
    vectors = point.get("vector")
    pid = point.get("id")
    if vectors is not None and not isinstance(vectors, dict) or _is_document(vectors):
        plan.refusals.append(f"point {pid}: an unnamed vector cannot be kept beside `{cfg.new}`; "
                             f"name it `{cfg.old}`")
        return
    named = vectors if isinstance(vectors, dict) else {}
    needs: list[tuple[str, str, str]] = []
    for role, name, models_, fill, required in cfg.roles():
        value: Any = named.get(name)
        if _is_document(value) and value.get("model") in models_:
            needs.append((role, name, str(value["text"])))  # an inference object for this vector
        elif value is not None:
            plan.client_sent += role == "new"
            text = _text_of(point.get("payload"), None, (), cfg.text_field)
            if role == "new" and text is not None:  # the client's vector of this text
                point["payload"] = _with_digest(point.get("payload"), name, text)
        elif fill:
            text = _text_of(point.get("payload"), vectors, models_, cfg.text_field)
            if text is None:
                if required:
                    plan.refusals.append(_cannot(pid, name, role, cfg))
                continue
            needs.append((role, name, text))
    for role, name, text in needs:
        plan.fills.append(Fill(pid, role, text, _rest_put(point, name, text if role == "new" else None)))


def _with_digest(payload: Any, name: str, text: str) -> dict[str, Any]:
    out = dict(payload) if isinstance(payload, dict) else {}
    out[VECTOR_DIGEST] = {**_digests(out), name: text_digest(text)}
    return out


def _rest_put(point: dict[str, Any], name: str, digest_text: str | None) -> Callable[[list[float]], None]:
    def put(vector: list[float]) -> None:
        vectors = point.get("vector")
        point["vector"] = {**(vectors if isinstance(vectors, dict) else {}), name: vector}
        if digest_text is not None:
            point["payload"] = _with_digest(point.get("payload"), name, digest_text)
    return put


def _digests(payload: Mapping[str, Any]) -> dict[str, Any]:
    value = payload.get(VECTOR_DIGEST)
    return dict(value) if isinstance(value, dict) else {}


def _batch_points(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A REST ``batch`` upsert seen as points (:func:`_unbatch` writes them back)."""
    ids = batch.get("ids") or []
    payloads = batch.get("payloads")
    vectors = batch.get("vectors")
    out = []
    for i, pid in enumerate(ids):
        payload = payloads[i] if isinstance(payloads, list) and i < len(payloads) else None
        if isinstance(vectors, dict):
            vector: Any = {n: col[i] for n, col in vectors.items()
                           if isinstance(col, list) and i < len(col) and col[i] is not None}
        else:
            vector = vectors[i] if isinstance(vectors, list) and i < len(vectors) else None
        out.append({"id": pid, "vector": vector, "payload": payload})
    return out


def plan_rest_write(rest: str, body: Any, cfg: InPlace) -> tuple[WritePlan, Callable[[], Any]]:
    """The plan for a REST point write (``rest``: the path after the collection) and a function
    giving the body to forward once the fills are put (a copy: ``body`` is not changed).

    Only upserts (alone or in a batch update) carry points; other writes plan nothing. A
    batch-form upsert is forwarded as a points list, since a column of the batch form cannot
    hold a vector for some points only."""
    plan = WritePlan()
    if not isinstance(body, dict):
        return plan, lambda: body
    body = copy.deepcopy(body)
    if rest == "/points":
        _plan_upsert(body, cfg, plan)
    elif rest == "/points/batch" and isinstance(body.get("operations"), list):
        for op in body["operations"]:
            if isinstance(op, dict) and isinstance(op.get("upsert"), dict):
                _plan_upsert(op["upsert"], cfg, plan)
    return plan, lambda: body


def _plan_upsert(op: dict[str, Any], cfg: InPlace, plan: WritePlan) -> None:
    if isinstance(op.get("batch"), dict):
        op["points"] = _batch_points(op.pop("batch"))
    if isinstance(op.get("points"), list):
        for point in op["points"]:
            if isinstance(point, dict):
                plan_rest_point(point, cfg, plan)


def plan_grpc_points(points: Sequence[Any], cfg: InPlace, plan: WritePlan | None = None) -> WritePlan:
    """The plan for gRPC ``PointStruct`` messages (edited in place: now for the digest of a
    client-sent new vector, by the fills' ``put`` after embedding)."""
    plan = plan if plan is not None else WritePlan()
    for point in points:
        pid = point.id.num if point.id.WhichOneof("point_id_options") == "num" else point.id.uuid
        which = point.vectors.WhichOneof("vectors_options")
        if which == "vector":
            plan.refusals.append(f"point {pid}: an unnamed vector cannot be kept beside `{cfg.new}`; "
                                 f"name it `{cfg.old}`")
            continue
        named = point.vectors.vectors.vectors
        needs: list[tuple[str, str, str]] = []
        for role, name, models_, fill, required in cfg.roles():
            value = named[name] if name in named else None
            if value is not None and value.WhichOneof("vector") == "document" and value.document.model in models_:
                needs.append((role, name, str(value.document.text)))
            elif value is not None:
                plan.client_sent += role == "new"
                text = _grpc_text(point, None, (), cfg.text_field)
                if role == "new" and text is not None:
                    _grpc_digest(point, name, text, cfg.text_field)
            elif fill:
                text = _grpc_text(point, named, models_, cfg.text_field)
                if text is None:
                    if required:
                        plan.refusals.append(_cannot(pid, name, role, cfg))
                    continue
                needs.append((role, name, text))
        for role, name, text in needs:
            plan.fills.append(Fill(pid, role, text, _grpc_put(point, name, text if role == "new" else None,
                                                               cfg.text_field)))
    return plan


def _grpc_text(point: Any, named: Any, prefer: tuple[str, ...], text_field: str = "text") -> str | None:
    if text_field in point.payload and point.payload[text_field].WhichOneof("kind") == "string_value":
        return str(point.payload[text_field].string_value)
    docs = [v.document for v in (named.values() if named is not None else ())
            if v.WhichOneof("vector") == "document"]
    docs.sort(key=lambda d: d.model not in prefer)
    return str(docs[0].text) if docs else None


def _grpc_put(point: Any, name: str, digest_text: str | None, text_field: str) -> Callable[[list[float]], None]:
    def put(vector: list[float]) -> None:
        target = point.vectors.vectors.vectors[name]
        target.Clear()
        target.dense.data[:] = vector
        if digest_text is not None:
            _grpc_digest(point, name, digest_text, text_field)
    return put


def _grpc_digest(point: Any, name: str, text: str, text_field: str) -> None:
    digests = point.payload[VECTOR_DIGEST] if VECTOR_DIGEST in point.payload else None
    entry = pb.Value()
    if digests is not None and digests.WhichOneof("kind") == "struct_value":
        entry.CopyFrom(digests)
    entry.struct_value.fields[name].string_value = text_digest(text)
    point.payload[VECTOR_DIGEST].CopyFrom(entry)


# ---------------------------------------------------------------- reads

#: REST similarity families whose vector is chosen by ``using`` (search: the vector's name).
_USING_FAMILIES = ("query", "recommend", "discover")


def side_filter_rest(flt: Any, new: str, has: bool) -> dict[str, Any]:
    """The client's REST filter narrowed to points that have (``has``) or lack ``new``."""
    cond = {"has_vector": new}
    base = flt if isinstance(flt, dict) else None
    if has:
        return {"must": [cond, base]} if base else {"must": [cond]}
    return {"must": [base], "must_not": [cond]} if base else {"must_not": [cond]}


def _retarget(using: Any, cfg: InPlace, to: str) -> Any:
    """``to`` where the client named no vector or the old one; any other name is kept."""
    return to if using in (None, "", cfg.old) else using


def rewrite_rest(family: str, body: dict[str, Any], cfg: InPlace, to: str,
                 has_new: bool | None = None) -> dict[str, Any]:
    """A copy of one REST sub-request ranked by vector ``to``; with ``has_new`` set, narrowed
    to points having (True) or lacking (False) the new vector, prefetches included."""
    out = copy.deepcopy(body)
    _rewrite_rest_level(family, out, cfg, to, has_new)
    return out


def _rewrite_rest_level(family: str, body: dict[str, Any], cfg: InPlace, to: str, has_new: bool | None) -> None:
    if family == "search":
        vector = body.get("vector")
        if isinstance(vector, dict) and "vector" in vector:
            vector["name"] = _retarget(vector.get("name"), cfg, to)
        elif isinstance(vector, list):
            body["vector"] = {"name": to, "vector": vector}
    elif family in _USING_FAMILIES:
        body["using"] = _retarget(body.get("using"), cfg, to)
    if has_new is not None:
        body["filter"] = side_filter_rest(body.get("filter"), cfg.new, has_new)
    prefetch = body.get("prefetch")
    for item in prefetch if isinstance(prefetch, list) else [prefetch] if isinstance(prefetch, dict) else []:
        if isinstance(item, dict):
            _rewrite_rest_level("query", item, cfg, to, has_new)


def side_filter_grpc(flt: Any | None, new: str, has: bool) -> Any:
    """The gRPC form of :func:`side_filter_rest` (a new ``Filter``)."""
    cond = pb.Condition(has_vector=pb.HasVectorCondition(has_vector=new))
    out = pb.Filter()
    if has:
        out.must.append(cond)
    else:
        out.must_not.append(cond)
    if flt is not None and flt.ByteSize():
        out.must.append(pb.Condition(filter=flt))
    return out


def rewrite_grpc(family: str, msg: Any, cfg: InPlace, to: str, has_new: bool | None = None) -> Any:
    """A copy of one gRPC sub-request message, as :func:`rewrite_rest`."""
    out = type(msg)()
    out.CopyFrom(msg)
    _rewrite_grpc_level(family, out, cfg, to, has_new)
    return out


def _rewrite_grpc_level(family: str, msg: Any, cfg: InPlace, to: str, has_new: bool | None) -> None:
    fields = msg.DESCRIPTOR.fields_by_name
    name = "vector_name" if family == "search" else "using"
    if name in fields:
        current = getattr(msg, name) if msg.HasField(name) else None
        setattr(msg, name, _retarget(current, cfg, to))
    if has_new is not None and "filter" in fields:
        narrowed = side_filter_grpc(msg.filter if msg.HasField("filter") else None, cfg.new, has_new)
        msg.filter.CopyFrom(narrowed)
    if "prefetch" in fields:
        for item in msg.prefetch:
            _rewrite_grpc_level("query", item, cfg, to, has_new)


# ---------------------------------------------------------------- backfill


def lacks_new(new: str) -> models.Filter:
    """Points without vector ``new``: the condition of every backfill write."""
    return models.Filter(must_not=[models.HasVectorCondition(has_vector=new)])


def fill_operations(cfg: InPlace, fills: Sequence[tuple[Any, list[float], str]], *,
                    lacking_only: bool = True) -> list[Any]:
    """The batch update that fills ``new`` for ``(id, vector, text)`` triples (pure).

    Per point, ``update_vectors`` conditional on the point still having the text that was
    embedded and (``lacking_only``, the backfill) still lacking ``new``: a vector a client wrote
    meanwhile is never overwritten, and a text changed meanwhile never gets a vector of the old
    one. Then the digest of that text, under the same text condition and only where ``new`` is
    now present. (``lacking_only=False`` is the repair of a stale vector.)
    """
    ops: list[Any] = []
    for pid, vector, text in fills:
        same_text = models.FieldCondition(key=cfg.text_field, match=models.MatchValue(value=text))
        cond = models.Filter(must=[same_text], must_not=[models.HasVectorCondition(has_vector=cfg.new)]
                             if lacking_only else None)
        ops.append(models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(
            points=[models.PointVectors(id=pid, vector={cfg.new: vector})], update_filter=cond)))
        ops.append(models.SetPayloadOperation(set_payload=models.SetPayload(
            payload={VECTOR_DIGEST: {cfg.new: text_digest(text)}},
            filter=models.Filter(must=[models.HasIdCondition(has_id=[pid]), same_text,
                                       models.HasVectorCondition(has_vector=cfg.new)]))))
    return ops


def missing_ids(asked: Sequence[Any], found: Sequence[Any]) -> list[Any]:
    """Ids of ``asked`` not among ``found`` (deleted meanwhile: the backfill skips them)."""
    have = {str(x) for x in found}
    return [x for x in asked if str(x) not in have]


# ---------------------------------------------------------------- verify

OK, MISSING, STALE = "ok", "missing", "stale"


def check_point(vector_names: Sequence[str], payload: Mapping[str, Any] | None, cfg: InPlace) -> tuple[str, str]:
    """``(verdict, reason)`` for one point: ``ok``, ``missing`` (no ``new`` vector), ``stale``
    (its digest is not the digest of its current text, or it has none)."""
    if cfg.new not in vector_names:
        return MISSING, f"no vector `{cfg.new}`"
    payload = payload or {}
    text = payload.get(cfg.text_field)
    digest = _digests(payload).get(cfg.new)
    if not isinstance(text, str):
        return (OK, "no text: the client's own vector") if digest is None else (
            STALE, f"has a digest but no text in `{cfg.text_field}`")
    if digest is None:
        return STALE, f"no digest of the text `{cfg.new}` was embedded from"
    if digest != text_digest(text):
        return STALE, f"`{cfg.new}` was embedded from another text than `{cfg.text_field}` holds"
    return OK, ""
