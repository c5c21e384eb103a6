"""The ``split`` kind's plan: one source collection into one target per value of a payload key.

Pure functions over facts the service gathers (the I/O that gathers them: ``split_io``):

* **key and names**: the split key is ``--by`` (one or more payload fields, dotted paths for
  nested ones) or, without it, the fields the name template names. The template
  (``{source_title}_{type}``; ``{{`` / ``}}`` are literal braces) may only name key fields; the
  default is ``<logical>_{f1}_{f2}...``. Each key renders to its target's name.
* **values** come from facets (``values_from_facets``: a facet per field, nested by the values
  of the fields before it) or, where the upstream has no facets, from a bounded scroll of the
  key fields (``values_from_scroll``). Points lacking a key field are counted: a plan that
  finds any is refused (they would have no target), naming the count.
* **vectors per target**: none given keeps the source's vectors config (vectors are copied); a
  ``--vectors FILE.json`` holds ``{"default": CONFIG, "values": {TARGET_NAME: CONFIG}}`` (or a
  bare CONFIG for all), where CONFIG is Qdrant's ``VectorParams`` JSON (copied when it equals the
  source's, refused otherwise) or ``{"model": ID}`` (re-embedded with that registered model, its
  size and distance).
* **validation** (``problems``): every reason to refuse, together: names that are not valid
  Qdrant collection names, reserved (``_switchyard``...), the source or logical name, taken, or
  shared by two keys; too many targets; key values that are not keyword/integer/bool;
  unknown models; a vectors config that cannot be copied.
* **targets** (``target_specs``): each with its vectors config, the source's payload indexes plus
  an index on every split field (``keyword`` for strings, ``integer``, ``bool``), and the model
  it is bound to.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from switchyard.proxy.dataplane.split_reads import MAX_FANOUT
from switchyard.proxy.dataplane.split_routing import MISSING, SplitLayout, SplitValue, field_value, key_id, scalar
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.migration.kinds import Kind, Layout, register

KIND = "split"
#: Qdrant refuses these characters in a collection name (and names over 255 bytes).
_FORBIDDEN = set('<>:"/\\|?*\0\x1f')
_FIELD = re.compile(r"\{([^{}]*)\}")
#: How many points a scroll-based discovery reads at most (refused beyond: name --values).
SCROLL_BOUND = 100_000


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed name template: literal parts and field names, alternating (``parts[0]`` literal)."""

    parts: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return self.parts[1::2]

    def render(self, values: Mapping[str, SplitValue]) -> str:
        out = []
        for i, part in enumerate(self.parts):
            out.append(part if i % 2 == 0 else _text(values[part]))
        return "".join(out)


def _text(value: SplitValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_template(template: str) -> Template:
    """Split ``template`` into literals and ``{field}`` names; refuses empty or unbalanced ones."""
    parts: list[str] = []
    literal, i = [], 0
    while i < len(template):
        ch = template[i]
        if template.startswith("{{", i) or template.startswith("}}", i):
            literal.append(ch)
            i += 2
        elif ch == "{":
            end = template.find("}", i)
            name = template[i + 1:end] if end > 0 else ""
            if end < 0 or not name.strip() or "{" in name:
                raise BadRequest(f"name template {template!r}: unbalanced or empty {{field}} at {i}")
            parts += ["".join(literal), name.strip()]
            literal, i = [], end + 1
        elif ch == "}":
            raise BadRequest(f"name template {template!r}: unbalanced '}}' at {i}")
        else:
            literal.append(ch)
            i += 1
    parts.append("".join(literal))
    if len(parts) < 3:
        raise BadRequest(f"name template {template!r} names no payload field: every target would share one name")
    return Template(tuple(parts))


def key_and_template(by: Sequence[str], template: str | None, logical: str) -> tuple[tuple[str, ...], Template]:
    """The split key's fields and the template (default ``<logical>_{f1}_{f2}``)."""
    fields = tuple(dict.fromkeys(f.strip() for f in by if f.strip()))
    if template is None:
        if not fields:
            raise BadRequest("a split needs --by FIELD or a name template naming payload fields")
        escaped = logical.replace("{", "{{").replace("}", "}}")
        template = escaped + "".join(f"_{{{f}}}" for f in fields)
    parsed = parse_template(template)
    if not fields:
        fields = tuple(dict.fromkeys(parsed.fields))
    stray = [f for f in parsed.fields if f not in fields]
    if stray:
        raise BadRequest(f"name template names {', '.join(stray)}, not in --by {', '.join(fields)}")
    return fields, parsed


def name_problem(name: str) -> str | None:
    """Why Qdrant would refuse ``name`` as a collection name, or Switchyard reserves it."""
    if not name or len(name.encode()) > 255:
        return f"`{name}`: a collection name has 1 to 255 bytes"
    bad = sorted(set(name) & _FORBIDDEN)
    if bad or any(ord(c) < 32 for c in name):
        return f"`{name}`: a collection name may not contain {''.join(bad) or 'control characters'!r}"
    if name.startswith("_switchyard"):
        return f"`{name}`: names starting with _switchyard are reserved for Switchyard's state"
    if name.strip() != name or name in (".", ".."):
        return f"`{name}`: a collection name may not be '.', '..' or start/end with spaces"
    return None


# -- value discovery ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Discovery:
    """The keys found (by :func:`key_id`, with their point counts), and points without a key."""

    keys: Mapping[str, int]
    missing: int = 0
    bad_type: int = 0
    scanned: int = 0
    method: str = "facet"
    complete: bool = True


def values_from_facets(levels: Mapping[str, Sequence[Mapping[str, Any]]], depth: int, total: int,
                       with_all_fields: int) -> Discovery:
    """Keys from facet answers: ``levels`` maps a key *prefix* (``key_id`` of the values of the
    first fields, ``"[]"`` for none) to the facet hits of the next field under that prefix.
    ``with_all_fields`` is the count of points that have every key field (the rest are missing)."""
    keys: dict[str, int] = {}

    def walk(prefix: list[Any]) -> None:
        for hit in levels.get(key_id(prefix), ()):
            values = [*prefix, hit["value"]]
            if len(values) == depth:
                keys[key_id(values)] = int(hit["count"])
            else:
                walk(values)

    walk([])
    return Discovery(keys, missing=max(0, total - with_all_fields), scanned=total, method="facet")


def values_from_scroll(payloads: Sequence[Any], fields: Sequence[str], complete: bool) -> Discovery:
    """Keys from scrolled payloads (only the key fields need be selected)."""
    keys: dict[str, int] = {}
    missing = bad = 0
    for payload in payloads:
        values = [field_value(payload, f) for f in fields]
        if any(v is MISSING for v in values):
            missing += 1
        elif not all(scalar(v) for v in values):
            bad += 1
        else:
            kid = key_id(values)
            keys[kid] = keys.get(kid, 0) + 1
    return Discovery(keys, missing, bad, len(payloads), "scroll", complete)


# -- vectors and targets -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One target to create: its key, name, vectors config (Qdrant JSON), model, indexes."""

    key: str
    name: str
    vectors: Any
    model: str | None  # re-embedded with this model; None: vectors copied from the source
    indexes: Mapping[str, str] = field(default_factory=dict)  # field -> schema type
    points: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "vectors": self.vectors, "model": self.model,
                "indexes": dict(self.indexes), "points": self.points}


def vectors_for(name: str, values: Sequence[SplitValue], config: Any) -> Any:
    """The vectors entry of ``--vectors`` for one target: by name, then (one-field keys) by
    value, then ``default``; a bare config (no ``default``/``values``) applies to all."""
    if not isinstance(config, Mapping) or not ({"default", "values"} & set(config)):
        return config
    per = config.get("values") or {}
    if name in per:
        return per[name]
    if len(values) == 1 and _text(values[0]) in per:
        return per[_text(values[0])]
    return config.get("default")


def index_type(value: SplitValue) -> str:
    if isinstance(value, bool):
        return "bool"
    return "integer" if isinstance(value, int) else "keyword"


def source_indexes(payload_schema: Mapping[str, Any]) -> dict[str, str]:
    """Field -> schema type of the source's ``payload_schema`` (as Qdrant reports it)."""
    out = {}
    for name, info in payload_schema.items():
        kind = info.get("data_type") if isinstance(info, Mapping) else None
        if isinstance(kind, str):
            out[str(name)] = kind
    return out


def with_model(source_vectors: Any, vector: str, size: int, distance: str) -> Any:
    """The source's vectors JSON with the bound vector's (``""``: unnamed) size and distance replaced."""
    if isinstance(source_vectors, Mapping) and "size" not in source_vectors:
        out = {k: dict(v) for k, v in source_vectors.items()}
        out[vector] = {**out.get(vector, {}), "size": size, "distance": distance}
        return out
    return {**dict(source_vectors or {}), "size": size, "distance": distance}


def target_specs(logical: str, fields: Sequence[str], template: Template, found: Discovery,
                 source_vectors: Any, payload_schema: Mapping[str, Any],
                 vectors_config: Any = None, known: Mapping[str, Any] | None = None,
                 vector: str = "") -> list[TargetSpec]:
    """Every target, ordered by name (validated separately by :func:`problems`). A target on a
    registered model (``known``: id -> ``ModelSpec``) gets the model's size and distance for the
    bound ``vector``; an unknown model keeps the source's config (and :func:`problems` refuses)."""
    base = source_indexes(payload_schema)
    specs = []
    for kid, count in found.keys.items():
        values = orjson.loads(kid)
        name = template.render(dict(zip(fields, values, strict=True)))
        chosen = vectors_for(name, values, vectors_config) if vectors_config is not None else None
        model = chosen.get("model") if isinstance(chosen, Mapping) and "model" in chosen else None
        vectors = source_vectors if chosen is None else chosen
        spec = (known or {}).get(str(model)) if model else None
        if model:
            vectors = with_model(source_vectors, vector, int(spec.dimensions), str(spec.distance)) \
                if spec is not None else source_vectors
        indexes = dict(base)
        for f, v in zip(fields, values, strict=True):
            indexes.setdefault(f, index_type(v))
        specs.append(TargetSpec(kid, name, vectors, str(model) if model else None, indexes, count))
    return sorted(specs, key=lambda s: s.name)


def problems(logical: str, source: str, specs: Sequence[TargetSpec], found: Discovery,
             taken: set[str], models: Mapping[str, Any], source_vectors: Any) -> list[str]:
    """Every reason to refuse the plan (empty: the plan may proceed)."""
    out: list[str] = []
    if not specs:
        out.append("no split values found in the source (an empty source cannot be split)")
    if found.missing:
        out.append(f"{found.missing} of {found.scanned} source points lack a split field: they would have no target")
    if found.bad_type:
        out.append(f"{found.bad_type} source points have a split field that is not a keyword, integer or bool")
    if not found.complete:
        out.append(f"value discovery by scroll stopped at {found.scanned} points (bound {SCROLL_BOUND}); "
                   "index the split fields so facets can be used")
    if len(specs) > MAX_FANOUT:
        out.append(f"{len(specs)} targets; a split has at most {MAX_FANOUT} (reads fan out to all)")
    seen: dict[str, str] = {}
    for s in specs:
        why = name_problem(s.name)
        if why:
            out.append(why)
        if s.name in seen:
            out.append(f"`{s.name}`: keys {seen[s.name]} and {s.key} render to one name")
        seen.setdefault(s.name, s.key)
        if s.name in (source, logical):
            out.append(f"`{s.name}`: a target may not be the source or the logical name")
        elif s.name in taken:
            out.append(f"`{s.name}`: a collection or alias of that name exists")
        out.extend(_vector_problem(s, models, source_vectors))
    return out


def _vector_problem(s: TargetSpec, models: Mapping[str, Any], source_vectors: Any) -> list[str]:
    if s.model is not None:
        return [] if s.model in models else [f"`{s.name}`: model {s.model!r} is not registered"]
    if s.vectors != source_vectors:
        return [f"`{s.name}`: vectors config {s.vectors} differs from the source's {source_vectors}; "
                "vectors can only be copied unchanged (name a model to re-embed)"]
    return []


def layout_of(fields: Sequence[str], specs: Sequence[TargetSpec]) -> SplitLayout:
    """The routing layout stored in the record: key -> target name."""
    return SplitLayout(tuple(fields), {s.key: s.name for s in specs})


def model_vectors(spec: Any) -> dict[str, Any]:
    """Qdrant ``VectorParams`` JSON of a registered model (``ModelSpec``): size and distance."""
    return {"size": int(spec.dimensions), "distance": str(spec.distance)}


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
