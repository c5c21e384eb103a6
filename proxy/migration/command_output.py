"""The human output of ``switchyard migrate ...``: everything it prints without ``--json``.

Contract: pure functions from the admin API's JSON results (a status, a plan report, the
migration list, one verify run) to text, with no I/O and no clock reads (recorded timestamps
are shown in local time). :func:`render` is the entry point; :func:`verify_progress` is also
the progress line the CLI prints while it follows a verify.

Why a module of its own: what the CLI prints follows the fields of the status and plan
reports, while :mod:`command` follows the flags and the admin API's routes; kept apart, each
stays short and the rendering is tested on plain dicts without a parser or a client.
:mod:`command` keeps :func:`render` and :func:`throttle_text` importable from there.
"""

from __future__ import annotations

import time
from typing import Any


def verify_progress(v: dict[str, Any]) -> str:
    """One line for a running verify (pure): who, with or without repair, stage, points checked."""
    kind = "with repair" if v["repair"] else "without repair"
    stage = v["stage"] or "starting"
    if stage in ("confirm", "repair", "recheck") and v["stage_total"]:
        stage += f" {v['stage_done']}/{v['stage_total']} differences"
    return f"verify {kind} on {v['owner'] or '?'}: {stage}, checked {v['checked']} points"


def _clock(at: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(at or 0)))


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


def throttle_text(throttle: Any) -> str:
    """How status shows the operator's rate (pure): null is unthrottled, 0 is paused."""
    if throttle is None:
        return "unthrottled"
    return "0 (paused)" if float(throttle) == 0 else f"{float(throttle):g} points/s"


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
