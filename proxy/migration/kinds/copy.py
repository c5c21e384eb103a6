"""The ``copy`` kind: a schema change Qdrant cannot apply in place, done as a copy.

The target is the source's layout with the plan's changes, given as Qdrant's own JSON
(options, all optional):

- ``set``: ``{"hnsw_config.m": 32, "vectors.dense.on_disk": true, ...}`` -- a dotted path into
  the create-collection body (first part one of :data:`~switchyard.proxy.migration.layouts.SETTINGS`)
  and the JSON value it takes;
- ``vectors_config``: the whole ``vectors`` object (e.g. an unnamed vector becomes
  ``{"dense": {"size": 384, "distance": "Cosine", "datatype": "float16"}}``);
- ``quantization``: the ``quantization_config`` object (``null`` removes it);
- ``indexes``: ``{field: schema}`` payload indexes to add; ``drop_indexes``: fields whose index
  the target does not get;
- ``vector_map``: ``{source name: target name or null}`` ("" is the unnamed vector), needed
  only when the renaming is ambiguous (one source and one target vector map by themselves);
- ``clients_follow_layout``: ``true`` acknowledges that clients will send the target's vector
  names from ``switch-reads`` / ``switch-writes`` on (below); without it, a plan that renames or
  drops a vector is refused.

The model does not change (vectors are carried over, ``copy_vectors`` is set so digests cover
the source vectors). Each point's vectors are converted by :func:`convert`: renamed per the
map, dropped when mapped to null, rounded and clipped into 0..255 for ``uint8`` targets (Qdrant
converts float16 itself). Writes are mirrored as in every kind, with the same conversion (and
the reverse one after ``switch-writes``); ``complete`` swaps the alias; cleanup drops the source.
What plan derives (the full map, the uint8 names) is kept under ``options["derived"]``.

A client keeps its request layout: when the named/unnamed layout changes, requests that name
vectors must follow the target's layout from ``switch-reads`` (reads) and ``switch-writes``
(writes) on; the proxy does not rewrite them. Because clients that do not change would then get
Qdrant's errors (``Not existing vector name``, or a missing vector name), the plan fails closed:
a rename or a dropped vector is refused unless ``clients_follow_layout`` is true, and the
refusal names each change.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import ValidationError

from switchyard.proxy.migration.kinds import Kind, Layout, register

if TYPE_CHECKING:
    from switchyard.proxy.migration.planner import PlanFacts, PlanRequest
    from switchyard.proxy.migration.record import Migration
    from switchyard.proxy.state.records import Binding

OPTIONS = ("set", "vectors_config", "quantization", "indexes", "drop_indexes", "vector_map",
           "clients_follow_layout")


class CopyKind(Kind):
    name: ClassVar[str] = "copy"
    embeds: ClassVar[bool] = False

    def model_b(self, req: PlanRequest, binding: Binding | None) -> str | None:
        """The source's model: a copy carries vectors over (``--to-model``, if given, must match)."""
        return req.to_model or (binding.model_id if binding is not None else None)

    def default_target(self, source: str, model_b: str) -> str:
        return f"{source}__copy"

    def option_reasons(self, options: Mapping[str, Any]) -> list[str]:
        return option_reasons(options)

    def plan_reasons(self, f: PlanFacts) -> list[str]:
        out = []
        if f.model_a is not None and f.model_b is not None and f.model_a.id != f.model_b.id:
            out.append(f"kind copy keeps the model (`{f.model_a.id}`); to move to `{f.model_b.id}` "
                       f"use --kind reembed")
        if option_reasons(f.request.options) or f.source.info is None:
            return out
        from switchyard.proxy.migration import layouts

        lay = self.layout(f)
        target = lay.targets[f.target]
        out += layouts.settings_reasons(target)
        vmap, why = vector_map(lay.source, target, f.request.options.get("vector_map"))
        out += why
        bound = f.binding.vector if f.binding is not None else ""
        if not why and vmap.get(bound) is None:
            out.append(f"the bound vector `{bound}` would not be in the target (vector_map drops it)")
        if not why and f.request.options.get("clients_follow_layout") is not True:
            out += layout_change_reasons(vmap)
        return out

    def record_fields(self, f: PlanFacts) -> dict[str, Any]:
        lay = self.layout(f)
        target = lay.targets[f.target]
        vmap, _ = vector_map(lay.source, target, f.request.options.get("vector_map"))
        derived = {"vector_map": vmap, "uint8": uint8_names(target)}
        return {"copy_vectors": True, "options": {**dict(f.request.options), "derived": derived}}

    def layout(self, f: PlanFacts) -> Layout:
        from switchyard.proxy.migration import layouts

        source = layouts.settings_of(f.source.info)
        target = target_settings(source, f.request.options)
        if source and f.request.doc_key not in target.get("payload_indexes", {}):
            target["payload_indexes"] = {**target.get("payload_indexes", {}),
                                         f.request.doc_key: "(keyword or integer, from a source value)"}
        vmap, _ = vector_map(source, target, f.request.options.get("vector_map"))
        renames = tuple(f"vector `{s}` -> `{t}`" if t is not None else f"vector `{s}` dropped"
                        for s, t in sorted(vmap.items()) if t != s)
        return Layout(source, {f.target: target}, renames + layouts.diff(source, target))

    def target_vector_name_for(self, f: PlanFacts) -> str:
        from switchyard.proxy.migration import layouts

        source = layouts.settings_of(f.source.info)
        vmap, _ = vector_map(source, target_settings(source, f.request.options),
                             f.request.options.get("vector_map"))
        bound = f.binding.vector if f.binding is not None else ""
        return vmap.get(bound) or ""

    def target_vector_name(self, m: Migration) -> str:
        return str(_derived(m)["vector_map"].get(m.vector) or "")

    def transform(self, m: Migration, vector: Any, embedded: Any) -> Any:
        d = _derived(m)
        return convert(vector, d["vector_map"], d["uint8"])

    def mirror_vector(self, m: Migration, vector: Any, to_target: bool) -> Any:
        d = _derived(m)
        if to_target:
            return convert(vector, d["vector_map"], d["uint8"])
        back = {t: s for s, t in d["vector_map"].items() if t is not None}
        return convert(vector, back, ())


def _derived(m: Migration) -> Mapping[str, Any]:
    d = m.options.get("derived") or {}
    return {"vector_map": dict(d.get("vector_map") or {}), "uint8": tuple(d.get("uint8") or ())}


def layout_change_reasons(vmap: Mapping[str, str | None]) -> list[str]:
    """The plan's refusal when vector names change and clients have not been said to follow
    (pure; module docstring): one reason naming every change and what to do."""
    changes = [f"`{s}` -> `{t}`" if t is not None else f"`{s}` dropped"
               for s, t in sorted(vmap.items()) if t != s]
    if not changes:
        return []
    return [f"the target renames or drops vectors ({', '.join(changes)}; `` is the unnamed "
            "vector) and the proxy does not rewrite requests: clients that name vectors or send "
            "unnamed ones must use the target's names from switch-reads (reads) and switch-writes "
            "(writes) on, or Qdrant refuses their requests. Pass --option "
            "clients_follow_layout=true once they will, or keep the vector names"]


def option_reasons(options: Mapping[str, Any]) -> list[str]:
    """Every reason the copy options refuse the plan (pure; types and names, not the layout)."""
    from switchyard.proxy.migration import layouts

    out = [f"unknown copy option `{k}` (one of {', '.join(OPTIONS)})" for k in options if k not in OPTIONS]
    sets = options.get("set") or {}
    if not isinstance(sets, Mapping):
        out.append(f"`set` must map dotted paths to JSON values, got {sets!r}")
        sets = {}
    for path in sets:
        if str(path).split(".", 1)[0] not in layouts.SETTINGS:
            out.append(f"--set `{path}`: the first part must be one of {', '.join(layouts.SETTINGS)}")
    for name in ("vectors_config", "indexes", "vector_map"):
        if name in options and not isinstance(options[name], Mapping):
            out.append(f"`{name}` must be a JSON object, got {options[name]!r}")
    q = options.get("quantization")
    if q is not None and not isinstance(q, Mapping):
        out.append(f"`quantization` must be a JSON object or null, got {q!r}")
    indexes = options.get("indexes") or {}
    for field, schema in (indexes.items() if isinstance(indexes, Mapping) else ()):
        try:
            layouts.index_schema(schema)
        except (ValueError, ValidationError):
            out.append(f"--index `{field}`: {schema!r} is not a Qdrant payload index schema")
    drops = options.get("drop_indexes") or []
    if not isinstance(drops, list) or not all(isinstance(x, str) for x in drops):
        out.append(f"`drop_indexes` must be a list of field names, got {drops!r}")
    follow = options.get("clients_follow_layout")
    if follow is not None and not isinstance(follow, bool):
        out.append(f"`clients_follow_layout` must be true or false, got {follow!r}")
    return out


def target_settings(source: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The source's settings with the options applied (pure; invalid options are skipped,
    :func:`option_reasons` names them)."""
    out = _copy.deepcopy(dict(source))
    if isinstance(options.get("vectors_config"), Mapping):
        out["vectors"] = _copy.deepcopy(dict(options["vectors_config"]))
    if "quantization" in options:
        out["quantization_config"] = _copy.deepcopy(options["quantization"])
    sets = options.get("set")
    for path, value in (sets.items() if isinstance(sets, Mapping) else ()):
        _put(out, str(path).split("."), value)
    indexes = dict(out.get("payload_indexes") or {})
    drops = options.get("drop_indexes")
    for name in drops if isinstance(drops, list) else ():
        indexes.pop(name, None)
    if isinstance(options.get("indexes"), Mapping):
        indexes.update(options["indexes"])
    out["payload_indexes"] = indexes
    return out


def _put(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[path[-1]] = value


def vector_map(source: Mapping[str, Any], target: Mapping[str, Any],
               given: Any) -> tuple[dict[str, str | None], list[str]]:
    """Source dense vector name -> target name (None: dropped), and the reasons it cannot be
    carried over (pure). Same names map to themselves; one vector on each side maps to each
    other; ``given`` overrides."""
    from switchyard.proxy.migration import layouts

    src, tgt = layouts.dense_vectors(source.get("vectors")), layouts.dense_vectors(target.get("vectors"))
    out: dict[str, str | None] = {}
    for s in src:
        out[s] = s if s in tgt else (next(iter(tgt)) if len(src) == 1 and len(tgt) == 1 else None)
    if isinstance(given, Mapping):
        out.update({str(k): (None if v is None else str(v)) for k, v in given.items()})
    reasons = [f"vector_map names source vector `{s}` that the source does not have" for s in out if s not in src]
    for t, params in tgt.items():
        feeders = [s for s, to in out.items() if to == t and s in src]
        label = f"`{t}`" if t else "(unnamed)"
        if len(feeders) != 1:
            reasons.append(f"target vector {label} needs exactly one source vector mapped to it "
                           f"(got {len(feeders)}); pass vector_map")
            continue
        a, b = src[feeders[0]], params
        if a.get("size") != b.get("size"):
            reasons.append(f"target vector {label} has size {b.get('size')} but source vector "
                           f"`{feeders[0]}` has {a.get('size')}: a copy carries vectors over; "
                           f"changing the size needs --kind reembed")
        if bool(a.get("multivector_config")) != bool(b.get("multivector_config")):
            reasons.append(f"target vector {label} and source vector `{feeders[0]}` differ in "
                           f"multivector configuration; vectors cannot be carried over")
    for s, dest in out.items():
        if dest is not None and dest not in tgt and s in src:
            reasons.append(f"vector_map maps `{s}` to `{dest}`, which the target does not have")
    return out, reasons


def uint8_names(target: Mapping[str, Any]) -> list[str]:
    from switchyard.proxy.migration import layouts

    return sorted(n for n, p in layouts.dense_vectors(target.get("vectors")).items()
                  if str(p.get("datatype") or "").lower() == "uint8")


def convert(vector: Any, vmap: Mapping[str, str | None], uint8: Any) -> Any:
    """One point's vector(s) in the other layout (pure): names renamed per ``vmap`` (names it
    does not mention, e.g. sparse vectors, are kept; a name mapped to None is dropped), values
    of ``uint8`` targets rounded and clipped to 0..255; a lone unnamed result is a plain list."""
    if vector is None:
        return None
    named = dict(vector) if isinstance(vector, Mapping) else {"": vector}
    out: dict[str, Any] = {}
    for src, value in named.items():
        tgt = vmap[src] if src in vmap else src
        if tgt is None:
            continue
        if tgt in uint8 and isinstance(value, (list, tuple)):
            value = [min(255, max(0, round(float(x)))) for x in value]
        elif tgt in uint8 and isinstance(value, np.ndarray):  # a re-read over gRPC (reread_grpc)
            value = np.clip(np.rint(value), 0, 255).astype(np.uint8)  # rint: half to even, as round()
        out[tgt] = value
    return out[""] if list(out) == [""] else out


register(CopyKind())
