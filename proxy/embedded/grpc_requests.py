"""Pure translations of ``qdrant.Points`` requests into ``QdrantLocal`` keyword arguments.

Conversions use qdrant-client's ``GrpcToRest`` / ``RestToGrpc``; these functions add only what
the converters leave to the server: Qdrant's defaults (retrieve and scroll return payloads unless
told otherwise, similarity reads do not; limit 10, group size 3, matrix sample 10 / limit 3) and
clear errors for missing required parts. A converter's ``ValueError`` on an unset oneof is turned
into ``INVALID_ARGUMENT`` by :func:`switchyard.proxy.embedded.grpc_service.rpc`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
from qdrant_client.grpc import points_pb2 as pb
from qdrant_client.http import models as rest

from switchyard.proxy.embedded import legacy
from switchyard.proxy.errors import BadRequest

#: ``FieldType`` (gRPC) → payload schema type (REST), for indexes created without params.
FIELD_TYPES: dict[int, rest.PayloadSchemaType] = {
    pb.FieldTypeKeyword: rest.PayloadSchemaType.KEYWORD,
    pb.FieldTypeInteger: rest.PayloadSchemaType.INTEGER,
    pb.FieldTypeFloat: rest.PayloadSchemaType.FLOAT,
    pb.FieldTypeGeo: rest.PayloadSchemaType.GEO,
    pb.FieldTypeText: rest.PayloadSchemaType.TEXT,
    pb.FieldTypeBool: rest.PayloadSchemaType.BOOL,
    pb.FieldTypeDatetime: rest.PayloadSchemaType.DATETIME,
    pb.FieldTypeUuid: rest.PayloadSchemaType.UUID,
}


def optional(message: Message, field: str, convert: Any, default: Any = None) -> Any:
    """``convert(message.field)`` when the field is present, else ``default``."""
    return convert(getattr(message, field)) if message.HasField(field) else default


def with_payload(message: Message, field: str, default: bool) -> rest.WithPayloadInterface:
    """The payload selector, ``default`` when absent or empty (no oneof chosen)."""
    if not message.HasField(field) or getattr(message, field).WhichOneof("selector_options") is None:
        return default
    return GrpcToRest.convert_with_payload_selector(getattr(message, field))


def with_vectors(message: Message, field: str = "with_vectors") -> rest.WithVector:
    """The vector selector, ``False`` when absent or empty."""
    if not message.HasField(field) or getattr(message, field).WhichOneof("selector_options") is None:
        return False
    return GrpcToRest.convert_with_vectors_selector(getattr(message, field))


def timeout_of(message: Message) -> int | None:
    """A request's ``timeout`` in seconds, when it set one (strict mode's ``max_timeout``)."""
    if "timeout" in message.DESCRIPTOR.fields_by_name and message.HasField("timeout"):
        return int(getattr(message, "timeout"))
    return None


def filter_of(message: Message, field: str = "filter") -> rest.Filter | None:
    return optional(message, field, GrpcToRest.convert_filter)


def selector(message: Message, field: str) -> rest.PointsSelector:
    """A required ``PointsSelector`` field; missing or empty is a bad request."""
    if not message.HasField(field):
        raise BadRequest(f"{field}: a points selector (ids or filter) is required")
    return GrpcToRest.convert_points_selector(getattr(message, field))


def query_kwargs(request: pb.QueryPoints) -> dict[str, Any]:
    """``QdrantLocal.query_points`` keyword arguments (without the collection) for ``QueryPoints``.

    Shares the REST front end's defaults through :func:`switchyard.proxy.embedded.legacy.query_kwargs`.
    """
    return legacy.query_kwargs(GrpcToRest.convert_query_points(request))


def query_groups_kwargs(request: pb.QueryPointGroups) -> dict[str, Any]:
    """``QdrantLocal.query_points_groups`` keyword arguments for ``QueryPointGroups``."""
    if not request.group_by:
        raise BadRequest("group_by: must not be empty")
    return {
        "group_by": request.group_by,
        "query": optional(request, "query", GrpcToRest.convert_query),
        "using": optional(request, "using", str),
        "prefetch": [GrpcToRest.convert_prefetch_query(p) for p in request.prefetch] or None,
        "query_filter": filter_of(request),
        "search_params": optional(request, "params", GrpcToRest.convert_search_params),
        "limit": request.limit if request.HasField("limit") else 10,
        "group_size": request.group_size if request.HasField("group_size") else 3,
        "with_payload": with_payload(request, "with_payload", False),
        "with_vectors": with_vectors(request),
        "score_threshold": optional(request, "score_threshold", float),
        "with_lookup": optional(request, "with_lookup", GrpcToRest.convert_with_lookup),
        "lookup_from": optional(request, "lookup_from", GrpcToRest.convert_lookup_location),
    }


def scroll_kwargs(request: pb.ScrollPoints) -> dict[str, Any]:
    """``QdrantLocal.scroll`` keyword arguments for ``ScrollPoints``."""
    return {
        "scroll_filter": filter_of(request),
        "limit": request.limit if request.HasField("limit") else 10,
        "order_by": optional(request, "order_by", GrpcToRest.convert_order_by),
        "offset": optional(request, "offset", GrpcToRest.convert_point_id),
        "with_payload": with_payload(request, "with_payload", True),
        "with_vectors": with_vectors(request),
    }


def index_schema(request: pb.CreateFieldIndexCollection) -> Any:
    """The REST field schema of a ``CreateFieldIndexCollection`` (params win over the type)."""
    if request.HasField("field_index_params"):
        return GrpcToRest.convert_payload_schema_params(request.field_index_params)
    if request.HasField("field_type"):
        if request.field_type not in FIELD_TYPES:
            raise BadRequest(f"field_type: unknown field type {request.field_type}")
        return FIELD_TYPES[request.field_type]
    raise BadRequest("field_type: an index needs a field type or index params")


def vector_name_config(request: pb.CreateVectorNameRequest) -> rest.VectorNameConfig:
    """The REST config of a ``CreateVectorNameRequest`` (dense or sparse)."""
    kind = request.WhichOneof("vector_config")
    if kind == "dense_config":
        cfg = request.dense_config
        return rest.DenseVectorNameConfig(
            dense=rest.DenseVectorConfig(
                size=cfg.size,
                distance=GrpcToRest.convert_distance(cfg.distance),
                multivector_config=optional(
                    cfg, "multivector_config", GrpcToRest.convert_multivector_config
                ),
                datatype=optional(cfg, "datatype", lambda d: GrpcToRest.convert_datatype(d).value),
            )
        )
    if kind == "sparse_config":
        sparse = request.sparse_config
        return rest.SparseVectorNameConfig(
            sparse=rest.SparseVectorConfig(
                modifier=optional(sparse, "modifier", GrpcToRest.convert_modifier),
                datatype=optional(
                    sparse, "datatype", lambda d: GrpcToRest.convert_datatype(d).value
                ),
            )
        )
    raise BadRequest("vector_config: dense_config or sparse_config is required")


def waited(request: Message) -> bool:
    """Whether a write asked to wait; Qdrant's gRPC default is not to."""
    return bool(getattr(request, "wait")) if request.HasField("wait") else False


def update_result(wait: bool, operation_id: int) -> pb.UpdateResult:
    """Qdrant's write result: ``Completed`` when the client waited, else ``Acknowledged``.

    The local engine has always applied the write by then; the status only mirrors the request.
    """
    status = pb.Completed if wait else pb.Acknowledged
    return pb.UpdateResult(operation_id=operation_id, status=status)


def record(point: rest.Record) -> pb.RetrievedPoint:
    """A retrieved point as gRPC; one read without payload has ``payload=None``, which the
    converter cannot take (Qdrant answers an empty payload map there)."""
    if point.payload is None:
        point = point.model_copy(update={"payload": {}})
    return RestToGrpc.convert_record(point)


def scored(points: list[rest.ScoredPoint]) -> list[pb.ScoredPoint]:
    return [RestToGrpc.convert_scored_point(p) for p in points]
