"""Collection config updates (``PATCH /collections/{c}``, gRPC ``Collections/Update``) reflected
in the collection info as Qdrant reports them: HNSW and optimizer diffs merged field by field,
quantization replaced or disabled, collection params, per-vector HNSW / quantization / on-disk;
an update naming an unknown vector changes nothing. Tuning set at create time is reported too,
and everything survives a restart of a persistent server. On every engine, REST and gRPC.
"""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from embedded_layout_fixtures import Target, clients, edge_server, local_server, prefix, target  # noqa: F401

from switchyard.proxy.embedded.server import BackgroundUpstream


def _create(client, name: str) -> None:
    client.create_collection(
        name,
        vectors_config={"a": models.VectorParams(size=4, distance=models.Distance.COSINE),
                        "b": models.VectorParams(size=2, distance=models.Distance.DOT)},
        hnsw_config=models.HnswConfigDiff(m=24, ef_construct=90),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=5000))


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_update_is_reported(target: Target, clients, prefix: str, proto: str) -> None:
    rest, grpc = clients
    client = grpc if proto == "grpc" else rest
    name = f"{prefix}cu"
    _create(rest, name)
    cfg = rest.get_collection(name).config
    assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct) == (24, 90)
    assert cfg.optimizer_config.indexing_threshold == 5000
    assert cfg.quantization_config is None

    assert client.update_collection(
        name,
        hnsw_config=models.HnswConfigDiff(m=32),
        optimizers_config=models.OptimizersConfigDiff(deleted_threshold=0.3),
        quantization_config=models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)),
        collection_params=models.CollectionParamsDiff(on_disk_payload=True),
        vectors_config={"a": models.VectorParamsDiff(on_disk=True, hnsw_config=models.HnswConfigDiff(m=8))},
    )
    info = client.get_collection(name)
    cfg = info.config
    assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct) == (32, 90)  # merged field by field
    assert cfg.optimizer_config.indexing_threshold == 5000 and cfg.optimizer_config.deleted_threshold == 0.3
    assert isinstance(cfg.quantization_config, models.ScalarQuantization)
    assert cfg.quantization_config.scalar.type == models.ScalarType.INT8
    assert cfg.params.on_disk_payload is True
    a, b = cfg.params.vectors["a"], cfg.params.vectors["b"]
    assert a.on_disk is True and a.hnsw_config.m == 8 and (a.size, a.distance) == (4, models.Distance.COSINE)
    assert not b.on_disk and b.hnsw_config is None

    client.update_collection(name, quantization_config=models.Disabled.DISABLED)
    assert rest.get_collection(name).config.quantization_config is None

    # an unknown vector name: refused, and nothing of the same update applied
    with pytest.raises(Exception) as err:
        client.update_collection(name, hnsw_config=models.HnswConfigDiff(m=4),
                                 vectors_config={"nope": models.VectorParamsDiff(on_disk=True)})
    assert "nope" in str(err.value)
    assert rest.get_collection(name).config.hnsw_config.m == 32


def test_update_missing_collection(target: Target, clients, prefix: str) -> None:
    rest, _ = clients
    with pytest.raises(UnexpectedResponse) as err:
        rest.update_collection(f"{prefix}missing", hnsw_config=models.HnswConfigDiff(m=8))
    assert err.value.status_code == 404


@pytest.mark.embedded_only
@pytest.mark.parametrize("engine", ["local", "edge"])
def test_config_survives_restart(tmp_path, engine: str) -> None:
    from switchyard.proxy.embedded.engines import edge_available

    if engine == "edge" and not edge_available():
        pytest.skip("qdrant-edge-py is not installed here")
    server = BackgroundUpstream(str(tmp_path / "data"), engine=engine)
    server.start()
    try:
        client = QdrantClient(url=server.rest_url, check_compatibility=False)
        _create(client, "c")
        client.update_collection("c", hnsw_config=models.HnswConfigDiff(m=40),
                                 vectors_config={"b": models.VectorParamsDiff(on_disk=True)})
        client.create_payload_index("c", "k", models.PayloadSchemaType.KEYWORD)
        client.close()
    finally:
        server.stop()
    server = BackgroundUpstream(str(tmp_path / "data"), engine=engine)
    server.start()
    try:
        client = QdrantClient(url=server.rest_url, check_compatibility=False)
        info = client.get_collection("c")
        assert (info.config.hnsw_config.m, info.config.hnsw_config.ef_construct) == (40, 90)
        assert info.config.optimizer_config.indexing_threshold == 5000
        assert info.config.params.vectors["b"].on_disk is True
        assert set(info.payload_schema) == {"k"}
        client.close()
    finally:
        server.stop()
