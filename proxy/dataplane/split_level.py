"""Levelling a whole split source into its targets, and verifying the targets per target.

* :func:`compare` (pure): every source point must be in exactly the target its key selects,
  with the source's payload (Switchyard's metadata fields aside); it reports points *missing*
  from their target, *extra* points (in a target, gone from the source), points in a *wrong
  target* (an error even when the right target has them too) and *stale* payloads.
* :func:`level_all` (I/O, in the proxy): a levelling pass over every source id, page by page,
  through the mirror's own leg (``split_mirror.sync``) and under the mirror's write order, so a
  client write of the same points in this proxy never interleaves with it. It fills targets
  planned over a non-empty source and repairs what :func:`compare` finds. (The backfill daemon
  does not run split migrations yet: docs/migrations.md, split.)
* :func:`verify` (I/O): scrolls the source and every target, runs :func:`compare`, and
  :func:`confirm` keeps the differences that last when read again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from switchyard.proxy.dataplane.digest import DIGEST_FIELD
from switchyard.proxy.dataplane.split_routing import SplitLayout
from switchyard.proxy.dataplane.writes import WriteIntent, point_key, strip_meta

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

    from switchyard.proxy.dataplane.mirror import Mirror, MirrorTarget
    from switchyard.proxy.wire import Headers


SAMPLE = 10


@dataclass
class SplitDiff:
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    wrong_target: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    unroutable: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.wrong_target or self.stale or self.unroutable)

    def counts(self) -> dict[str, int]:
        return {"checked": self.checked, "missing": len(self.missing), "extra": len(self.extra),
                "wrong_target": len(self.wrong_target), "stale": len(self.stale),
                "unroutable": len(self.unroutable)}


def _clean(payload: Mapping[str, Any]) -> dict[str, Any]:
    out = strip_meta(dict(payload))
    out.pop(DIGEST_FIELD, None)
    return out


def compare(layout: SplitLayout, source: Mapping[str, Mapping[str, Any]],
            targets: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> SplitDiff:
    """Differences between the source's points (id -> payload) and each target's (pure)."""
    d = SplitDiff(checked=len(source))
    for pid, payload in sorted(source.items()):
        home, _ = layout.target_of(payload)
        if home is None:
            d.unroutable.append(pid)
            continue
        held = targets.get(home, {}).get(pid)
        if held is None:
            d.missing.append(pid)
        elif _clean(held) != _clean(payload):
            d.stale.append(pid)
        if any(pid in pts for name, pts in targets.items() if name != home):
            d.wrong_target.append(pid)
    for name, pts in targets.items():
        d.extra += [f"{name}/{pid}" for pid in sorted(pts) if pid not in source]
    return d


async def level_all(mirror: Mirror, target: MirrorTarget, headers: Headers, page: int = 256,
                    max_pages: int = 100_000) -> int:
    """Level every source point into its target (module docstring); returns the points done."""
    import orjson

    from switchyard.proxy.dataplane import split_mirror
    from switchyard.proxy.dataplane.mirror import Prepared
    from switchyard.proxy.intercept.routes import rest_path
    from switchyard.proxy.wire import RestCall

    offset: Any = None
    done = 0
    for _ in range(max_pages):
        body: dict[str, Any] = {"limit": page, "with_payload": False, "with_vector": False}
        if offset is not None:
            body["offset"] = offset
        raw = await mirror._call(RestCall("POST", rest_path(target.primary, "/points/scroll"), "", headers,
                                          orjson.dumps(body)))
        result = orjson.loads(raw)["result"]
        ids = [p["id"] for p in result["points"]]
        if ids:
            async with mirror.order.hold(target.migration.id, ids, False):
                prep = Prepared(target, WriteIntent(ids=tuple(ids)), headers, ids=list(ids))
                await split_mirror.sync(mirror, prep)
            done += len(ids)
        offset = result.get("next_page_offset")
        if offset is None:
            break
    return done


async def _all_points(client: AsyncQdrantClient, name: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    offset: Any = None
    while True:
        points, offset = await client.scroll(name, limit=1000, offset=offset, with_payload=True, with_vectors=False)
        out.update({point_key(p.id): dict(p.payload or {}) for p in points})
        if offset is None:
            return out


async def _points(client: AsyncQdrantClient, name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k in range(0, len(ids), 256):
        got = await client.retrieve(name, [_point_id(i) for i in ids[k:k + 256]], with_payload=True,
                                    with_vectors=False)
        out.update({point_key(p.id): dict(p.payload or {}) for p in got})
    return out


def _point_id(pid: str) -> int | str:
    return int(pid) if pid.isdigit() else pid


def _ids(d: SplitDiff) -> list[str]:
    return list(dict.fromkeys([*d.missing, *d.unroutable, *d.stale, *d.wrong_target,
                               *(e.rsplit("/", 1)[1] for e in d.extra)]))


async def confirm(client: AsyncQdrantClient, source: str, layout: SplitLayout, d: SplitDiff,
                  looks: int = 2, pause: float = 0.2) -> SplitDiff:
    """Keep only the differences that last: each id is read again from the source and every
    target and compared, ``looks`` times ``pause`` seconds apart (a scan reads the source and
    the targets at different moments, so a write in flight between them shows as a difference
    that is gone a moment later; a mirrored write answers its client only after both legs)."""
    for look in range(looks):
        ids = _ids(d)
        if not ids:
            return d
        if look:
            await asyncio.sleep(pause)
        src = await _points(client, source, ids)
        targets = {name: await _points(client, name, ids) for name in layout.collections}
        d = dataclasses.replace(compare(layout, src, targets), checked=d.checked)
    return d


async def verify(client: AsyncQdrantClient, source: str, layout: SplitLayout) -> SplitDiff:
    """Scroll the source and every target, :func:`compare`, then :func:`confirm` what differs
    (bounded by collection sizes)."""
    src = await _all_points(client, source)
    targets = {name: await _all_points(client, name) for name in layout.collections}
    d = compare(layout, src, targets)
    return d if d.clean else await confirm(client, source, layout, d)
