"""``switchyard schema ...``: versioned collection schemas (docs/schema.md).

``revision -m MESSAGE`` writes a revision file; ``status`` shows the revision, pending
revisions, migrations in flight, drift (as a diff) and snapshots; ``upgrade [REV|head]`` and
``downgrade REV`` apply revisions online (``--dry-run`` prints the plan, ``--plan-json`` the
exact calls; both change nothing); ``stamp [REV]`` accepts drift; ``restore REV`` recovers the
collections from the snapshots taken before REV; ``prune-snapshots`` removes old snapshots.
``--url`` (env ``SWITCHYARD_URL``) is a Switchyard proxy (or Qdrant itself, for revisions
without migrations); ``--revisions`` (env ``SWITCHYARD_SCHEMA_REVISIONS``) the folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from switchyard.proxy.schema.revisions import DEFAULT_FOLDER, load_folder, new_file
from switchyard.proxy.secret_sources import add_secret_argument

if TYPE_CHECKING:  # the runner and its client load when a command runs (proxy/command_loading.py)
    from switchyard.proxy.schema import api


def register(sub: Any) -> None:
    p = sub.add_parser("schema", help="versioned collection schemas: revisions, upgrade, downgrade")
    ssub = p.add_subparsers(dest="schema_command", metavar="ACTION", required=True)
    r = _cmd(ssub, "revision", "write a new revision file (its parent: the current head)", _revision)
    r.add_argument("-m", "--message", required=True)
    _cmd(ssub, "history", "list the revision chain", _history)
    _cmd(ssub, "status", "revision, pending, migrations in flight, drift, snapshots", _status)
    u = _cmd(ssub, "upgrade", "apply pending revisions up to REV (default head)", _upgrade)
    u.add_argument("target", nargs="?", default="head")
    u.add_argument("--through", choices=("complete", "reads-switched"), default="complete",
                   help="how far each online migration is driven before the upgrade goes on")
    u.add_argument("--snapshot", action="store_true", help="snapshot every affected collection")
    _plan_flags(u)
    d = _cmd(ssub, "downgrade", "run downgrade() back to REV (base: before the first)", _downgrade)
    d.add_argument("target")
    _plan_flags(d)
    s = _cmd(ssub, "stamp", "record REV (default: current) and the live config: accepts drift", _stamp)
    s.add_argument("target", nargs="?")
    rs = _cmd(ssub, "restore", "recover collections from the snapshots taken before REV", _restore)
    rs.add_argument("target")
    pr = _cmd(ssub, "prune-snapshots", "delete old snapshots", _prune)
    pr.add_argument("--keep", type=int, default=1, help="newest snapshots kept per collection")
    pr.add_argument("--older-than", type=float, default=None, metavar="SECONDS")


def _plan_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--plan-json", action="store_true", help="print the exact calls as JSON, change nothing")


def _cmd(ssub: Any, name: str, text: str, fn: Any) -> argparse.ArgumentParser:
    p = ssub.add_parser(name, help=text, description=text)
    p.add_argument("--revisions", default=os.environ.get("SWITCHYARD_SCHEMA_REVISIONS", DEFAULT_FOLDER),
                   help=f"revisions folder (env SWITCHYARD_SCHEMA_REVISIONS; default ./{DEFAULT_FOLDER})")
    p.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", "http://localhost:6333"))
    p.add_argument("--chain", default=os.environ.get("SWITCHYARD_SCHEMA_CHAIN", "default"),
                   help="name of the revision chain in the state store (env SWITCHYARD_SCHEMA_CHAIN)")
    add_secret_argument(p, "--api-key", env="SWITCHYARD_API_KEY", help="Qdrant API key")
    add_secret_argument(p, "--admin-key", env="SWITCHYARD_ADMIN_KEY", help="Switchyard admin key")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=fn)
    return p


def _say(text: str) -> None:
    print(text, flush=True)


def _session(args: argparse.Namespace) -> api.Schema:
    from switchyard.proxy.schema import api

    return api.Schema(args.url, revisions=args.revisions, api_key=args.api_key,
                      admin_key=args.admin_key, chain=args.chain, say=_say)


def _revision(args: argparse.Namespace) -> int:
    path = new_file(args.revisions, args.message)
    print(f"wrote {path}")
    return 0


def _history(args: argparse.Namespace) -> int:
    for r in load_folder(args.revisions):
        print(f"{r.id}  (parent {r.parent or 'base'})  {r.message}")
    return 0


def _status(args: argparse.Namespace) -> int:
    st = asyncio.run(_session(args).status())
    print(json.dumps(st, indent=2, default=str) if args.json else render(st))
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    s = _session(args)
    if args.dry_run or args.plan_json:
        return _print_plan(asyncio.run(s.plan("upgrade", args.target, args.snapshot)), args.plan_json)
    reached = asyncio.run(s.upgrade(args.target, through=args.through, snapshot=args.snapshot))
    print(f"at {reached or 'base'}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    s = _session(args)
    if args.dry_run or args.plan_json:
        return _print_plan(asyncio.run(s.plan("downgrade", args.target)), args.plan_json)
    reached = asyncio.run(s.downgrade(args.target))
    print(f"at {reached or 'base'}")
    return 0


def _print_plan(plan: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(plan, indent=2))
        return 0
    if not plan:
        print("nothing to do")
    for rev in plan:
        print(f"revision {rev['revision']}: {rev['message']}")
        for step in rev["steps"]:
            print(f"  {step['id']} [{step['mode']}]{' deletes data' if step['deletes_data'] else ''}")
            for c in step["calls"]:
                print(f"    {c['method']} {c['path']}" + (f" {json.dumps(c['body'])}" if c["body"] is not None else ""))
    return 0


def _stamp(args: argparse.Namespace) -> int:
    print(f"stamped {asyncio.run(_session(args).stamp(args.target)) or 'base'}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    asyncio.run(_session(args).restore(args.target))
    print(f"restored the snapshots of {args.target}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    removed = asyncio.run(_session(args).prune(args.keep, args.older_than))
    print(f"removed {len(removed)} snapshots" + "".join(f"\n  {r}" for r in removed))
    return 0


def render(st: dict[str, Any]) -> str:
    """Human form of :meth:`api.Schema.status`."""
    lines = [f"revision {st['revision'] or 'base'} (head {st['head'] or 'base'})",
             "pending: " + (", ".join(st["pending"]) or "none")]
    run = st.get("run")
    if run:
        cur = (run.get("current") or {}).get("step")
        lines.append(f"run in progress: {run['direction']} to {run['target'] or 'base'}, "
                     f"{len(run.get('done', []))} steps done" + (f", in flight {cur}" if cur else ""))
    lines.append("migrations in flight: " + (", ".join(
        f"{m['id']} ({m['logical']}: {m['phase']})" for m in st["migrations"]) or "none"))
    for c in st["collections"]:
        lines.append(f"collection {c['name']}: revision {c['revision'] or 'base'}, "
                     + ("drift:" if c["drift"] else "no drift"))
        lines.extend(f"    {d}" for d in c["drift"])
        for s in c["snapshots"]:
            lines.append(f"    snapshot {s['name']} (revision {s['revision']}, "
                         f"{_age(s.get('at'))} old)")
        for h in c["history"][-5:]:
            lines.append(f"    history: {json.dumps(h, default=str)}")
    return "\n".join(lines)


def _age(at: Any) -> str:
    secs = max(0, int(time.time() - float(at or time.time())))
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m" if secs >= 3600 else f"{secs // 60}m{secs % 60:02d}s"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
