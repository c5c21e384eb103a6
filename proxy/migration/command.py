"""``switchyard migrate ...``: the operator CLI, a thin client of the admin REST API.

Talks to ``--url`` (env ``SWITCHYARD_URL``) with ``--admin-key`` (env ``SWITCHYARD_ADMIN_KEY``)
using the standard library's HTTP client. Human output by default, ``--json`` for scripts;
errors print the server's reason and exit 1. ``verify`` starts the proxy's background verify
job and follows it by polling the status (a progress line per change), so no HTTP request
stays open for the length of a verification.

This module is the parser, the :class:`AdminClient` and the handlers that call it; the human
output lives in :mod:`command_output` (pure), and :func:`render` and :func:`throttle_text`
stay importable from here.
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
from switchyard.proxy.migration.command_output import _clock, render, verify_progress
from switchyard.proxy.migration.command_output import throttle_text as throttle_text  # re-exported
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


def run_of(status: dict[str, Any], run_id: str | None) -> dict[str, Any] | None:
    """The verify run ``run_id`` in a status (pure), else its latest verify: a daemon's pass
    that started later is the migration's latest, but the CLI follows its own run."""
    found = next((v for v in status.get("verify_runs") or () if v.get("id") == run_id), None)
    return found if found is not None else status.get("verify")


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


def _read_mode(args: argparse.Namespace, c: AdminClient) -> Any:
    return c.call("POST", f"/migrations/{args.id}/read-mode",
                  {"mode": args.mode, "expected_rev": args.expected_rev})
