import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailedEvent(_message.Message):
    __slots__ = ("id", "kind", "consumer", "stream", "stream_seq", "subject", "event_id", "source_id", "reason", "failed_at", "attempts", "replayed_at", "replay_result", "size_bytes", "content_type")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQ_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLAY_RESULT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: str
    consumer: str
    stream: str
    stream_seq: int
    subject: str
    event_id: str
    source_id: str
    reason: str
    failed_at: _timestamp_pb2.Timestamp
    attempts: int
    replayed_at: _timestamp_pb2.Timestamp
    replay_result: str
    size_bytes: int
    content_type: str
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[str] = ..., consumer: _Optional[str] = ..., stream: _Optional[str] = ..., stream_seq: _Optional[int] = ..., subject: _Optional[str] = ..., event_id: _Optional[str] = ..., source_id: _Optional[str] = ..., reason: _Optional[str] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., replayed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replay_result: _Optional[str] = ..., size_bytes: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class ListFailedEventsRequest(_message.Message):
    __slots__ = ("include_replayed", "kind", "consumer", "page_size", "before_id")
    INCLUDE_REPLAYED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    include_replayed: bool
    kind: str
    consumer: str
    page_size: int
    before_id: int
    def __init__(self, include_replayed: _Optional[bool] = ..., kind: _Optional[str] = ..., consumer: _Optional[str] = ..., page_size: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class ListFailedEventsResponse(_message.Message):
    __slots__ = ("events", "pending_total")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    PENDING_TOTAL_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FailedEvent]
    pending_total: int
    def __init__(self, events: _Optional[_Iterable[_Union[FailedEvent, _Mapping]]] = ..., pending_total: _Optional[int] = ...) -> None: ...

class GetFailedEventRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class GetFailedEventResponse(_message.Message):
    __slots__ = ("event", "data", "data_text")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_TEXT_FIELD_NUMBER: _ClassVar[int]
    event: FailedEvent
    data: bytes
    data_text: str
    def __init__(self, event: _Optional[_Union[FailedEvent, _Mapping]] = ..., data: _Optional[bytes] = ..., data_text: _Optional[str] = ...) -> None: ...

class ReplayFailedEventsRequest(_message.Message):
    __slots__ = ("ids", "all")
    IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    all: bool
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., all: _Optional[bool] = ...) -> None: ...

class ReplayResult(_message.Message):
    __slots__ = ("id", "ok", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    ok: bool
    detail: str
    def __init__(self, id: _Optional[int] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class ReplayFailedEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReplayResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ReplayResult, _Mapping]]] = ...) -> None: ...
