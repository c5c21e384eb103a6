"""Write routing of a ``split`` migration: which target a point belongs to, and what to do there.

A split migration spreads one source collection over N targets, one per value of the *split
key*: the tuple of payload fields the plan names (``--by``, or the fields of the name template
``{source_title}_{type}``). The :class:`SplitLayout` (stored in the migration record) maps each
key to its target collection. Everything here is pure: no I/O, no clock.

Writes take two decisions:

* **admission** (:func:`admit_rest_write`, before the primary sees the write): a write that
  would leave a point with no target (the field missing, or a value the plan created no target
  for) is *refused* with the reason, before it reaches the source. This is the project's
  fail-closed rule: a write whose mirror cannot be placed is not applied at all. Upserts carry
  their payload, so every point is checked; ``overwrite_payload`` is checked on the payload it
  writes; ``set_payload`` only when it writes a split field (to an unknown value);
  ``delete_payload`` of a split field and ``clear_payload`` always remove the key, so they are
  refused. Writes that do not touch the split fields (vectors, deletes, other payload keys)
  are admitted.
* **levelling** (:func:`level`, after a primary that applied): the mirror re-reads the touched
  ids on the source (as every migration's mirror does) and hands their payloads here. A point
  with key K is upserted into ``target(K)`` and its id deleted from every other target, so a
  point whose field changed *moves* (the deletion from the old target is part of the same
  levelling). An id gone from the source is deleted from every target. A point that exists but
  has no routable key (possible only when a client bypassed the proxy, or a filter write the
  admission could not see) is deleted from every target and reported as *unroutable* with its
  reason: the mirror puts it in the repair log, and verify refuses until it is fixed.

Deletes by filter need no special case: the mirror resolves filters to ids on the primary, and
an id is deleted from every target (cheap: a delete of a missing id is a no-op in Qdrant).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchyard.proxy.errors import BadRequest
from switchyard.proxy.dataplane.writes import point_key

#: The scalar types a split value may have: those Qdrant's facets return (keyword, integer, bool).
SplitValue = str | int | bool


class _Missing:
    """The sentinel for a payload path that is absent (``None`` is a value: JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def field_value(payload: Any, path: str) -> Any:
    """The value at a dotted payload ``path`` (``meta.source``), or :data:`MISSING`.

    Qdrant's key syntax: ``a.b`` descends into objects. Arrays (``a[]``) are not a valid split
    key (one point would belong to several targets), so an array found on the way is MISSING."""
    node = payload
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def key_id(values: Sequence[SplitValue]) -> str:
    """The canonical string of a split key: JSON keeps ``true``, ``1`` and ``"1"`` apart."""
    return orjson.dumps(list(values)).decode()


def scalar(value: Any) -> bool:
    """True for a value a point can be split by (a keyword, an integer or a bool)."""
    return isinstance(value, (str, int))  # bool is an int


@dataclass(frozen=True, slots=True)
class SplitLayout:
    """The split key's fields and the target collection of each key (by :func:`key_id`)."""

    fields: tuple[str, ...]
    targets: Mapping[str, str] = field(default_factory=dict)  # key_id -> collection

    def __post_init__(self) -> None:
        if not self.fields:
            raise BadRequest("a split needs at least one field (--by or the name template)")
        names = list(self.targets.values())
        if len(set(names)) != len(names):
            raise BadRequest("two split values map to one target collection")

    @property
    def collections(self) -> tuple[str, ...]:
        """Every target, in a fixed order (sorted by name): fan-outs and merges use it."""
        return tuple(sorted(self.targets.values()))

    def key_of(self, payload: Any) -> tuple[tuple[SplitValue, ...] | None, str]:
        """The point's split key, or ``None`` and the reason it has none."""
        values: list[SplitValue] = []
        for name in self.fields:
            value = field_value(payload, name)
            if value is MISSING:
                return None, f"payload field `{name}` is missing"
            if not scalar(value):
                return None, f"payload field `{name}` is {type(value).__name__}, not a keyword, integer or bool"
            values.append(value)
        return tuple(values), ""

    def target_of(self, payload: Any) -> tuple[str | None, str]:
        """The collection a point with this payload belongs to, or ``None`` and why not."""
        key, why = self.key_of(payload)
        if key is None:
            return None, why
        name = self.targets.get(key_id(key))
        if name is None:
            return None, f"split value {key_id(key)} has no target (the plan created {len(self.targets)})"
        return name, ""

    def to_dict(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "targets": dict(sorted(self.targets.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitLayout:
        return cls(tuple(str(f) for f in data.get("fields") or ()),
                   {str(k): str(v) for k, v in dict(data.get("targets") or {}).items()})


# -- admission (before the primary) ------------------------------------------------------------

def admit_rest_write(layout: SplitLayout, kind: str, op: Any) -> str | None:
    """Why a REST point write must be refused (``None``: admit). ``kind`` is the operation name
    (``upsert``, ``set_payload``, ... as in ``/points/batch``), ``op`` its body."""
    if not isinstance(op, Mapping):
        return None
    if kind == "upsert":
        return _admit_upsert(layout, op)
    if kind == "overwrite_payload":
        return _unroutable("overwrite_payload", layout, op.get("payload") or {})
    if kind == "set_payload":
        payload = op.get("payload") or {}
        if op.get("key"):  # set under a nested key: refuse when it can reach a split field
            return _nested_set(layout, str(op["key"]), payload)
        if not isinstance(payload, Mapping):
            return None
        return _prefix_touch(layout, payload) or _unknown_value("set_payload", layout, payload)
    if kind == "delete_payload":
        keys = [str(k) for k in op.get("keys") or ()]
        hit = [f for f in layout.fields if any(f == k or f.startswith(k + ".") for k in keys)]
        return (f"delete_payload removes split field `{hit[0]}`: the points would have no target in "
                f"this split migration") if hit else None
    if kind == "clear_payload":
        return "clear_payload removes the split fields: the points would have no target in this split migration"
    return None


def admit_rest_batch(layout: SplitLayout, operations: Iterable[Any]) -> str | None:
    """The first refusal among a ``/points/batch`` body's operations (``None``: admit all)."""
    for item in operations:
        if isinstance(item, Mapping) and len(item) == 1:
            (kind, op), = item.items()
            why = admit_rest_write(layout, str(kind), op)
            if why:
                return why
    return None


def _admit_upsert(layout: SplitLayout, op: Mapping[str, Any]) -> str | None:
    if isinstance(op.get("points"), list):
        payloads = [(p.get("id"), p.get("payload") or {}) for p in op["points"] if isinstance(p, Mapping)]
    elif isinstance(op.get("batch"), Mapping):
        batch = op["batch"]
        ids, loads = batch.get("ids") or [], batch.get("payloads") or []
        payloads = [(pid, (loads[i] if i < len(loads) else None) or {}) for i, pid in enumerate(ids)]
    else:
        return None
    for pid, payload in payloads:
        name, why = layout.target_of(payload)
        if name is None:
            return f"point {pid!r} cannot be routed by the split migration: {why}"
    return None


def _unroutable(kind: str, layout: SplitLayout, payload: Any) -> str | None:
    name, why = layout.target_of(payload)
    return None if name else f"{kind} would leave the points without a target: {why}"


def _unknown_value(kind: str, layout: SplitLayout, payload: Mapping[str, Any]) -> str | None:
    """``set_payload`` writing some split fields: refuse a value of a wrong type; the other
    fields come from each point, so the full key is checked after the write (levelling)."""
    for name in layout.fields:
        value = field_value(payload, name)
        if value is not MISSING and not scalar(value):
            return f"{kind} sets split field `{name}` to {type(value).__name__}: the points would have no target"
    known = _values_per_field(layout)
    for i, name in enumerate(layout.fields):
        value = field_value(payload, name)
        if value is not MISSING and key_id([value]) not in known[i]:
            return f"{kind} sets split field `{name}` to {key_id([value])}, a value no target was created for"
    return None


def _prefix_touch(layout: SplitLayout, payload: Any) -> str | None:
    """A top-level key that is a prefix of a nested split field replaces the object under it."""
    if not isinstance(payload, Mapping):
        return None
    for name in layout.fields:
        head = name.split(".")[0]
        if "." in name and head in payload and field_value(payload, name) is MISSING:
            return f"set_payload replaces `{head}` without split field `{name}`: the points would have no target"
    return None


def _nested_set(layout: SplitLayout, key: str, payload: Any) -> str | None:
    wrapped: dict[str, Any] = {}
    node = wrapped
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = payload
    touches = any(f == key or f.startswith(key + ".") or key.startswith(f + ".") for f in layout.fields)
    return _unknown_value("set_payload", layout, wrapped) if touches else None


def _values_per_field(layout: SplitLayout) -> list[set[str]]:
    known: list[set[str]] = [set() for _ in layout.fields]
    for kid in layout.targets:
        for i, value in enumerate(orjson.loads(kid)):
            known[i].add(key_id([value]))
    return known


# -- levelling (after the primary) -------------------------------------------------------------

@dataclass
class Leg:
    """What one target gets: points to upsert (the source's point as it now is) and ids to delete."""

    upserts: list[Any] = field(default_factory=list)
    deletes: list[Any] = field(default_factory=list)


@dataclass
class Levelling:
    """Per target collection its :class:`Leg`, and the unroutable ids with their reasons."""

    legs: dict[str, Leg]
    unroutable: dict[str, str] = field(default_factory=dict)  # id as touched -> reason


def level(layout: SplitLayout, touched: Sequence[Any], now: Mapping[str, Any]) -> Levelling:
    """The writes that bring every target to the source's state for the ``touched`` ids.

    ``now`` maps a touched id's canonical string (``writes.point_key``, as the mirror keys ids) to the source's point as it now
    is (a dict with ``payload``), absent when the point is gone. Each present, routable point
    is upserted into its target and deleted from every other (so a changed field moves it);
    every other id is deleted everywhere, and an unroutable one is also reported."""
    legs = {name: Leg() for name in layout.collections}
    out = Levelling(legs)
    for pid in touched:
        point = now.get(point_key(pid))
        home: str | None = None
        if point is not None:
            home, why = layout.target_of(point.get("payload") or {})
            if home is None:
                out.unroutable[str(pid)] = why  # noqa: the id as the client sent it
        for name, leg in legs.items():
            if name == home:
                leg.upserts.append(point)
            else:
                leg.deletes.append(pid)
    return out
