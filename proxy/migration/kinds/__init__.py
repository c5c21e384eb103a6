"""Migration kinds: what differs between a re-embedding, a schema copy, an in-place named
vector and a split, behind one small interface; everything else is shared.

The phases, guards, acknowledgements, repair log, progress, verify, switches and rollback are
the same for every kind (``phases``, ``service``, ``backfill``). A kind only answers:

- **plan**: which model the target is on (:meth:`Kind.model_b`), its default target name,
  the reasons its options or the gathered facts refuse the plan (:meth:`Kind.option_reasons`,
  :meth:`Kind.plan_reasons`, pure), the record fields it sets (:meth:`Kind.record_fields`),
  and the layout it will create (:meth:`Kind.layout`, pure: source, target, a readable diff,
  shown by ``--dry-run``);
- **create**: :meth:`Kind.create_targets` (I/O) builds the target(s) from the source layout;
- **backfill and mirror**: :meth:`Kind.transform` turns a source point's vector(s) into the
  target's (the backfill, ``switchyard.backfill.pipeline``), :meth:`Kind.mirror_vector` does the
  same for a mirrored write in either direction (``switchyard.proxy.dataplane.mirror``);
- **routing**: :meth:`Kind.route` (pure; default: the shared phase table);
- **cleanup**: :meth:`Kind.cleanup_removes` (pure, what ``--dry-run`` and status show) and
  :meth:`Kind.cleanup` (I/O).

A kind is a stateless object registered in :data:`KINDS` under its ``name`` (the record's
``kind`` field; records from before kinds read as ``reembed``). Its options are a JSON map
kept in the record's ``options`` and passed unchanged by the CLI (``--option``), REST (the
``options`` object) and gRPC (``PlanRequest.options``, a ``Struct``). To add a kind: subclass
:class:`Kind`, override what differs, and :func:`register` an instance (imported at the end of
this module so every process knows every kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from switchyard.proxy.errors import BadRequest

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

    from switchyard.proxy.migration.planner import PlanFacts, PlanRequest
    from switchyard.proxy.migration.record import Migration
    from switchyard.proxy.migration.routing import Route
    from switchyard.proxy.state.records import Binding
    from switchyard.proxy.state.store import StateStore

DEFAULT_KIND = "reembed"


@dataclass(frozen=True, slots=True)
class Layout:
    """What a plan creates, as plain JSON: the source's and the target's collection settings
    (``vectors``, ``hnsw_config``, ... and ``payload_indexes``), keyed by collection name for
    kinds with several targets, and the readable differences (``path: old -> new``)."""

    source: Mapping[str, Any] = field(default_factory=dict)
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    diff: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"source": dict(self.source), "targets": {k: dict(v) for k, v in self.targets.items()},
                "diff": list(self.diff)}


class Kind:
    """The ``reembed`` behaviour; other kinds override what differs (module docstring)."""

    name: ClassVar[str] = DEFAULT_KIND
    #: True: the backfill and mirror embed texts with model B; False: vectors are carried over
    #: (the record's ``copy_vectors`` is set, so digests cover the source vectors).
    embeds: ClassVar[bool] = True

    # -- plan (pure)

    def model_b(self, req: PlanRequest, binding: Binding | None) -> str | None:
        """The model the target is on: the plan's ``--to-model``."""
        return req.to_model or None

    def default_target(self, source: str, model_b: str) -> str:
        from switchyard.proxy.migration.planner import default_target

        return default_target(source, model_b)

    def option_reasons(self, options: Mapping[str, Any]) -> list[str]:
        """Every reason the kind's options refuse the plan (reembed takes none)."""
        return [f"kind {self.name} takes no options (got {', '.join(sorted(options))})"] if options else []

    async def enrich(self, client: AsyncQdrantClient, store: StateStore, f: PlanFacts) -> PlanFacts:
        """Kind-specific facts gathered before validation (I/O; e.g. ``split`` discovers the
        split values here). The default gathers nothing."""
        return f

    def plan_reasons(self, f: PlanFacts) -> list[str]:
        """Kind-specific reasons over the gathered facts (models, vectors, texts)."""
        from switchyard.proxy.migration import planner

        return planner.reembed_reasons(f)

    def record_fields(self, f: PlanFacts) -> dict[str, Any]:
        """Fields of the new :class:`Migration` the kind decides (beyond the shared ones)."""
        return {"copy_vectors": f.request.copy_vectors, "options": dict(f.request.options)}

    def layout(self, f: PlanFacts) -> Layout:
        """Source and target settings and their differences (pure, for ``--dry-run``)."""
        from switchyard.proxy.migration import layouts

        return layouts.reembed_layout(f)

    # -- create (I/O)

    async def create_targets(self, client: AsyncQdrantClient, store: StateStore, f: PlanFacts) -> None:
        from switchyard.proxy.migration import facts as io

        await io.create_target(client, store, f, self.layout(f))

    # -- backfill and mirror (pure, per point)

    def transform(self, m: Migration, vector: Any, embedded: Any) -> Any:
        """The target point's vector(s) from the source point's ``vector`` and, for kinds that
        embed, B's ``embedded`` row (``None`` when not embedded)."""
        from switchyard.backfill.pipeline import reembed_vector

        return reembed_vector(m, vector, embedded)

    def mirror_vector(self, m: Migration, vector: Any, to_target: bool) -> Any:
        """A carried-over vector as the secondary stores it (``to_target``: source layout ->
        target layout; else the reverse, for writes mirrored back after ``switch-writes``)."""
        return vector

    # -- routing (pure)

    def route(self, m: Migration, op: str) -> Route:
        from switchyard.proxy.migration.routing import table_route

        return table_route(m, op)

    # -- cleanup

    def cleanup_removes(self, m: Migration) -> list[str]:
        """What ``cleanup`` deletes, one readable line each."""
        return [f"collection `{m.source}` (the source) and its binding"]

    async def cleanup(self, client: AsyncQdrantClient, store: StateStore, m: Migration) -> None:
        from switchyard.proxy.migration import facts as io
        from switchyard.proxy.state.records import Binding

        await io.drop_collection(client, m.source)
        if await store.get(Binding.KIND, m.source) is not None:
            await store.delete(Binding.KIND, m.source)

    def target_vector_name(self, m: Migration) -> str:
        """The bound vector's name in the target (the binding ``complete`` moves to it)."""
        return m.vector

    def target_vector_name_for(self, f: PlanFacts) -> str:
        """The same at plan time: the name the target's binding gets."""
        return f.binding.vector if f.binding is not None else ""


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> Kind:
    """The kind called ``name``; :class:`BadRequest` naming the known ones otherwise."""
    found = KINDS.get(name or DEFAULT_KIND)
    if found is None:
        raise BadRequest(f"unknown migration kind {name!r} (one of {', '.join(sorted(KINDS))})")
    return found


def of(m: Migration) -> Kind:
    """The kind of a stored migration (unknown kinds fail loudly rather than act as reembed)."""
    return get(m.kind)


register(Kind())

from switchyard.proxy.migration.kinds import copy as _copy  # noqa: E402,F401  (registers `copy`)
from switchyard.proxy.migration.kinds import split as _split  # noqa: E402,F401  (registers `split`)
from switchyard.proxy.migration.kinds import named_vector as _named_vector  # noqa: E402,F401  (registers `named-vector`)
