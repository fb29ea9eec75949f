import datetime

from cdp.common.v1 import identifier_pb2 as _identifier_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventCollected(_message.Message):
    __slots__ = ("kind", "message_id", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "properties_json", "traits_json", "context_json", "integrations_json", "timestamp", "original_timestamp", "sent_at", "received_at", "source_id", "identifiers", "category", "violations", "source_kind")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ID_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_JSON_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    INTEGRATIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message_id: str
    user_id: str
    anonymous_id: str
    event: str
    name: str
    group_id: str
    previous_id: str
    properties_json: str
    traits_json: str
    context_json: str
    integrations_json: str
    timestamp: _timestamp_pb2.Timestamp
    original_timestamp: _timestamp_pb2.Timestamp
    sent_at: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    source_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    category: str
    violations: _containers.RepeatedScalarFieldContainer[str]
    source_kind: str
    def __init__(self, kind: _Optional[str] = ..., message_id: _Optional[str] = ..., user_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., event: _Optional[str] = ..., name: _Optional[str] = ..., group_id: _Optional[str] = ..., previous_id: _Optional[str] = ..., properties_json: _Optional[str] = ..., traits_json: _Optional[str] = ..., context_json: _Optional[str] = ..., integrations_json: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., original_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ..., category: _Optional[str] = ..., violations: _Optional[_Iterable[str]] = ..., source_kind: _Optional[str] = ...) -> None: ...
