"""Pure planner: recorded operations -> steps, each with the exact Qdrant (or admin API) calls.

A :class:`Step` is the unit the executor journals: it has a stable id (``<revision>:<index>:
<operation>``) so a resumed upgrade knows what ran, a mode (``direct``: one or more plain Qdrant
calls; ``migration``: an online migration through the admin API, driven through its phases;
``python``: a ``run_python`` function; ``snapshot``: a collection snapshot before data is
deleted), and ``deletes_data``. The planner inserts the snapshot steps: one per affected
collection at the start of a revision that deletes data (``drop_named_vector``,
``drop_collection``), or of every revision when asked (``--snapshot``). Nothing here does I/O;
``--plan-json`` prints these steps as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from switchyard.proxy.errors import BadRequest
from switchyard.proxy.schema.operations import Operation

DELETING = frozenset({"drop_named_vector", "drop_collection"})
#: migration kinds by operation (issue 12's kinds: named-vector, split; change_model is the
#: original embedding-model migration)
MIGRATION_KIND = {"change_model": "reembed", "add_named_vector": "named-vector",
                  "split_collection": "split"}


@dataclass(frozen=True)
class Call:
    """One HTTP call: method, path (query string included) and JSON body."""

    method: str
    path: str
    body: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "body": self.body}


@dataclass(frozen=True)
class Step:
    id: str
    revision: str
    op: str
    collection: str
    mode: str
    calls: tuple[Call, ...] = ()
    deletes_data: bool = False
    args: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "revision": self.revision, "op": self.op,
                "collection": self.collection, "mode": self.mode,
                "deletes_data": self.deletes_data, "calls": [c.to_json() for c in self.calls]}


def _c(name: str) -> str:
    return "/collections/" + quote(name, safe="")


def calls_for(op: Operation) -> tuple[str, tuple[Call, ...]]:
    """(mode, calls) of one operation."""
    a, c = dict(op.args), op.collection
    if op.name == "create_collection":
        body = {"vectors": a["vectors"]}
        for key in ("sparse_vectors", "hnsw_config", "quantization_config", "optimizers_config"):
            if key in a:
                body[key] = a[key]
        return "direct", (Call("PUT", _c(c), body),)
    if op.name == "drop_collection":
        return "direct", (Call("DELETE", _c(c)),)
    if op.name == "add_named_vector" and "model" not in a:
        cfg = ({"sparse": {}} if a.get("sparse")
               else {"dense": {"size": a["size"], "distance": a["distance"]}})
        return "direct", (Call("PUT", f"{_c(c)}/vectors/{quote(a['name'], safe='')}?wait=true", cfg),)
    if op.name == "drop_named_vector":
        return "direct", (Call("DELETE", f"{_c(c)}/vectors/{quote(a['name'], safe='')}?wait=true"),)
    if op.name == "change_vectors":
        return "direct", (Call("PATCH", _c(c), {"vectors": a["vectors"]}),)
    if op.name == "change_hnsw":
        return "direct", (Call("PATCH", _c(c), {"hnsw_config": a["hnsw_config"]}),)
    if op.name == "change_quantization":
        return "direct", (Call("PATCH", _c(c), {"quantization_config": a["quantization_config"]}),)
    if op.name == "create_index":
        return "direct", (Call("PUT", f"{_c(c)}/index?wait=true",
                               {"field_name": a["field_name"], "field_schema": a["field_schema"]}),)
    if op.name == "drop_index":
        return "direct", (Call("DELETE", f"{_c(c)}/index/{quote(a['field_name'], safe='')}?wait=true"),)
    if op.name == "rename_via_alias":
        actions = [{"delete_alias": {"alias_name": a["alias"]}},
                   {"create_alias": {"alias_name": a["alias"], "collection_name": c}}]
        return "direct", (Call("POST", "/collections/aliases", {"actions": actions}),)
    if op.name == "run_python":
        return "python", ()
    if op.name == "bind_model":
        return "bind", ()  # a state-store record (switchyard.proxy.registry.bind), no Qdrant call
    if op.name in MIGRATION_KIND:
        return "migration", (Call("POST", "/switchyard/v1/migrations", migration_body(op)),)
    raise BadRequest(f"unknown operation {op.name!r}")


def migration_body(op: Operation) -> dict[str, Any]:
    """The admin API plan request of a migration operation."""
    a = dict(op.args)
    kind = MIGRATION_KIND[op.name]
    body: dict[str, Any] = {"logical": op.collection}
    if op.name == "add_named_vector":
        body.update({"to_model": a["model"], "kind": kind, "options": {"vector": a["name"]}})
        if "text_field" in a:
            body["text_field"] = a["text_field"]
    elif op.name == "split_collection":
        plan = {k: v for k, v in a.items() if k in ("to_model", "text_field", "doc_key", "throttle")}
        body.update({**plan, "kind": kind,
                     "options": {k: v for k, v in a.items() if k not in plan}})
    else:
        body.update({k: v for k, v in a.items()})
    return body


def plan_revision(revision: str, ops: Sequence[Operation], snapshot: bool = False) -> list[Step]:
    """The steps of one revision: snapshots first (of each collection a deleting operation
    touches, or of every touched collection when ``snapshot``), then each operation."""
    steps: list[Step] = []
    deleting = sorted({o.collection for o in ops if o.name in DELETING})
    wanted = sorted({o.collection for o in ops if o.collection != "-"
                     and o.name != "create_collection"}) if snapshot else deleting
    for i, coll in enumerate(wanted):
        steps.append(Step(f"{revision}:s{i}:snapshot", revision, "snapshot", coll, "snapshot",
                          (Call("POST", f"{_c(coll)}/snapshots?wait=true"),)))
    for i, op in enumerate(ops):
        mode, calls = calls_for(op)
        args = {k: v for k, v in op.args.items()}
        steps.append(Step(f"{revision}:{i:02d}:{op.name}", revision, op.name, op.collection,
                          mode, calls, op.name in DELETING, args))
    return steps
