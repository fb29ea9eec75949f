import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartReplayRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetReplayStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplayStatus(_message.Message):
    __slots__ = ("state", "started_at", "finished_at", "applied", "pending", "error", "paused_seconds")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PAUSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    state: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    applied: int
    pending: int
    error: str
    paused_seconds: float
    def __init__(self, state: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., applied: _Optional[int] = ..., pending: _Optional[int] = ..., error: _Optional[str] = ..., paused_seconds: _Optional[float] = ...) -> None: ...
