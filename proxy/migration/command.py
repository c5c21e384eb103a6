"""``switchyard migrate ...``: the operator CLI, a thin client of the admin REST API.

Talks to ``--url`` (env ``SWITCHYARD_URL``) with ``--admin-key`` (env ``SWITCHYARD_ADMIN_KEY``)
using the standard library's HTTP client. Human output by default, ``--json`` for scripts;
errors print the server's reason and exit 1. ``verify`` starts the proxy's background verify
job and follows it by polling the status (a progress line per change), so no HTTP request
stays open for the length of a verification.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from switchyard.proxy.errors import SwitchyardError, UpstreamError
from switchyard.proxy.secret_sources import add_secret_argument

DEFAULT_URL = "http://localhost:6333"
STEPS = {"start": "start", "complete": "complete", "cancel": "cancel"}


class AdminClient:
    def __init__(self, url: str, key: str | None, timeout: float = 120.0) -> None:
        self.base, self.key, self.timeout = url.rstrip("/") + "/switchyard/v1", key, timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        if self.key:
            req.add_header("switchyard-admin-key", self.key)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read())["status"]["error"]
            except (ValueError, KeyError, TypeError):
                reason = f"HTTP {exc.code}"
            raise SwitchyardError(reason, raw=True) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise UpstreamError(f"admin API at {self.base} unreachable: {exc}") from exc


def register(sub: Any) -> None:
    mig = sub.add_parser("migrate", help="plan and drive embedding-model migrations")
    msub = mig.add_subparsers(dest="migrate_command", metavar="ACTION", required=True)
    p = _cmd(msub, "plan", "validate, estimate and create a migration (phase planned)", _plan, with_id=False)
    p.add_argument("logical", help="collection or alias clients use")
    p.add_argument("--kind", default="reembed",
                   help="reembed (default: re-embed with --to-model), copy (schema change, vectors "
                        "carried over), or another registered kind (docs/migrations.md, Kinds)")
    p.add_argument("--to-model", help="model B (required for reembed)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="a kind option as JSON (repeatable; a value that is not JSON is a string)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=JSON", dest="set_",
                   help="copy: a target setting by dotted path, e.g. hnsw_config.m=32")
    p.add_argument("--vectors-config", metavar="FILE.json", help="copy: the target's vectors config")
    p.add_argument("--quantization", metavar="FILE.json",
                   help="copy: the target's quantization config (a file holding null removes it)")
    p.add_argument("--index", action="append", default=[], metavar="FIELD:SCHEMA",
                   help="copy: add a payload index (schema: keyword, integer, ... or JSON params)")
    p.add_argument("--drop-index", action="append", default=[], metavar="FIELD",
                   help="copy: do not give the target this payload index")
    p.add_argument("--vector-map", action="append", default=[], metavar="SOURCE=TARGET",
                   help="copy: carry source vector SOURCE into target vector TARGET ('' is unnamed; "
                        "empty TARGET drops it)")
    p.add_argument("--vector", metavar="NAME",
                   help="named-vector: the new vector's name (same as --option vector=NAME)")
    p.add_argument("--by", action="append", default=[], metavar="FIELD",
                   help="split: a payload field of the split key (repeatable; dotted for nested)")
    p.add_argument("--template", metavar="NAME",
                   help="split: the targets' name template, e.g. '{source_title}_{type}'")
    p.add_argument("--target")
    p.add_argument("--doc-key", default="doc_id")
    p.add_argument("--text-field", default="text")
    p.add_argument("--copy-vectors", action="store_true")
    p.add_argument("--mirror", choices=("sync", "async"), default="sync",
                   help="async: clients do not wait for the mirrored write (bounded queue); default sync")
    p.add_argument("--lookup", choices=("exact", "ids"), default="exact",
                   help="merged reads find source hits' documents in the target by doc key "
                        "(exact, default) or by point id (ids: faster, exact only when a "
                        "document's points arrive together)")
    p.add_argument("--throttle", type=float, default=None,
                   help="backfill points per second (omit: unthrottled; 0: paused until "
                        "`migrate throttle` or `resume`)")
    p.add_argument("--order", choices=("hot", "id"), default=None,
                   help="backfill order: hot (the documents reads return most often first, then id "
                        "order) or id; default hot when hot-document counts exist, else id")
    p.add_argument("--require-eval", action="store_true",
                   help="every switch-reads of this migration needs a fresh GO from `migrate eval`")
    p.add_argument("--eval-max-age", type=float, default=None, metavar="SECONDS",
                   help="how fresh that GO must be (default 3600)")
    p.add_argument("--force", action="store_true",
                   help="plan despite the doctor's blocking findings (mixed index, missing text)")
    p.add_argument("--dry-run", action="store_true")
    _cmd(msub, "list", "list migrations", _list, with_id=False)
    s = _cmd(msub, "status", "phase, read mode, proxies, counters, last refusal", _status)
    s.add_argument("--watch", action="store_true", help="follow changes until interrupted")
    s.add_argument("--interval", type=float, default=1.0)
    for name in ("start", "complete", "cancel", "pause", "resume"):
        _cmd(msub, name, f"{name} the migration", _simple(name))
    v = _cmd(msub, "verify", "merge-join source and target (in the proxy, in the background); "
             "clean in dual_write enters verified", _verify)
    v.add_argument("--repair", action="store_true",
                   help="fix differences: re-embed missing/stale points with model B, delete extra ones")
    v.add_argument("--no-wait", action="store_true", help="start the verify and return at once")
    v.add_argument("--interval", type=float, default=1.0, help="seconds between progress polls")
    for name in ("switch-reads", "switch-writes"):
        c = _cmd(msub, name, f"{name} (or back with --back)", _switch(name))
        c.add_argument("--back", action="store_true")
        if name == "switch-reads":
            c.add_argument("--require-eval", action="store_true",
                           help="refuse unless the newest `migrate eval` verdict is GO and fresh")
            c.add_argument("--max-age", type=float, default=None, metavar="SECONDS",
                           help="how fresh (default: the plan's --eval-max-age, else 3600)")
    c = _cmd(msub, "cleanup", "delete the source after complete", _cleanup)
    c.add_argument("--yes", action="store_true")
    t = _cmd(msub, "throttle", "set backfill points per second (0 pauses, `none` unthrottles)",
             _throttle)
    t.add_argument("points_per_second", type=_rate, help="a number >= 0, or `none` for unthrottled")
    r = _cmd(msub, "read-mode", "source | merged | shadow (before reads_switched)", _read_mode)
    r.add_argument("mode", choices=("source", "merged", "shadow"))
    from switchyard.proxy.migration.quality_command import register_into

    register_into(msub)  # adapter, eval (issue 15)


def _cmd(msub: Any, name: str, text: str, fn: Any, with_id: bool = True) -> argparse.ArgumentParser:
    p = msub.add_parser(name, help=text)
    p.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL))
    add_secret_argument(p, "--admin-key", env="SWITCHYARD_ADMIN_KEY", help="the proxy's admin key")
    p.add_argument("--json", action="store_true")
    if with_id:
        p.add_argument("id", help="migration id")
    if name in ("start", "complete", "cancel", "switch-reads", "switch-writes", "read-mode"):
        p.add_argument("--expected-rev", type=int, help="refuse unless the record is at this revision")
    p.set_defaults(handler=lambda args: _emit(args, fn(args, AdminClient(args.url, args.admin_key))))
    return p


def _emit(args: argparse.Namespace, result: Any) -> int:
    if result is None:
        return 0
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(render(result))
    return 0 if not (isinstance(result, dict) and result.get("ok") is False) else 1


def _plan(args: argparse.Namespace, c: AdminClient) -> Any:
    return c.call("POST", "/migrations", {
        "logical": args.logical, "to_model": args.to_model, "target": args.target,
        "doc_key": args.doc_key, "text_field": args.text_field, "copy_vectors": args.copy_vectors,
        "mirror": args.mirror, "lookup": args.lookup,
        "throttle": args.throttle, "dry_run": args.dry_run, "kind": args.kind,
        "options": plan_options(args), "order": args.order, "require_eval": args.require_eval,
        "eval_max_age": args.eval_max_age, "force": args.force})


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pair(text: str, sep: str, flag: str) -> tuple[str, str]:
    if sep not in text:
        raise SwitchyardError(f"{flag} takes {'KEY=VALUE' if sep == '=' else 'FIELD:SCHEMA'}, got {text!r}",
                              raw=True)
    key, value = text.split(sep, 1)
    return key.strip(), value.strip()


def _json_file(path: str, flag: str) -> Any:
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError) as exc:
        raise SwitchyardError(f"{flag} {path}: {exc}", raw=True) from exc


def plan_options(args: argparse.Namespace) -> dict[str, Any]:
    """The kind options of ``migrate plan`` as one JSON map (``--option`` plus the copy flags)."""
    out: dict[str, Any] = {}
    for item in args.option:
        key, value = _pair(item, "=", "--option")
        out[key] = _json_value(value)
    if args.set_:
        out["set"] = {k: _json_value(v) for k, v in (_pair(i, "=", "--set") for i in args.set_)}
    if args.vectors_config:  # split: one config for all targets, or {"default", "values"}
        key = "vectors" if getattr(args, "kind", "") == "split" else "vectors_config"
        out[key] = _json_file(args.vectors_config, "--vectors-config")
    if getattr(args, "by", None):
        out["by"] = list(args.by)
    if getattr(args, "template", None):
        out["template"] = args.template
    if args.quantization:
        out["quantization"] = _json_file(args.quantization, "--quantization")
    if args.index:
        out["indexes"] = {k: (_json_value(v) if v.startswith("{") else v)
                          for k, v in (_pair(i, ":", "--index") for i in args.index)}
    if args.drop_index:
        out["drop_indexes"] = list(args.drop_index)
    if args.vector_map:
        out["vector_map"] = {k: (v or None) for k, v in (_pair(i, "=", "--vector-map") for i in args.vector_map)}
    if getattr(args, "vector", None):
        out["vector"] = args.vector
    return out


def _list(args: argparse.Namespace, c: AdminClient) -> Any:
    return c.call("GET", "/migrations")


def _status(args: argparse.Namespace, c: AdminClient) -> Any:
    if not args.watch:
        return c.call("GET", f"/migrations/{args.id}")
    last = None
    while True:  # until Ctrl-C (exit 130)
        current = c.call("GET", f"/migrations/{args.id}")
        if current != last:
            print(json.dumps(current, sort_keys=True) if args.json else render(current) + "\n", flush=True)
            last = current
        time.sleep(max(0.1, args.interval))


def _transition(c: AdminClient, args: argparse.Namespace, name: str) -> Any:
    return c.call("POST", f"/migrations/{args.id}/transition",
                  {"name": name, "expected_rev": getattr(args, "expected_rev", None)})


def _simple(name: str) -> Any:
    def run(args: argparse.Namespace, c: AdminClient) -> Any:
        if name in ("pause", "resume"):
            return c.call("POST", f"/migrations/{args.id}/{name}", {})
        return _transition(c, args, name)
    return run


def _verify(args: argparse.Namespace, c: AdminClient) -> Any:
    status = c.call("POST", f"/migrations/{args.id}/verify?wait=false", {"repair": args.repair})
    if args.no_wait:
        return status
    out = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the result
    last, run_id = None, (status.get("verify") or {}).get("id")
    while (v := run_of(status, run_id)) is not None and v["running"]:
        line = verify_progress(v)
        if line != last:
            print(line, file=out, flush=True)
            last = line
        time.sleep(max(0.1, args.interval))
        status = c.call("GET", f"/migrations/{args.id}")
    v = run_of(status, run_id) or {}
    if v.get("state") == "clean":
        return status
    if v.get("state") == "refused":
        raise SwitchyardError(f"Refused: {v['reason']}", raw=True)
    if v.get("state") == "abandoned":
        raise SwitchyardError(f"the verify on {v['owner'] or 'another process'} stopped reporting "
                              f"progress at {_clock(v['at'])} (its process died?); run it again", raw=True)
    raise SwitchyardError(f"verify {v.get('state', 'ended')}: {v.get('reason') or 'no reason recorded'}",
                          raw=True)


def verify_progress(v: dict[str, Any]) -> str:
    """One line for a running verify (pure): who, with or without repair, stage, points checked."""
    kind = "with repair" if v["repair"] else "without repair"
    stage = v["stage"] or "starting"
    if stage in ("confirm", "repair", "recheck") and v["stage_total"]:
        stage += f" {v['stage_done']}/{v['stage_total']} differences"
    return f"verify {kind} on {v['owner'] or '?'}: {stage}, checked {v['checked']} points"


def _clock(at: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(at or 0)))


def run_of(status: dict[str, Any], run_id: str | None) -> dict[str, Any] | None:
    """The verify run ``run_id`` in a status (pure), else its latest verify: a daemon's pass
    that started later is the migration's latest, but the CLI follows its own run."""
    found = next((v for v in status.get("verify_runs") or () if v.get("id") == run_id), None)
    return found if found is not None else status.get("verify")


def _render_others(result: dict[str, Any]) -> list[str]:
    """The other verify runs still running beside the latest one (pure), one line each."""
    latest = (result.get("verify") or {}).get("id")
    return [f"    also running: {verify_progress(v)} ({v.get('starter') or 'proxy'} run {v.get('id')})"
            for v in result.get("verify_runs") or () if v.get("running") and v.get("id") != latest]


def _render_verify(v: dict[str, Any] | None) -> str:
    if v is None:
        return "  verify job: none"
    if v["running"]:
        return (f"  verify job: RUNNING, {verify_progress(v)}, since {_clock(v['started_at'])} "
                f"(run {v.get('id') or '?'})")
    kind = "with repair" if v["repair"] else "without repair"
    when = _clock(v["ended_at"] or v["at"])
    why = f": {v['reason']}" if v["reason"] else ""
    return (f"  verify job: last {v['state'].upper()} ({kind}, on {v['owner'] or '?'}, run "
            f"{v.get('id') or '?'}) at {when}{why}")


def _switch(name: str) -> Any:
    def run(args: argparse.Namespace, c: AdminClient) -> Any:
        step = name.replace("-", "_") + ("_back" if args.back else "")
        if not getattr(args, "require_eval", False) and getattr(args, "max_age", None) is None:
            return _transition(c, args, step)
        return c.call("POST", f"/migrations/{args.id}/transition",
                      {"name": step, "expected_rev": args.expected_rev,
                       "require_eval": bool(args.require_eval), "max_age": args.max_age})
    return run


def _cleanup(args: argparse.Namespace, c: AdminClient) -> Any:
    return c.call("POST", f"/migrations/{args.id}/cleanup", {"yes": args.yes})


def _rate(text: str) -> float | None:
    """``none`` / ``unthrottled`` lift the limit; anything else is points per second."""
    return None if text.lower() in ("none", "unthrottled") else float(text)


def _throttle(args: argparse.Namespace, c: AdminClient) -> Any:
    body = ({"unthrottled": True} if args.points_per_second is None
            else {"points_per_second": args.points_per_second})
    return c.call("POST", f"/migrations/{args.id}/throttle", body)


def throttle_text(throttle: Any) -> str:
    """How status shows the operator's rate (pure): null is unthrottled, 0 is paused."""
    if throttle is None:
        return "unthrottled"
    return "0 (paused)" if float(throttle) == 0 else f"{float(throttle):g} points/s"


def _read_mode(args: argparse.Namespace, c: AdminClient) -> Any:
    return c.call("POST", f"/migrations/{args.id}/read-mode",
                  {"mode": args.mode, "expected_rev": args.expected_rev})


def render(result: Any) -> str:
    """Human form of a status, a plan report or a list (pure)."""
    if isinstance(result, dict) and "migrations" in result:
        rows = [f"{'ID':<36} {'PHASE':<16} {'READS':<7} {'REV':>4}  LOGICAL: SOURCE -> TARGET"]
        rows += [f"{m['id']:<36} {m['phase']:<16} {m['read_mode']:<7} {m['rev']:>4}  "
                 f"{m['logical']}: {m['source']} -> {m['target']}" for m in result["migrations"]]
        return "\n".join(rows)
    if isinstance(result, dict) and "estimate" in result:
        return _render_plan(result)
    m, lines = result["migration"], []
    lines.append(f"migration {m['id']} (kind {m.get('kind') or 'reembed'}): {m['logical']} "
                 f"{m['source']} ({m['model_a']}) -> "
                 f"{m['target']} ({m['model_b']})")
    lines.append(f"  phase {m['phase']}  read mode {m['read_mode']} (lookup {m.get('lookup', 'exact')})"
                 f"  revision {m['rev']} "
                 f"(proxies act on {m['route_rev']})  backfill {m['backfill']}"
                 f"{' PAUSED' if m['paused'] else ''}  throttle {throttle_text(m.get('throttle'))}")
    lines.append("  counters: " + (", ".join(f"{k}={v}" for k, v in sorted(m["counters"].items())) or "-"))
    if result.get("order"):
        lines.append("  " + _order_line(result["order"]))
    opts = m.get("options") or {}
    if opts.get("require_eval"):
        lines.append(f"  switch-reads requires a GO eval younger than {float(opts.get('eval_max_age') or 3600):g}s")
    v = m.get("verification")
    lines.append(f"  verification: {'clean' if v['clean'] else 'DIRTY'} {v['counts']} at "
                 f"{_clock(v['at'])}" if v else "  verification: none")
    if "verify" in result:
        lines.append(_render_verify(result["verify"]))
        lines.extend(_render_others(result))
    lines.append("  proxies: " + (", ".join(f"{p['instance_id']}@{p['acted_rev']} ({p['state']})"
                                            for p in result["proxies"]) or "none heartbeating"))
    b = result.get("backfill")
    if b:
        lines.append(f"  backfill {b['bar']} {b['done']}/{b['total']} points, {b['rate']:.0f} points/s, "
                     f"ETA {b['eta_text']}")
        for d in b["daemons"]:
            why = f" ({d['reason']})" if d.get("reason") else ""
            lines.append(f"    daemon {d['owner']}: {'SILENT' if d['silent'] else d['state']}{why}, "
                         f"{float(d.get('rate') or 0):.0f} points/s")
    lines.extend(_render_repair(result.get("repair")))
    r = m.get("last_refusal")
    lines.append(f"  last refusal: {r['action']}: {r['reason']}" if r else "  last refusal: none")
    return "\n".join(lines)


def _render_repair(r: dict[str, Any] | None) -> list[str]:
    """The repair log as read from the store (pure): its size and, past the append bound, why
    and since when the whole collection needs a verify."""
    if r is None:
        return []
    lines = [f"  repair log {r['size']} ({r['points']} point(s), {r['filters']} filter(s))"]
    c = r.get("coarse")
    if c:
        lines.append(f"    COARSE since {_clock(c['since'])}: {c['reason']}")
    return lines


def _render_plan(r: dict[str, Any]) -> str:
    e = r["estimate"]
    head = ("DRY RUN: would create" if r["dry_run"] else "created") if r["ok"] else "REFUSED"
    lines = [f"{head}: target {r['target']} for source {r['source']} (kind {r.get('kind', 'reembed')})"]
    lines += [f"  - {reason}" for reason in r["reasons"]]
    layout = r.get("layout") or {}
    if layout:
        lines.append("  layout changes:" if layout.get("diff") else "  layout changes: none")
        lines += [f"    {d}" for d in layout.get("diff") or ()]
    if r.get("cleanup"):
        lines.append("  cleanup will remove: " + "; ".join(r["cleanup"]))
    lines.append(f"  points {e['points']}, sampled {e['sampled']} ({e['missing_share']:.0%} lack text), "
                 f"~{e['text_bytes']} bytes of text, ~{e['tokens']} tokens")
    eta = (f"{e['eta_seconds']:.0f}s" if e["eta_seconds"] is not None else
           "none (paused: throttle 0)" if e["rate"] == 0 else "unknown (no throttle, no probe)")
    cost = f"{e['cost']:.4f}" if e["cost"] is not None else "n/a"
    lines.append(f"  rate {'-' if e['rate'] is None else e['rate']} points/s, ETA {eta}, cost {cost}")
    if r.get("order"):
        lines.append("  " + _order_line(r["order"]))
    if r.get("require_eval"):
        lines.append("  switch-reads will require a fresh GO from `migrate eval`")
    lines += _render_doctor(r.get("doctor"), bool(r.get("force")))
    if r.get("migration"):
        lines.append(f"  migration id: {r['migration']['id']} (phase {r['migration']['phase']})")
    return "\n".join(lines)


def _order_line(o: dict[str, Any]) -> str:
    """The backfill's visiting order (pure): asked, given, and why."""
    asked = o.get("requested") or "default"
    fixed = " (partitions planned)" if o.get("planned") else ""
    return f"backfill order: {o['order']}{fixed} (asked: {asked}): {o.get('reason') or ''}"


def _render_doctor(d: dict[str, Any] | None, force: bool) -> list[str]:
    """The plan's doctor section (pure): scope, then each finding with its severity."""
    if d is None:
        return ["  doctor: not run (no bound source)"]
    if d.get("error"):
        return [f"  doctor: scan failed: {d['error']}"]
    scope = "all" if d.get("complete") else "the first"
    lines = [f"  doctor ({scope} {d.get('points', 0)} points): "
             + ("no findings" if not d.get("findings") else f"{len(d['findings'])} finding(s)")]
    for x in d.get("findings") or ():
        tag = "BLOCKS (forced)" if x["severity"] == "blocks" and force else x["severity"].upper()
        lines.append(f"    [{tag}] {x['text']}")
    return lines
