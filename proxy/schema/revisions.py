"""Revision files: loading a folder, validating the chain, writing a new file from a template.

A revision file is a Python module with ``revision`` (its id), ``parent`` (the id it follows,
``None`` for the first), ``message``, and ``upgrade(op)`` / ``downgrade(op)`` functions written
against :class:`switchyard.proxy.schema.operations.Operations`. The revisions of a folder must
form one chain: exactly one root, no id used twice, no parent that is missing, no two
revisions with the same parent (a branch) and no cycle; anything else is refused with every
reason (:func:`chain`, pure), because an order that is not unique cannot be applied safely.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchyard.proxy.errors import BadRequest, ConfigError

DEFAULT_FOLDER = "qdrant_migrations"


@dataclass(frozen=True)
class Revision:
    id: str
    parent: str | None
    message: str
    upgrade: Callable[[Any], Any]
    downgrade: Callable[[Any], Any]
    path: str = ""


def chain(revisions: Iterable[Revision]) -> list[Revision]:
    """The revisions in order from the root to the head, or :class:`ConfigError` naming every
    problem (duplicate ids, missing parents, branches, cycles, several or no roots)."""
    revs = list(revisions)
    problems: list[str] = []
    by_id: dict[str, Revision] = {}
    for r in revs:
        if r.id in by_id:
            problems.append(f"revision {r.id!r} is defined twice ({by_id[r.id].path}, {r.path})")
        by_id[r.id] = r
    children: dict[str | None, list[str]] = {}
    for r in by_id.values():
        children.setdefault(r.parent, []).append(r.id)
        if r.parent is not None and r.parent not in by_id:
            problems.append(f"revision {r.id!r} names parent {r.parent!r}, which does not exist")
    for parent, kids in sorted(children.items(), key=lambda kv: str(kv[0])):
        if len(kids) > 1:
            where = "the root" if parent is None else f"parent {parent!r}"
            problems.append(f"branch: revisions {', '.join(sorted(kids))} all follow {where}; "
                            "revisions must form one chain (re-parent all but one)")
    if by_id and None not in children and not problems:
        problems.append("no root revision (parent = None): the chain is a cycle")
    if problems:
        raise ConfigError("revision chain refused: " + "; ".join(problems))
    ordered: list[Revision] = []
    cur = children.get(None, [None])[0] if by_id else None
    while cur is not None:
        ordered.append(by_id[cur])
        nxt = children.get(cur, [])
        cur = nxt[0] if nxt else None
    if len(ordered) != len(by_id):
        left = sorted(set(by_id) - {r.id for r in ordered})
        raise ConfigError(f"revision chain refused: cycle among revisions {', '.join(left)}")
    return ordered


def load_file(path: Path) -> Revision:
    """Import one revision file (under a private module name) and read its attributes."""
    spec = importlib.util.spec_from_file_location(f"_switchyard_rev_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load revision file {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the file is user code: any error is a bad revision
        raise ConfigError(f"revision file {path} failed to import: {exc!r}") from exc
    missing = [n for n in ("revision", "parent", "upgrade", "downgrade") if not hasattr(module, n)]
    if missing:
        raise ConfigError(f"revision file {path} lacks {', '.join(missing)}")
    return Revision(str(module.revision), None if module.parent is None else str(module.parent),
                    str(getattr(module, "message", "")), module.upgrade, module.downgrade,
                    str(path))


def load_folder(folder: str | Path) -> list[Revision]:
    """Every ``*.py`` revision in ``folder`` (not ``_*.py``), as a validated chain."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"revisions folder {root} does not exist (`switchyard schema revision "
                          f"-m MESSAGE --revisions {root}` creates it)")
    return chain(load_file(p) for p in sorted(root.glob("*.py")) if not p.name.startswith("_"))


def between(ordered: Sequence[Revision], current: str | None, target: str | None) -> list[Revision]:
    """The revisions after ``current`` up to and including ``target`` (``None`` = before the
    first; ``"head"`` = the last); empty when already there. Refuses unknown ids and a target
    behind ``current`` (that is a downgrade)."""
    ids = [r.id for r in ordered]
    target = resolve(ordered, target)
    for name in (current, target):
        if name is not None and name not in ids:
            raise BadRequest(f"unknown revision {name!r} (known: {', '.join(ids) or 'none'})")
    start = ids.index(current) + 1 if current is not None else 0
    end = ids.index(target) + 1 if target is not None else 0
    if end < start:
        raise BadRequest(f"{target} is behind the current revision {current}: use downgrade")
    return list(ordered[start:end])


def resolve(ordered: Sequence[Revision], name: str | None) -> str | None:
    """``head`` -> the last id, ``base`` -> ``None``, else ``name``."""
    if name == "head":
        return ordered[-1].id if ordered else None
    if name == "base":
        return None
    return name


TEMPLATE = '''"""{message}"""

revision = "{rid}"
parent = {parent}
message = "{message}"


def upgrade(op):
    pass


def downgrade(op):
    pass
'''


def new_file(folder: str | Path, message: str, now: float | None = None) -> Path:
    """Write a new revision file whose parent is the current head; returns its path."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    ordered = load_folder(root)
    head = ordered[-1].id if ordered else None
    rid = f"{len(ordered) + 1:04d}_{secrets.token_hex(3)}"
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40] or "revision"
    path = root / f"{rid}_{slug}.py"
    text = TEMPLATE.format(message=message.replace('"', "'"), rid=rid,
                           parent=repr(head), stamp=now or time.time())
    path.write_text(text)
    return path
