"""The ``named-vector`` kind: model B's vector added *in place*, beside model A's, in the one
collection clients already use (Qdrant 1.18+ adds and removes named vectors on a live
collection: ``PUT`` / ``DELETE /collections/{c}/vectors/{name}``).

Options: ``vector`` (required): the new vector's name; ``old_vector`` is derived at plan time
(the bound vector, which must be named). Source and target are the same collection; there is
one point per document, so nothing is mirrored:

- **plan** adds ``vector`` with B's size and distance (:meth:`NamedVectorKind.create_targets`);
  the collection stays bound to A's vector until ``complete``;
- **writes** through the proxy get B's vector in the same upsert from ``dual_write`` on
  (``switchyard.proxy.dataplane.in_place_writes``); deletes and payload updates pass through;
- **backfill** fills the vector with a conditional ``update_vectors`` (the point lacks it and
  its text is still the one embedded), never over a value a client wrote, never on a point
  deleted meanwhile (``switchyard.backfill.in_place_copier``);
- **reads**: merged inside the collection before ``switch-reads`` (``has_vector`` selects each
  side), rewritten to the new vector after (``switchyard.proxy.dataplane.in_place_reads``);
- **verify**: every point has the new vector and its digest is the digest of its text;
- **complete** rebinds the collection to B's vector; **cleanup** deletes A's vector. Every step
  before cleanup can be undone without loss: A's vector is still written on every write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from switchyard.proxy.migration.kinds import Kind, Layout, register

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

    from switchyard.proxy.migration.planner import PlanFacts, PlanRequest
    from switchyard.proxy.migration.record import Migration
    from switchyard.proxy.migration.routing import Route
    from switchyard.proxy.state.records import Binding
    from switchyard.proxy.state.store import StateStore

NAME = "named-vector"
OPTIONS = ("vector",)
#: Qdrant accepts most strings as vector names; Switchyard keeps to names that need no escaping
#: in URLs, headers and logs.
_VECTOR_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class NamedVectorKind(Kind):
    name: ClassVar[str] = NAME
    embeds: ClassVar[bool] = True
    #: source and target are one collection (the shared target-name checks do not apply)
    in_place: ClassVar[bool] = True

    # -- plan (pure)

    def default_target(self, source: str, model_b: str) -> str:
        return source

    def option_reasons(self, options: Mapping[str, Any]) -> list[str]:
        return option_reasons(options)

    def plan_reasons(self, f: PlanFacts) -> list[str]:
        return plan_reasons(f)

    def record_fields(self, f: PlanFacts) -> dict[str, Any]:
        old = f.binding.vector if f.binding is not None else ""
        return {"copy_vectors": False, "target": f.source.collection,
                "options": {"vector": str(f.request.options.get("vector") or ""), "old_vector": old}}

    def layout(self, f: PlanFacts) -> Layout:
        from switchyard.proxy.migration import layouts

        source = layouts.settings_of(f.source.info)
        target = dict(source)
        new = str(f.request.options.get("vector") or "")
        if f.model_b is not None and new and isinstance(source.get("vectors"), Mapping):
            target["vectors"] = {**source["vectors"], new: {"size": f.model_b.dimensions,
                                                            "distance": f.model_b.distance}}
        return Layout(source, {f.source.collection: target},
                      (f"adds vector `{new}` in place (no second collection)",) + layouts.diff(source, target))

    # -- create (I/O)

    async def create_targets(self, client: AsyncQdrantClient, store: StateStore, f: PlanFacts) -> None:
        """``PUT /collections/{c}/vectors/{new}`` with B's size and distance. The binding stays
        on A's vector (complete moves it)."""
        from qdrant_client import models
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        from switchyard.proxy.errors import UpstreamError

        assert f.model_b is not None
        new = str(f.request.options["vector"])
        config = models.DenseVectorNameConfig(dense=models.DenseVectorConfig(
            size=f.model_b.dimensions, distance=models.Distance(f.model_b.distance)))
        try:
            await client.create_vector_name(f.source.collection, new, config, wait=True)
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"adding vector `{new}` to `{f.source.collection}` failed: {exc}") from exc

    # -- backfill and mirror

    def transform(self, m: Migration, vector: Any, embedded: Any) -> Any:
        """Only B's vector under the new name: the point keeps its other vectors in place."""
        return {new_vector(m): [float(x) for x in embedded]} if embedded is not None else {}

    # -- routing (pure)

    def route(self, m: Migration, op: str) -> Route:
        return route(m, op)

    # -- cleanup

    def cleanup_removes(self, m: Migration) -> list[str]:
        return [f"vector `{old_vector(m)}` (model {m.model_a}) of collection `{m.source}` "
                f"(DELETE /collections/{m.source}/vectors/{old_vector(m)}); the points stay"]

    async def cleanup(self, client: AsyncQdrantClient, store: StateStore, m: Migration) -> None:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        from switchyard.proxy.errors import UpstreamError

        try:
            await client.delete_vector_name(m.source, old_vector(m), wait=True)
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"deleting vector `{old_vector(m)}` of `{m.source}` failed: {exc}") from exc

    async def complete_in_place(self, store: StateStore, m: Migration) -> None:
        """``complete``: the bindings of the collection (and of the logical name, when it is an
        alias) move to model B's vector; nothing moves in Qdrant."""
        from switchyard.proxy.state.records import Binding

        for name in dict.fromkeys((m.source, m.logical)):
            env = await store.get(Binding.KIND, name)
            if env is not None:
                b = Binding.from_dict(env.data)
                await store.put(Binding.KIND, name, Binding(b.collection, m.model_b, b.enforce,
                                                            new_vector(m)).to_dict(), env.rev)

    def target_vector_name(self, m: Migration) -> str:
        return new_vector(m)

    def target_vector_name_for(self, f: PlanFacts) -> str:
        return str(f.request.options.get("vector") or "")


def new_vector(m: Migration) -> str:
    return str(m.options.get("vector") or "")


def old_vector(m: Migration) -> str:
    return str(m.options.get("old_vector") or m.vector)


def option_reasons(options: Mapping[str, Any]) -> list[str]:
    """Every reason the options refuse the plan (pure)."""
    out = [f"unknown named-vector option `{k}` (one of {', '.join(OPTIONS)}; old_vector is derived)"
           for k in options if k not in OPTIONS and k != "old_vector"]
    new = options.get("vector")
    if not new:
        out.append("kind named-vector needs --vector NAME (the new vector's name)")
    elif not isinstance(new, str) or not _VECTOR_NAME.match(new):
        out.append(f"--vector {new!r}: use 1-64 letters, digits, `_`, `.` or `-`")
    return out


def plan_reasons(f: PlanFacts) -> list[str]:
    """Reasons over the gathered facts (pure): B registered and not A; the bound vector named
    and dense; the new name free; texts present (B's vectors are embedded from them)."""
    r, out = f.request, []
    if not r.to_model:
        out.append("kind named-vector needs --to-model")
    elif f.model_b is None:
        out.append(f"model `{r.to_model}` is not registered")
    if f.model_a is not None and f.model_b is not None and f.model_a.id == f.model_b.id:
        out.append(f"`{r.logical}` is already on model `{f.model_b.id}`")
    if r.copy_vectors:
        out.append("kind named-vector embeds with model B; --copy-vectors does not apply")
    new = r.options.get("vector")
    vectors = f.source.vectors
    if f.binding is not None and not f.binding.vector:
        out.append(f"`{r.logical}` has an unnamed vector; a named vector cannot be added beside it "
                   f"(use --kind reembed, or copy to a named layout first)")
    elif isinstance(vectors, Mapping) and isinstance(new, str) and new in vectors:
        out.append(f"vector `{new}` already exists in `{f.source.collection}`; pick another --vector")
    if f.binding is not None and f.binding.vector and f.binding.vector == new:
        out.append(f"--vector `{new}` is the bound (old) vector itself")
    return out + _text_reasons(f)


def _text_reasons(f: PlanFacts) -> list[str]:
    s, r = f.source, f.request
    if not s.missing_text or r.text_fetcher:
        return []
    share = s.missing_text / s.sampled
    return [f"{s.missing_text} of {s.sampled} sampled points ({share:.0%}) lack the text field "
            f"`{r.text_field}`; model B's vector is embedded from it (configure a text fetcher)"]


def route(m: Migration, op: str) -> Route:
    """Routing in place (pure): everything goes to the one collection; nothing is mirrored;
    similarity reads merge (or shadow) inside it when the read mode says so, before
    ``switch-reads`` (``in_place_reads`` then ranks them by each side's vector)."""
    from switchyard.proxy.migration.record import CANCELLED, DUAL_WRITE, PLANNED, VERIFIED
    from switchyard.proxy.migration.routing import Route

    if op not in ("read", "write"):
        raise ValueError(f"op must be read or write, got {op!r}")
    c, p = m.source, m.phase
    if op == "write":
        what = "writes as sent" if p in (PLANNED, CANCELLED) else "upserts get model B's vector in place"
        return Route(m.id, c, None, c, False, False, f"{p}: {what}, nothing mirrored")
    if p in (DUAL_WRITE, VERIFIED) and m.read_mode == "merged":
        return Route(m.id, c, None, c, True, False,
                     f"{p}, read mode merged: new vector where present, old elsewhere, in place")
    if p in (DUAL_WRITE, VERIFIED) and m.read_mode == "shadow":
        return Route(m.id, c, None, c, False, True,
                     f"{p}, read mode shadow: old vector served, in-place merge compared")
    if p in (PLANNED, CANCELLED, DUAL_WRITE, VERIFIED):
        return Route(m.id, c, None, c, False, False, f"{p}: reads ranked by the old vector")
    return Route(m.id, c, None, c, False, False, f"{p}: reads ranked by the new vector `{new_vector(m)}`")


register(NamedVectorKind())
