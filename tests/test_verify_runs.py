"""Every verify run has its own record and the migration points at its runs (decision 7).

Tables for the pure parts (a run's view, who blocks whom, the bounded run list, which run the
CLI follows and what status draws); then real processes: two verifies through the session's
proxy leave two records with the migration pointing at the latest; a record of the older
layout is read and carried over; and a backfill daemon's full-verify pass (a subprocess) runs
while a proxy's verify with repair is held, each in its own record with its own progress.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from switchyard.backfill.settings import NEEDS_FULL_VERIFY
from backfill_helpers import setup_migration
from openai_stub import Hold
from switchyard.proxy.admin.service import _focus
from switchyard.proxy.migration import verify_state
from switchyard.proxy.migration.command import render, run_of
from switchyard.proxy.migration.record import Migration
from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)
from test_verify_jobs import _held, admin, status, stub_model, until, world  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_000_000.0


def rec(owner: str = "p1", starter: str | None = "proxy", at: float = NOW, outcome: str = "",
        **kw: Any) -> dict[str, Any]:
    data = {"id": f"r-{owner}", "owner": owner, "repair": False, "stage": "scan", "checked": 5,
            "at": at, "outcome": outcome, **kw}
    if starter is not None:
        data["starter"] = starter
    return data


# (runs, claimant) -> blocked by whom ("" = may start)
BUSY = [
    ([], "p1", ""),
    ([rec("p2")], "p1", "p2"),                                   # another proxy's live run
    ([rec("p1")], "p1", ""),                                     # its own (the job joins it)
    ([rec("d1", "daemon")], "p1", ""),                           # a daemon's pass never blocks
    ([rec("p2", outcome="clean")], "p1", ""),                    # ended
    ([rec("p2", at=NOW - verify_state.STALE_AFTER - 1)], "p1", ""),  # abandoned
    ([rec("", starter=None)], "p1", ""),                         # layout 1, daemon (no owner)
    ([rec("p3", starter=None)], "p1", "p3"),                     # layout 1, a proxy's
    ([rec("d1", "daemon"), rec("p2", outcome="failed"), rec("p4")], "p1", "p4"),
]


@pytest.mark.parametrize(("runs", "claimant", "blocker"), BUSY)
def test_busy_reason(runs: list[dict[str, Any]], claimant: str, blocker: str) -> None:
    why = verify_state.busy_reason(runs, "m1", claimant, NOW)
    if blocker:
        assert why is not None and f"already running on {blocker} (run r-{blocker}" in why
    else:
        assert why is None


def test_view_names_the_run_and_its_starter_and_reads_layout_1() -> None:
    v = verify_state.view(rec("d1", "daemon", stage="repair", stage_done=3, stage_total=9), NOW)
    assert v is not None
    assert (v["id"], v["starter"], v["state"], v["stage_done"], v["stage_total"]) == (
        "r-d1", "daemon", "running", 3, 9)
    old = verify_state.view({"owner": "p1", "outcome": "clean", "at": NOW, "counts": {"source": 4}}, NOW)
    assert old is not None and (old["id"], old["starter"], old["state"]) == ("legacy", "proxy", "clean")
    assert verify_state.view(None, NOW) is None


def test_run_list_is_bounded_newest_last_without_repeats() -> None:
    m = Migration(id="m", logical="d", source="s", target="t", model_a="a", model_b="b",
                  verify_runs=tuple(f"r{i}" for i in range(verify_state.RUNS_KEPT)))
    listed = verify_state.listed(m, "new")
    assert len(listed) == verify_state.RUNS_KEPT and listed[-1] == "new" and listed[0] == "r1"
    assert verify_state.listed(dataclasses.replace(m, verify_runs=("a", "b")), "a") == ("b", "a")
    assert Migration.from_dict(dataclasses.replace(m, verify_runs=("x", "y")).stored()).verify_runs == ("x", "y")
    old = m.stored()
    del old["verify_runs"]
    assert Migration.from_dict(old).verify_runs == ()
    ids = [verify_state.new_run_id(NOW + i) for i in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3


def _view(run_id: str, running: bool, starter: str = "proxy") -> dict[str, Any]:
    return {"id": run_id, "starter": starter, "running": running, "repair": True, "owner": run_id,
            "stage": "repair", "checked": 20, "stage_done": 0, "stage_total": 20, "state": "running",
            "started_at": NOW, "at": NOW, "ended_at": None, "reason": "", "counts": {}}


def test_the_cli_and_the_api_follow_their_own_run() -> None:
    mine, daemons = _view("mine", True), _view("d", False, "daemon")
    st = {"verify": daemons, "verify_runs": [daemons, mine]}
    assert run_of(st, "mine") is mine and run_of(st, "gone") is daemons and run_of(st, None) is daemons
    assert _focus(st, "mine")["verify"] is mine and _focus(st, "gone")["verify"] is daemons


def test_status_draws_other_running_runs() -> None:
    m = Migration(id="m", logical="d", source="s", target="t", model_a="a", model_b="b").to_dict()
    latest, other = {**_view("d", False, "daemon"), "state": "clean"}, _view("p", True)
    text = render({"migration": m, "proxies": [], "verify": latest, "verify_runs": [latest, other]})
    assert "verify job: last CLEAN (with repair, on d, run d)" in text
    assert "also running: verify with repair on p: repair 0/20 differences, checked 20 points (proxy run p)" in text


# -- real processes


async def test_two_verifies_two_records_the_migration_points_at_the_latest(
        switchyard: RunningProxy, world: Any, prefix: str) -> None:  # noqa: F811
    client, store = world
    mid = await setup_migration(client, store, prefix, list(range(1, 16)))
    code, first = await admin(switchyard, "POST", f"/migrations/{mid}/verify", {"repair": True})
    assert code == 200, first
    code, second = await admin(switchyard, "POST", f"/migrations/{mid}/verify")
    assert code == 200, second
    one, two = first["result"]["verify"], second["result"]["verify"]
    assert one["id"] != two["id"] and one["state"] == two["state"] == "clean"
    assert one["counts"]["missing"] == 15 and two["counts"]["missing"] == 0  # each its own counts
    m = Migration.from_envelope(await store.require(Migration.KIND, mid))
    assert m.verify_runs == (one["id"], two["id"]) and m.verification is not None
    assert m.verification.run == two["id"]
    for run in (one, two):
        env = await store.require(verify_state.KIND, verify_state.run_key(mid, run["id"]))
        assert env.data["owner"] == switchyard.interceptor.config.instance_id
        assert env.data["starter"] == "proxy" and env.data["outcome"] == "clean"
    st = await status(switchyard, mid)
    assert st["verify"]["id"] == two["id"] and [v["id"] for v in st["verify_runs"]] == [two["id"], one["id"]]


async def test_a_record_of_the_older_layout_is_read_and_carried_over(
        switchyard: RunningProxy, world: Any, prefix: str) -> None:  # noqa: F811
    client, store = world
    mid = await setup_migration(client, store, prefix, list(range(1, 6)))
    old = {"owner": "old-proxy", "repair": False, "started_at": time.time() - 100, "stage": "done",
           "outcome": "refused", "reason": "missing=5", "counts": {"source": 5, "missing": 5},
           "at": time.time() - 90, "ended_at": time.time() - 90, "finished": True}
    await store.upsert(verify_state.LEGACY_KIND, mid, old)  # as the code before runs wrote it
    st = await status(switchyard, mid)
    assert st["verify"]["id"] == "legacy" and st["verify"]["state"] == "refused"
    assert st["verify"]["owner"] == "old-proxy"
    code, body = await admin(switchyard, "POST", f"/migrations/{mid}/verify", {"repair": True})
    assert code == 200, body
    m = Migration.from_envelope(await store.require(Migration.KIND, mid))
    assert m.verify_runs == ("legacy", body["result"]["verify"]["id"])
    carried = await store.require(verify_state.KIND, verify_state.run_key(mid, "legacy"))
    assert carried.data["owner"] == "old-proxy" and carried.data["outcome"] == "refused"
    await store.delete(verify_state.LEGACY_KIND, mid)


async def test_a_live_run_is_kept_fresh_and_keepalive_never_undoes_progress(
        world: Any, prefix: str) -> None:  # noqa: F811
    """A run that writes no progress (a repair waiting on a slow embedder) still has its record
    refreshed, so it never ages into `abandoned` and lets another exclusive verify start; the
    refresh never undoes a progress or outcome write that lands between its read and write,
    and it stops once the run has an outcome."""
    client, store = world
    mid = await setup_migration(client, store, prefix, [1, 2])
    run = await verify_state.claim(store, mid, "p1", False, time.time())
    claimed_at = (await store.require(verify_state.KIND, run.key)).data["at"]
    async with verify_state.kept_alive(store, run, every=0.05):
        async def refreshed() -> bool:
            env = await store.require(verify_state.KIND, run.key)
            return bool(env.data["at"] > claimed_at + 0.3)
        await until(refreshed, "the silent run's record was refreshed", timeout=10)
        for k in range(30):  # progress races the refresh; the last write must stand
            await verify_state.progress(store, run, {"stage": "scan", "checked": k})
        data = (await store.require(verify_state.KIND, run.key)).data
        assert (data["stage"], data["checked"]) == ("scan", 29)
        await asyncio.sleep(0.3)  # refreshes in between keep the fields
        data = (await store.require(verify_state.KIND, run.key)).data
        assert (data["stage"], data["checked"]) == ("scan", 29)
        v = verify_state.view(data, time.time())
        assert v is not None and v["running"]
        await verify_state.finish(store, run, "clean", "", {"source": 2}, time.time())
        ended = await store.require(verify_state.KIND, run.key)
        await asyncio.sleep(0.3)
        after = await store.require(verify_state.KIND, run.key)
        assert (after.rev, after.data) == (ended.rev, ended.data)  # stopped: outcome untouched
    assert after.data["outcome"] == "clean"


async def test_a_daemon_verify_beside_a_proxy_verify_keeps_its_own_progress(
        switchyard: RunningProxy, world: Any, upstream: Any, prefix: str,  # noqa: F811
        stub_model: Any) -> None:  # noqa: F811
    """The proxy's verify with repair is held at its first embedding; meanwhile a daemon
    process copies the points and runs its full-verify pass (the record asks for one). Each
    run writes only its own record: the daemon's ends clean with its own counts while the
    proxy's still shows its repair stage; then the proxy's ends clean with its counts."""
    client, store = world
    stub, spec = stub_model
    mid = await setup_migration(client, store, prefix, list(range(1, 21)), model_b=spec.id)
    release = asyncio.Event()
    stub.script(Hold(release))
    proc = None
    try:
        code, body = await admin(switchyard, "POST", f"/migrations/{mid}/verify?wait=false", {"repair": True})
        assert code == 200, body
        proxy_run = body["result"]["verify"]["id"]
        await until(lambda: _held(stub), "the proxy's repair reached the stub")
        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        await store.put(Migration.KIND, mid, dataclasses.replace(
            m, counters={**m.counters, NEEDS_FULL_VERIFY: 1}).stored(), m.rev)
        proc = subprocess.Popen(
            [sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid, "--url",
             upstream.rest_url, "--once", "--owner", "daemon-1"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, err

        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        assert len(m.verify_runs) == 2 and m.verify_runs[0] == proxy_run
        daemon_run = m.verify_runs[-1]  # the latest
        d = (await store.require(verify_state.KIND, verify_state.run_key(mid, daemon_run))).data
        assert (d["owner"], d["starter"], d["outcome"]) == ("daemon-1", "daemon", "clean")
        assert d["counts"]["source"] == 20 and d["counts"]["missing"] == 0
        p = (await store.require(verify_state.KIND, verify_state.run_key(mid, proxy_run))).data
        assert p["owner"] == switchyard.interceptor.config.instance_id and not p.get("outcome")
        assert (p["stage"], p["stage_done"], p["stage_total"], p["checked"]) == ("repair", 0, 20, 20)
        st = await status(switchyard, mid)
        assert st["verify"]["id"] == daemon_run and st["verify"]["state"] == "clean"
        running = {v["id"]: v for v in st["verify_runs"]}[proxy_run]
        assert running["running"] and running["stage"] == "repair"
        assert f"(proxy run {proxy_run})" in render(st)
    finally:
        release.set()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    async def proxy_run_ended() -> dict[str, Any] | None:
        env = await store.get(verify_state.KIND, verify_state.run_key(mid, proxy_run))
        return env.data if env is not None and env.data.get("outcome") else None
    p = await until(proxy_run_ended, "the proxy's verify ended")
    assert p["outcome"] == "clean" and p["counts"]["missing"] == 20 and p["counts"]["repaired"] == 20
    m = Migration.from_envelope(await store.require(Migration.KIND, mid))
    assert m.phase == "verified" and m.verification is not None and m.verification.run == proxy_run
