from cdp.common.v1 import identifier_pb2 as _identifier_pb2
from cdp.ingest.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdentityResolved(_message.Message):
    __slots__ = ("event", "profile_id", "identifiers", "new_identifiers", "event_id", "dropped", "rebuilt_by")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    NEW_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    REBUILT_BY_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.EventCollected
    profile_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    new_identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    event_id: str
    dropped: _containers.RepeatedCompositeFieldContainer[DroppedIdentifier]
    rebuilt_by: str
    def __init__(self, event: _Optional[_Union[_events_pb2.EventCollected, _Mapping]] = ..., profile_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ..., new_identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ..., event_id: _Optional[str] = ..., dropped: _Optional[_Iterable[_Union[DroppedIdentifier, _Mapping]]] = ..., rebuilt_by: _Optional[str] = ...) -> None: ...

class DroppedIdentifier(_message.Message):
    __slots__ = ("identifier", "rule", "reason")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    identifier: _identifier_pb2.Identifier
    rule: str
    reason: str
    def __init__(self, identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ProfilesMerged(_message.Message):
    __slots__ = ("survivor_profile_id", "merged_profile_id", "rule", "identifier", "event_id", "confidence", "survivor_reason", "details_json")
    SURVIVOR_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_REASON_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    survivor_profile_id: str
    merged_profile_id: str
    rule: str
    identifier: _identifier_pb2.Identifier
    event_id: str
    confidence: float
    survivor_reason: str
    details_json: str
    def __init__(self, survivor_profile_id: _Optional[str] = ..., merged_profile_id: _Optional[str] = ..., rule: _Optional[str] = ..., identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ..., event_id: _Optional[str] = ..., confidence: _Optional[float] = ..., survivor_reason: _Optional[str] = ..., details_json: _Optional[str] = ...) -> None: ...

class ProfilesSplit(_message.Message):
    __slots__ = ("split_id", "rule", "reason", "removed_profile_ids", "profiles")
    SPLIT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REMOVED_PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    split_id: str
    rule: str
    reason: str
    removed_profile_ids: _containers.RepeatedScalarFieldContainer[str]
    profiles: _containers.RepeatedCompositeFieldContainer[ProfileIdentifiers]
    def __init__(self, split_id: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., removed_profile_ids: _Optional[_Iterable[str]] = ..., profiles: _Optional[_Iterable[_Union[ProfileIdentifiers, _Mapping]]] = ...) -> None: ...

class ProfileIdentifiers(_message.Message):
    __slots__ = ("profile_id", "identifiers")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    def __init__(self, profile_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ...) -> None: ...

class ProfileForgotten(_message.Message):
    __slots__ = ("profile_id", "profile_ids", "reason")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    profile_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, profile_id: _Optional[str] = ..., profile_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...
