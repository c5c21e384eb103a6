"""The ``split`` kind: one source collection into one target per value of a payload key.

The :class:`Kind` the rest of Switchyard calls (registered at import, as every kind is). It
parses and checks the kind's options (``by``, ``template``, ``vectors``; pure), and joins the
two halves of the plan in :meth:`SplitKind.enrich`: the I/O in ``split_io`` (discover the
values, the registered models, the names taken) and the pure decisions in ``split_plan``
(names, target specs, refusals). What the plan derived is stored in the record's
``options["derived"]`` (:func:`derived_of`; its routing layout: :func:`split_layout`), so
every later step, in every process, reads the same targets without asking the upstream again.

* **routing** (:meth:`SplitKind.route`): writes stay on the source in every phase (the split
  mirror levels them into the targets); reads move to the split reader at ``switch-reads``.
* **cleanup** drops the source; the proxy then refuses writes to the logical name.

The plan's names that ``split_io`` and the tests import from here (``TargetSpec``,
``Discovery``, ``target_specs``, ``problems``...) are re-exported from ``split_plan``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from switchyard.proxy.dataplane.split_routing import SplitLayout
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.migration.kinds import Kind, Layout, register
from switchyard.proxy.migration.kinds.split_plan import SCROLL_BOUND as SCROLL_BOUND
from switchyard.proxy.migration.kinds.split_plan import Discovery as Discovery
from switchyard.proxy.migration.kinds.split_plan import Template as Template
from switchyard.proxy.migration.kinds.split_plan import TargetSpec as TargetSpec
from switchyard.proxy.migration.kinds.split_plan import key_and_template as key_and_template
from switchyard.proxy.migration.kinds.split_plan import layout_of as layout_of
from switchyard.proxy.migration.kinds.split_plan import name_problem as name_problem
from switchyard.proxy.migration.kinds.split_plan import parse_template as parse_template
from switchyard.proxy.migration.kinds.split_plan import problems as problems
from switchyard.proxy.migration.kinds.split_plan import target_specs as target_specs
from switchyard.proxy.migration.kinds.split_plan import values_from_facets as values_from_facets
from switchyard.proxy.migration.kinds.split_plan import values_from_scroll as values_from_scroll

KIND = "split"


# -- the kind ----------------------------------------------------------------------------------

OPTIONS = ("by", "template", "vectors", "derived")


def option_reasons(options: Mapping[str, Any]) -> list[str]:
    """Every reason the split options refuse the plan (pure; types and the template)."""
    out = [f"unknown split option `{k}` (one of {', '.join(OPTIONS[:-1])})" for k in options if k not in OPTIONS]
    by = options.get("by") or []
    if isinstance(by, str):
        by = [by]
    if not isinstance(by, list) or not all(isinstance(f, str) and f for f in by):
        out.append(f"`by` must be a field name or a list of them, got {options.get('by')!r}")
        by = []
    template = options.get("template")
    if template is not None and not isinstance(template, str):
        out.append(f"`template` must be a string, got {template!r}")
    elif not by and template is None:
        out.append("kind split needs `by` (--by FIELD) or a name `template` naming payload fields")
    else:
        try:
            key_and_template(by, template, "logical")
        except BadRequest as exc:
            out.append(str(exc))
    vectors = options.get("vectors")
    if vectors is not None and not isinstance(vectors, Mapping):
        out.append(f"`vectors` must be a JSON object (one vectors config, or default/values), got {vectors!r}")
    return out


def fields_of(options: Mapping[str, Any], logical: str) -> tuple[tuple[str, ...], Template]:
    by = options.get("by") or []
    return key_and_template([by] if isinstance(by, str) else list(by), options.get("template"), logical)


def derived_of(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the plan derived and stored (``options["derived"]``): layout and target specs."""
    return options.get("derived") or {}


def split_layout(m: Any) -> SplitLayout:
    """The routing layout of a stored split migration."""
    return SplitLayout.from_dict(derived_of(m.options).get("layout") or {"fields": ["?"]})


class SplitKind(Kind):
    """One source, one target per split key (module docstring)."""

    name: ClassVar[str] = KIND
    embeds: ClassVar[bool] = True  # targets on another model are re-embedded; others copied

    def model_b(self, req: Any, binding: Any) -> str | None:
        return req.to_model or (binding.model_id if binding is not None else None)

    def default_target(self, source: str, model_b: str) -> str:
        return f"{source}__split"

    def option_reasons(self, options: Mapping[str, Any]) -> list[str]:
        return option_reasons(options)

    async def enrich(self, client: Any, store: Any, f: Any) -> Any:
        """Discover the split values and derive the targets (I/O), kept in the request's
        ``options["derived"]`` for the pure steps that follow."""
        from switchyard.proxy.migration.kinds import split_io

        if option_reasons(f.request.options) or f.source.info is None:
            return f
        fields, template = fields_of(f.request.options, f.request.logical)
        found = await split_io.discover(client, f.source.collection, fields)
        info = f.source.info
        schema = {k: {"data_type": str(getattr(v.data_type, "value", v.data_type))}
                  for k, v in (info.payload_schema or {}).items()}
        src = split_io.vectors_json(info.config.params.vectors)
        known = await split_io.known_models(store, f.request.options.get("vectors"))
        vector = f.binding.vector if f.binding is not None else ""
        specs = target_specs(f.request.logical, fields, template, found, src, schema,
                             f.request.options.get("vectors"), known, vector)
        taken = await split_io.taken_names(client)
        targets = [{**s.to_dict(), **({"spec": known[s.model].to_dict()} if s.model in known else {})}
                   for s in specs]
        reasons = problems(f.request.logical, f.source.collection, specs, found, taken, known, src)
        derived = {"fields": list(fields), "targets": targets, "reasons": reasons,
                   "discovery": {"method": found.method, "scanned": found.scanned, "missing": found.missing},
                   "source_vectors": src}
        if not reasons:
            derived["layout"] = layout_of(fields, specs).to_dict()
        options = {**dict(f.request.options), "derived": derived}
        return dataclasses.replace(f, request=dataclasses.replace(f.request, options=options))

    def plan_reasons(self, f: Any) -> list[str]:
        d = derived_of(f.request.options)
        if not d:
            return [] if option_reasons(f.request.options) else ["split values were not discovered"]
        return list(d.get("reasons") or [])

    def record_fields(self, f: Any) -> dict[str, Any]:
        d = derived_of(f.request.options)
        names = sorted(t["name"] for t in d.get("targets") or ())
        copies = all(t.get("model") is None for t in d.get("targets") or ())
        return {"copy_vectors": copies, "target": names[0] if names else f.target,
                "options": dict(f.request.options)}

    def layout(self, f: Any) -> Layout:
        d = derived_of(f.request.options)
        targets = {t["name"]: {"vectors": t["vectors"], "payload_indexes": t["indexes"], "model": t["model"],
                               "points": t["points"]} for t in d.get("targets") or ()}
        method = (d.get("discovery") or {}).get("method", "?")
        head = f"split by {', '.join(d.get('fields') or ())}: {len(targets)} targets (values by {method})"
        lines = [f"`{n}`: {t['points']} points, vectors {t['vectors']}"
                 + (f" re-embedded with {t['model']}" if t["model"] else " copied") for n, t in sorted(targets.items())]
        diff = (head, *lines)
        return Layout({"vectors": d.get("source_vectors")}, targets, diff)

    async def create_targets(self, client: Any, store: Any, f: Any) -> None:
        from switchyard.proxy.migration.kinds import split_io

        d = derived_of(f.request.options)
        specs = [TargetSpec(t["key"], t["name"], t["vectors"], t["model"], t["indexes"], t["points"])
                 for t in d.get("targets") or ()]
        assert f.binding is not None
        await split_io.create_targets(client, store, f.source.collection, specs, f.binding.model_id,
                                      f.binding.enforce, f.binding.vector)

    def route(self, m: Any, op: str) -> Any:
        """Writes: the source stays primary in every phase (levelled into the targets by the
        split mirror); reads: the source until ``switch-reads``, then the split reader."""
        from switchyard.proxy.migration.record import CANCELLED, PLANNED, READS_SWITCHED, WRITES_SWITCHED, COMPLETE
        from switchyard.proxy.migration.routing import Route

        src, p = m.source, m.phase
        if op == "write":
            if p in (PLANNED, CANCELLED):
                return Route(m.id, src, None, src, False, False, f"{p}: writes to source only")
            return Route(m.id, src, m.target, src, False, False,
                         f"{p}: primary source, levelled into the split targets")
        if p in (READS_SWITCHED, WRITES_SWITCHED, COMPLETE):
            return Route(m.id, m.target, None, m.target, False, False, f"{p}: reads from the split targets")
        return Route(m.id, src, None, src, False, False, f"{p}: reads from source")

    def cleanup_removes(self, m: Any) -> list[str]:
        return [f"the source collection `{m.source}` and its binding; from then on writes to `{m.logical}` "
                "through the proxy are refused with the reason (clients write to the split targets "
                "themselves), and reads of it keep fanning out to the targets"]

    async def cleanup(self, client: Any, store: Any, m: Any) -> None:
        """Drop the source (the shared default): after it, the proxy refuses writes to the logical
        name (:func:`~switchyard.proxy.dataplane.split_mirror.closed_reason`): with no source to
        be primary, it cannot know which target a payload or vector edit by id belongs to."""
        await super().cleanup(client, store, m)


register(SplitKind())
