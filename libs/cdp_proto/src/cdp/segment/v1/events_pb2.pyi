import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentEntered(_message.Message):
    __slots__ = ("segment_id", "segment_name", "segment_version", "profile_id", "at", "reason", "event_id", "suppresses")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSES_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    segment_name: str
    segment_version: int
    profile_id: str
    at: _timestamp_pb2.Timestamp
    reason: str
    event_id: str
    suppresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, segment_id: _Optional[str] = ..., segment_name: _Optional[str] = ..., segment_version: _Optional[int] = ..., profile_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., event_id: _Optional[str] = ..., suppresses: _Optional[_Iterable[str]] = ...) -> None: ...

class SegmentExited(_message.Message):
    __slots__ = ("segment_id", "segment_name", "segment_version", "profile_id", "at", "reason", "event_id")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    segment_name: str
    segment_version: int
    profile_id: str
    at: _timestamp_pb2.Timestamp
    reason: str
    event_id: str
    def __init__(self, segment_id: _Optional[str] = ..., segment_name: _Optional[str] = ..., segment_version: _Optional[int] = ..., profile_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...
