from cdp.common.v1 import identifier_pb2 as _identifier_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProfileChanged(_message.Message):
    __slots__ = ("profile_id", "changed_traits", "event_count", "event_id", "linked_account_ids", "traits_json", "computed_json", "revision", "identifiers", "event_ids")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGED_TRAITS_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    LINKED_ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    changed_traits: _containers.RepeatedScalarFieldContainer[str]
    event_count: int
    event_id: str
    linked_account_ids: _containers.RepeatedScalarFieldContainer[str]
    traits_json: bytes
    computed_json: bytes
    revision: int
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profile_id: _Optional[str] = ..., changed_traits: _Optional[_Iterable[str]] = ..., event_count: _Optional[int] = ..., event_id: _Optional[str] = ..., linked_account_ids: _Optional[_Iterable[str]] = ..., traits_json: _Optional[bytes] = ..., computed_json: _Optional[bytes] = ..., revision: _Optional[int] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ..., event_ids: _Optional[_Iterable[str]] = ...) -> None: ...
