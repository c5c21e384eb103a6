from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Reply(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _struct_pb2.Struct
    def __init__(self, result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class MigrationRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PlanRequest(_message.Message):
    __slots__ = ("logical", "to_model", "target", "doc_key", "text_field", "copy_vectors", "text_fetcher", "throttle", "dry_run", "mirror", "lookup", "kind", "options")
    LOGICAL_FIELD_NUMBER: _ClassVar[int]
    TO_MODEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DOC_KEY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_FIELD_NUMBER: _ClassVar[int]
    COPY_VECTORS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FETCHER_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    MIRROR_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    logical: str
    to_model: str
    target: str
    doc_key: str
    text_field: str
    copy_vectors: bool
    text_fetcher: str
    throttle: float
    dry_run: bool
    mirror: str
    lookup: str
    kind: str
    options: _struct_pb2.Struct
    def __init__(self, logical: _Optional[str] = ..., to_model: _Optional[str] = ..., target: _Optional[str] = ..., doc_key: _Optional[str] = ..., text_field: _Optional[str] = ..., copy_vectors: _Optional[bool] = ..., text_fetcher: _Optional[str] = ..., throttle: _Optional[float] = ..., dry_run: _Optional[bool] = ..., mirror: _Optional[str] = ..., lookup: _Optional[str] = ..., kind: _Optional[str] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class TransitionRequest(_message.Message):
    __slots__ = ("id", "name", "expected_rev", "require_eval", "max_age")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REV_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_EVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    expected_rev: int
    require_eval: bool
    max_age: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., expected_rev: _Optional[int] = ..., require_eval: _Optional[bool] = ..., max_age: _Optional[float] = ...) -> None: ...

class ReadModeRequest(_message.Message):
    __slots__ = ("id", "mode", "expected_rev")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REV_FIELD_NUMBER: _ClassVar[int]
    id: str
    mode: str
    expected_rev: int
    def __init__(self, id: _Optional[str] = ..., mode: _Optional[str] = ..., expected_rev: _Optional[int] = ...) -> None: ...

class ThrottleRequest(_message.Message):
    __slots__ = ("id", "points_per_second", "unthrottled")
    ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    UNTHROTTLED_FIELD_NUMBER: _ClassVar[int]
    id: str
    points_per_second: float
    unthrottled: bool
    def __init__(self, id: _Optional[str] = ..., points_per_second: _Optional[float] = ..., unthrottled: _Optional[bool] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("id", "repair", "wait")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    id: str
    repair: bool
    wait: bool
    def __init__(self, id: _Optional[str] = ..., repair: _Optional[bool] = ..., wait: _Optional[bool] = ...) -> None: ...

class CleanupRequest(_message.Message):
    __slots__ = ("id", "yes")
    ID_FIELD_NUMBER: _ClassVar[int]
    YES_FIELD_NUMBER: _ClassVar[int]
    id: str
    yes: bool
    def __init__(self, id: _Optional[str] = ..., yes: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("id", "interval_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    interval_seconds: float
    def __init__(self, id: _Optional[str] = ..., interval_seconds: _Optional[float] = ...) -> None: ...
