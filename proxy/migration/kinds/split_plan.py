"""The ``split`` kind's plan: one source collection into one target per value of a payload key.

Pure functions over facts the service gathers (the I/O that gathers them: ``split_io``; the kind
that calls both and stores the result in the record: ``split``). Kept apart from the kind so the
decisions can be read and tested without the ``Kind`` interface or any I/O:

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

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchyard.proxy.dataplane.split_reads import MAX_FANOUT
from switchyard.proxy.dataplane.split_routing import MISSING, SplitLayout, SplitValue, field_value, key_id, scalar
from switchyard.proxy.errors import BadRequest

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
