import datetime

from cdp.common.v1 import identifier_pb2 as _identifier_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventCommon(_message.Message):
    __slots__ = ("message_id", "user_id", "anonymous_id", "context_json", "integrations_json", "timestamp", "sent_at", "identifiers")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    INTEGRATIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    user_id: str
    anonymous_id: str
    context_json: str
    integrations_json: str
    timestamp: _timestamp_pb2.Timestamp
    sent_at: _timestamp_pb2.Timestamp
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    def __init__(self, message_id: _Optional[str] = ..., user_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., context_json: _Optional[str] = ..., integrations_json: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ...) -> None: ...

class TrackRequest(_message.Message):
    __slots__ = ("common", "event", "properties_json")
    COMMON_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_JSON_FIELD_NUMBER: _ClassVar[int]
    common: EventCommon
    event: str
    properties_json: str
    def __init__(self, common: _Optional[_Union[EventCommon, _Mapping]] = ..., event: _Optional[str] = ..., properties_json: _Optional[str] = ...) -> None: ...

class TrackResponse(_message.Message):
    __slots__ = ("event_id", "received_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("common", "traits_json")
    COMMON_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    common: EventCommon
    traits_json: str
    def __init__(self, common: _Optional[_Union[EventCommon, _Mapping]] = ..., traits_json: _Optional[str] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("event_id", "received_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PageRequest(_message.Message):
    __slots__ = ("common", "name", "category", "properties_json")
    COMMON_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_JSON_FIELD_NUMBER: _ClassVar[int]
    common: EventCommon
    name: str
    category: str
    properties_json: str
    def __init__(self, common: _Optional[_Union[EventCommon, _Mapping]] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., properties_json: _Optional[str] = ...) -> None: ...

class PageResponse(_message.Message):
    __slots__ = ("event_id", "received_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScreenRequest(_message.Message):
    __slots__ = ("common", "name", "category", "properties_json")
    COMMON_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_JSON_FIELD_NUMBER: _ClassVar[int]
    common: EventCommon
    name: str
    category: str
    properties_json: str
    def __init__(self, common: _Optional[_Union[EventCommon, _Mapping]] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., properties_json: _Optional[str] = ...) -> None: ...

class ScreenResponse(_message.Message):
    __slots__ = ("event_id", "received_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GroupRequest(_message.Message):
    __slots__ = ("common", "group_id", "traits_json")
    COMMON_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    common: EventCommon
    group_id: str
    traits_json: str
    def __init__(self, common: _Optional[_Union[EventCommon, _Mapping]] = ..., group_id: _Optional[str] = ..., traits_json: _Optional[str] = ...) -> None: ...

class GroupResponse(_message.Message):
    __slots__ = ("event_id", "received_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AliasRequest(_message.Message):
    __slots__ = ("common", "previous_id")
    COMMON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ID_FIELD_NUMBER: _ClassVar[int]
    common: EventCommon
    previous_id: str
    def __init__(self, common: _Optional[_Union[EventCommon, _Mapping]] = ..., previous_id: _Optional[str] = ...) -> None: ...

class AliasResponse(_message.Message):
    __slots__ = ("event_id", "received_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Call(_message.Message):
    __slots__ = ("track", "identify", "page", "screen", "group", "alias")
    TRACK_FIELD_NUMBER: _ClassVar[int]
    IDENTIFY_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    SCREEN_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    track: TrackRequest
    identify: IdentifyRequest
    page: PageRequest
    screen: ScreenRequest
    group: GroupRequest
    alias: AliasRequest
    def __init__(self, track: _Optional[_Union[TrackRequest, _Mapping]] = ..., identify: _Optional[_Union[IdentifyRequest, _Mapping]] = ..., page: _Optional[_Union[PageRequest, _Mapping]] = ..., screen: _Optional[_Union[ScreenRequest, _Mapping]] = ..., group: _Optional[_Union[GroupRequest, _Mapping]] = ..., alias: _Optional[_Union[AliasRequest, _Mapping]] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("calls", "write_key")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    WRITE_KEY_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    write_key: str
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ..., write_key: _Optional[str] = ...) -> None: ...

class CallResult(_message.Message):
    __slots__ = ("index", "event_id", "error", "failed_event_id", "violations")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILED_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    error: str
    failed_event_id: int
    violations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., error: _Optional[str] = ..., failed_event_id: _Optional[int] = ..., violations: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("accepted", "rejected", "results", "received_at")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    results: _containers.RepeatedCompositeFieldContainer[CallResult]
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., results: _Optional[_Iterable[_Union[CallResult, _Mapping]]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ImportEventsRequest(_message.Message):
    __slots__ = ("write_key", "calls")
    WRITE_KEY_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    write_key: str
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, write_key: _Optional[str] = ..., calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class ImportEventsResponse(_message.Message):
    __slots__ = ("accepted", "rejected", "rejections")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[CallResult]
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[CallResult, _Mapping]]] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("source_id", "name", "kind", "enabled", "write_key_hint", "created_at", "accepted", "rejected", "rate_limit_per_s")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    WRITE_KEY_HINT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_S_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    name: str
    kind: str
    enabled: bool
    write_key_hint: str
    created_at: _timestamp_pb2.Timestamp
    accepted: int
    rejected: int
    rate_limit_per_s: float
    def __init__(self, source_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., enabled: _Optional[bool] = ..., write_key_hint: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., rate_limit_per_s: _Optional[float] = ...) -> None: ...

class CreateSourceRequest(_message.Message):
    __slots__ = ("name", "kind", "webhook_secret", "rate_limit_per_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    webhook_secret: str
    rate_limit_per_s: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., webhook_secret: _Optional[str] = ..., rate_limit_per_s: _Optional[float] = ...) -> None: ...

class CreateSourceResponse(_message.Message):
    __slots__ = ("source", "write_key")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    WRITE_KEY_FIELD_NUMBER: _ClassVar[int]
    source: Source
    write_key: str
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ..., write_key: _Optional[str] = ...) -> None: ...

class ListSourcesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSourcesResponse(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    def __init__(self, sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ...) -> None: ...

class RotateSourceKeyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RotateSourceKeyResponse(_message.Message):
    __slots__ = ("source", "write_key")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    WRITE_KEY_FIELD_NUMBER: _ClassVar[int]
    source: Source
    write_key: str
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ..., write_key: _Optional[str] = ...) -> None: ...

class DisableSourceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DisableSourceResponse(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: Source
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ...) -> None: ...

class EnableSourceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class EnableSourceResponse(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: Source
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ...) -> None: ...

class TrackingPlan(_message.Message):
    __slots__ = ("source_name", "mode", "events_json", "identify_traits_schema_json", "unplanned_events", "updated_at")
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    IDENTIFY_TRAITS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    UNPLANNED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    source_name: str
    mode: str
    events_json: str
    identify_traits_schema_json: str
    unplanned_events: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, source_name: _Optional[str] = ..., mode: _Optional[str] = ..., events_json: _Optional[str] = ..., identify_traits_schema_json: _Optional[str] = ..., unplanned_events: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ApplyTrackingPlanRequest(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: TrackingPlan
    def __init__(self, plan: _Optional[_Union[TrackingPlan, _Mapping]] = ...) -> None: ...

class ApplyTrackingPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: TrackingPlan
    def __init__(self, plan: _Optional[_Union[TrackingPlan, _Mapping]] = ...) -> None: ...

class GetTrackingPlanRequest(_message.Message):
    __slots__ = ("source_name",)
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    source_name: str
    def __init__(self, source_name: _Optional[str] = ...) -> None: ...

class GetTrackingPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: TrackingPlan
    def __init__(self, plan: _Optional[_Union[TrackingPlan, _Mapping]] = ...) -> None: ...

class ListViolationsRequest(_message.Message):
    __slots__ = ("source_name",)
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    source_name: str
    def __init__(self, source_name: _Optional[str] = ...) -> None: ...

class Violation(_message.Message):
    __slots__ = ("source_name", "event", "message", "action", "count", "last_seen")
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    source_name: str
    event: str
    message: str
    action: str
    count: int
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, source_name: _Optional[str] = ..., event: _Optional[str] = ..., message: _Optional[str] = ..., action: _Optional[str] = ..., count: _Optional[int] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListViolationsResponse(_message.Message):
    __slots__ = ("violations",)
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedCompositeFieldContainer[Violation]
    def __init__(self, violations: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ...) -> None: ...
