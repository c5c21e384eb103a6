"""``switchyard backfill --executor ray``: the daemon with its embedding step on a Ray Data actor
pool (backfill/ray_executor.py) reaches the same end state as the plain daemon.

One local Ray instance for the module (start-up is slow): 2 CPUs, every Ray server on the
loopback interface, no dashboard, no usage statistics; shut down at the end.
"""

from __future__ import annotations

import os

# before Ray is imported: Ray reads these at import (see ray_executor.import_ray)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # node address 127.0.0.1
os.environ.setdefault("RAY_DATA_METADATA_PREFETCH_ON_THREAD", "0")

import json  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402

from backfill_helpers import B, content, dump, setup_migration  # noqa: E402
from test_backfill_daemon import env, migration  # noqa: E402,F401  (fixture, helper)
from switchyard.backfill import ray_executor  # noqa: E402
from switchyard.backfill.daemon import Daemon, DaemonConfig  # noqa: E402
from switchyard.backfill.pipeline import Copier  # noqa: E402
from switchyard.backfill.verify import verify  # noqa: E402
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest  # noqa: E402
from switchyard.proxy.errors import (  # noqa: E402
    BadRequest, EmbedderBadInput, EmbedderError, ProviderDown, RateLimited,
)
from switchyard.proxy.modelspec import ModelSpec  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")  # Ray's own renames

FAST = DaemonConfig(batch_size=50, concurrency=4, lease_ttl=10.0, refresh=0.2, int_partitions=2,
                    uuid_partitions=1, idle_poll=0.1)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # Ray waits 30 s for its GCS server to bind a port; on this 2-core machine under the whole
    # suite's load that wait once ran out (both of this module's tests errored at set-up), so
    # the wait is Ray's own rocksdb default, 120 s (``RAY_gcs_server_port_wait_time_s``)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_gcs_server_port_wait_time_s", os.environ.get("RAY_gcs_server_port_wait_time_s", "120"))
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1"  # nothing listens beyond loopback
        yield
    finally:
        ray.shutdown()


async def test_ray_executor_reaches_the_plain_daemons_end_state(local_ray: None, env: Any) -> None:
    client, store, prefix = env
    ids: list[Any] = list(range(1, 301)) + [str(uuid.UUID(int=k * 7919 << 96)) for k in range(1, 21)]
    on_ray = await setup_migration(client, store, f"{prefix}r_", ids)
    plain = await setup_migration(client, store, f"{prefix}p_", ids)
    made: list[ray_executor.RayEmbedder] = []

    def factory(spec: ModelSpec) -> ray_executor.RayEmbedder:
        made.append(ray_executor.RayEmbedder(spec, actors=2, call_timeout=60))
        return made[-1]

    stats = await Daemon(store, on_ray, FAST, embedder_factory=factory).run(once=True)
    assert [e.spec.id for e in made] == [B.id] and made[0].embedded == len(ids)  # all on the pool
    assert made[0]._closed  # the daemon closed the embedder it built
    await Daemon(store, plain, FAST).run(once=True)
    m_ray, m_plain = await migration(store, on_ray), await migration(store, plain)
    assert stats.written == len(ids) and m_ray.backfill == m_plain.backfill == "done"

    got, want = await dump(client, m_ray.target), await dump(client, m_plain.target)
    assert set(got) == set(want) == set(ids)
    for i, (payload, vector) in want.items():
        ray_payload, ray_vector = got[i]
        assert content(ray_payload) == content(payload), i
        assert ray_payload[DIGEST_FIELD] == payload[DIGEST_FIELD]
        assert ray_payload["embedding_model_id"] == B.id
        np.testing.assert_allclose(np.asarray(ray_vector), np.asarray(vector), rtol=0, atol=1e-6)
    source = await dump(client, m_ray.source)
    assert all(got[i][0][DIGEST_FIELD] == source_digest(p) for i, (p, _) in source.items())
    found, _ = await verify(Copier(client, m_ray, {}, None, None), store, m_ray)  # type: ignore[arg-type]
    assert found.clean and found.counts()["source"] == len(ids)


async def test_an_actors_embedder_error_comes_back_as_itself(local_ray: None) -> None:
    """A provider that cannot be reached fails inside the actor; the caller gets ProviderDown
    (transient for the daemon), and the shared execution keeps serving the next request."""
    down = ModelSpec(id="ray-down", provider="openai", model="m", dimensions=4,
                     base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2.0)
    emb = ray_executor.RayEmbedder(down, actors=1)
    try:
        with pytest.raises(ProviderDown):
            await emb.embed(["a text"])
        with pytest.raises(ProviderDown):  # the same pipeline again: it did not die
            await emb.embed(["another"])
        assert emb._pipeline is not None and not emb._pipeline.failure
        assert (await emb.embed([])).shape == (0, 4)
    finally:
        await emb.aclose()


def test_error_classes_survive_the_round_trip() -> None:
    for exc in (RateLimited("slow down"), EmbedderBadInput("text 3 is too long"), ProviderDown("gone")):
        back = ray_executor.error_from_text(ray_executor.error_text(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
    other = ray_executor.error_from_text(ray_executor.error_text(ValueError("boom")))
    assert type(other) is EmbedderError and "ValueError: boom" in str(other)
    assert type(ray_executor.error_from_text("NoSuchClass:x")) is EmbedderError
    spec = ModelSpec(id="d", provider="hashing", model="d", dimensions=3)
    ok = ray_executor.decode(spec, np.arange(6, dtype=np.float32).tobytes(), 2)
    assert ok.shape == (2, 3) and ok.dtype == np.float32
    with pytest.raises(EmbedderError):
        ray_executor.decode(spec, np.arange(8, dtype=np.float32).tobytes(), 2)


def test_actors_reserve_the_gpus_the_spec_asks_for() -> None:
    cpu = ModelSpec(id="c", provider="hashing", model="c", dimensions=3)
    assert ray_executor.actor_resources(cpu) == {"num_cpus": 1}
    half = ModelSpec(id="g", provider="local", model="pkg:paraphrase-MiniLM-L3-v2", dimensions=384, gpus=0.5)
    assert ray_executor.actor_resources(half) == {"num_cpus": 1, "num_gpus": 0.5}
    assert ModelSpec.from_dict(half.to_dict()) == half  # stored and read back with the field
    with pytest.raises(BadRequest, match="gpus"):
        ModelSpec(id="n", provider="hashing", model="n", dimensions=3, gpus=-1)


PROBE = r"""
import contextlib, io, json, sys
from switchyard.proxy.cli import build_parser
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    build_parser().parse_args(sys.argv[1:])
print(json.dumps("ray" in sys.modules))
"""

NO_RAY = r"""
import sys
sys.modules["ray"] = None  # as if the extra were not installed
from switchyard.proxy.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_cli_loads_ray_only_to_run_it_and_names_the_extra_when_missing() -> None:
    for argv in (["--help"], ["backfill", "--help"], ["backfill", "m1", "--executor", "ray"]):
        out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        assert json.loads(out.strip().splitlines()[-1]) is False, argv
    run = subprocess.run([sys.executable, "-c", NO_RAY, "backfill", "m1", "--executor", "ray",
                          "--url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert ray_executor.MISSING_RAY in run.stderr
