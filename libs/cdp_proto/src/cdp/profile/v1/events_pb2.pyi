from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ProfileChanged(_message.Message):
    __slots__ = ("profile_id", "changed_traits", "event_count", "event_id", "linked_account_ids")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGED_TRAITS_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    LINKED_ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    changed_traits: _containers.RepeatedScalarFieldContainer[str]
    event_count: int
    event_id: str
    linked_account_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profile_id: _Optional[str] = ..., changed_traits: _Optional[_Iterable[str]] = ..., event_count: _Optional[int] = ..., event_id: _Optional[str] = ..., linked_account_ids: _Optional[_Iterable[str]] = ...) -> None: ...
