import datetime

from cdp.common.v1 import identifier_pb2 as _identifier_pb2
from cdp.profile.v1 import events_pb2 as _events_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProfileLookup(_message.Message):
    __slots__ = ("profile_id", "identifier")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifier: _identifier_pb2.Identifier
    def __init__(self, profile_id: _Optional[str] = ..., identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("profile_id", "identifier", "field_mask")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    FIELD_MASK_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifier: _identifier_pb2.Identifier
    field_mask: _field_mask_pb2.FieldMask
    def __init__(self, profile_id: _Optional[str] = ..., identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ..., field_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class Trait(_message.Message):
    __slots__ = ("name", "value_json", "updated_at", "event_id", "source_id", "source_kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    value_json: str
    updated_at: _timestamp_pb2.Timestamp
    event_id: str
    source_id: str
    source_kind: str
    def __init__(self, name: _Optional[str] = ..., value_json: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_id: _Optional[str] = ..., source_id: _Optional[str] = ..., source_kind: _Optional[str] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("profile_id", "identifiers", "traits", "event_count", "first_seen", "last_seen", "merged_profile_ids", "computed_json", "account_ids")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_JSON_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    traits: _containers.RepeatedCompositeFieldContainer[Trait]
    event_count: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    merged_profile_ids: _containers.RepeatedScalarFieldContainer[str]
    computed_json: str
    account_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profile_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ..., traits: _Optional[_Iterable[_Union[Trait, _Mapping]]] = ..., event_count: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., merged_profile_ids: _Optional[_Iterable[str]] = ..., computed_json: _Optional[str] = ..., account_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetProfileResponse(_message.Message):
    __slots__ = ("profile", "merged_profile_id")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    merged_profile_id: str
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ..., merged_profile_id: _Optional[str] = ...) -> None: ...

class BatchGetProfilesRequest(_message.Message):
    __slots__ = ("lookups", "field_mask")
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    FIELD_MASK_FIELD_NUMBER: _ClassVar[int]
    lookups: _containers.RepeatedCompositeFieldContainer[ProfileLookup]
    field_mask: _field_mask_pb2.FieldMask
    def __init__(self, lookups: _Optional[_Iterable[_Union[ProfileLookup, _Mapping]]] = ..., field_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class BatchGetResult(_message.Message):
    __slots__ = ("lookup", "found", "profile", "merged_profile_id")
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    lookup: ProfileLookup
    found: bool
    profile: Profile
    merged_profile_id: str
    def __init__(self, lookup: _Optional[_Union[ProfileLookup, _Mapping]] = ..., found: _Optional[bool] = ..., profile: _Optional[_Union[Profile, _Mapping]] = ..., merged_profile_id: _Optional[str] = ...) -> None: ...

class BatchGetProfilesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchGetResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchGetResult, _Mapping]]] = ...) -> None: ...

class TraitFilter(_message.Message):
    __slots__ = ("name", "equals_json", "exists", "contains", "starts_with", "number")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EQUALS_JSON_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    STARTS_WITH_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    name: str
    equals_json: str
    exists: bool
    contains: str
    starts_with: str
    number: NumberRange
    def __init__(self, name: _Optional[str] = ..., equals_json: _Optional[str] = ..., exists: _Optional[bool] = ..., contains: _Optional[str] = ..., starts_with: _Optional[str] = ..., number: _Optional[_Union[NumberRange, _Mapping]] = ...) -> None: ...

class NumberRange(_message.Message):
    __slots__ = ("gt", "gte", "lt", "lte")
    GT_FIELD_NUMBER: _ClassVar[int]
    GTE_FIELD_NUMBER: _ClassVar[int]
    LT_FIELD_NUMBER: _ClassVar[int]
    LTE_FIELD_NUMBER: _ClassVar[int]
    gt: float
    gte: float
    lt: float
    lte: float
    def __init__(self, gt: _Optional[float] = ..., gte: _Optional[float] = ..., lt: _Optional[float] = ..., lte: _Optional[float] = ...) -> None: ...

class SearchProfilesRequest(_message.Message):
    __slots__ = ("filters", "page_size", "page_token", "field_mask")
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FIELD_MASK_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[TraitFilter]
    page_size: int
    page_token: str
    field_mask: _field_mask_pb2.FieldMask
    def __init__(self, filters: _Optional[_Iterable[_Union[TraitFilter, _Mapping]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., field_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class SearchProfilesResponse(_message.Message):
    __slots__ = ("profiles", "next_page_token")
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[Profile]
    next_page_token: str
    def __init__(self, profiles: _Optional[_Iterable[_Union[Profile, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetTimelineRequest(_message.Message):
    __slots__ = ("profile_id", "identifier", "kinds", "event_names", "since", "until", "page_size", "page_token")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAMES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifier: _identifier_pb2.Identifier
    kinds: _containers.RepeatedScalarFieldContainer[str]
    event_names: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, profile_id: _Optional[str] = ..., identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ..., kinds: _Optional[_Iterable[str]] = ..., event_names: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TimelineEvent(_message.Message):
    __slots__ = ("event_id", "kind", "event", "source_id", "source_kind", "channel", "properties_json", "traits_json", "context_json", "occurred_at", "received_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KIND_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_JSON_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: str
    event: str
    source_id: str
    source_kind: str
    channel: str
    properties_json: str
    traits_json: str
    context_json: str
    occurred_at: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[str] = ..., event: _Optional[str] = ..., source_id: _Optional[str] = ..., source_kind: _Optional[str] = ..., channel: _Optional[str] = ..., properties_json: _Optional[str] = ..., traits_json: _Optional[str] = ..., context_json: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTimelineResponse(_message.Message):
    __slots__ = ("profile_id", "merged_profile_id", "events", "next_page_token")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    merged_profile_id: str
    events: _containers.RepeatedCompositeFieldContainer[TimelineEvent]
    next_page_token: str
    def __init__(self, profile_id: _Optional[str] = ..., merged_profile_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[TimelineEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportProfilesRequest(_message.Message):
    __slots__ = ("field_mask",)
    FIELD_MASK_FIELD_NUMBER: _ClassVar[int]
    field_mask: _field_mask_pb2.FieldMask
    def __init__(self, field_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AccountUser(_message.Message):
    __slots__ = ("profile_id", "first_linked_at", "last_linked_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINKED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_LINKED_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    first_linked_at: _timestamp_pb2.Timestamp
    last_linked_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., first_linked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_linked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "traits", "first_seen", "last_seen", "user_count", "revenue_total", "order_count", "last_activity_at")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    REVENUE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ORDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    traits: _containers.RepeatedCompositeFieldContainer[Trait]
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    user_count: int
    revenue_total: float
    order_count: int
    last_activity_at: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., traits: _Optional[_Iterable[_Union[Trait, _Mapping]]] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_count: _Optional[int] = ..., revenue_total: _Optional[float] = ..., order_count: _Optional[int] = ..., last_activity_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account", "users", "next_page_token")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account: Account
    users: _containers.RepeatedCompositeFieldContainer[AccountUser]
    next_page_token: str
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., users: _Optional[_Iterable[_Union[AccountUser, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamProfileChangesRequest(_message.Message):
    __slots__ = ("profile_ids", "from_now", "from_sequence")
    PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    FROM_NOW_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    profile_ids: _containers.RepeatedScalarFieldContainer[str]
    from_now: bool
    from_sequence: int
    def __init__(self, profile_ids: _Optional[_Iterable[str]] = ..., from_now: _Optional[bool] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class ProfileChange(_message.Message):
    __slots__ = ("sequence", "event_id", "recorded_at", "change")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    event_id: str
    recorded_at: _timestamp_pb2.Timestamp
    change: _events_pb2.ProfileChanged
    def __init__(self, sequence: _Optional[int] = ..., event_id: _Optional[str] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., change: _Optional[_Union[_events_pb2.ProfileChanged, _Mapping]] = ...) -> None: ...

class GetPersonDataRequest(_message.Message):
    __slots__ = ("profile_id", "identifier")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifier: _identifier_pb2.Identifier
    def __init__(self, profile_id: _Optional[str] = ..., identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ...) -> None: ...

class AccountMembership(_message.Message):
    __slots__ = ("account_id", "first_linked_at", "last_linked_at")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINKED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_LINKED_AT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    first_linked_at: _timestamp_pb2.Timestamp
    last_linked_at: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., first_linked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_linked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("profile_id", "merged_profile_ids", "identifiers", "traits", "computed_json", "accounts", "event_count", "first_seen", "last_seen", "generated_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_JSON_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    merged_profile_ids: _containers.RepeatedScalarFieldContainer[str]
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    traits: _containers.RepeatedCompositeFieldContainer[Trait]
    computed_json: str
    accounts: _containers.RepeatedCompositeFieldContainer[AccountMembership]
    event_count: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    generated_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., merged_profile_ids: _Optional[_Iterable[str]] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ..., traits: _Optional[_Iterable[_Union[Trait, _Mapping]]] = ..., computed_json: _Optional[str] = ..., accounts: _Optional[_Iterable[_Union[AccountMembership, _Mapping]]] = ..., event_count: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PersonDataPart(_message.Message):
    __slots__ = ("person", "events")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    person: Person
    events: _containers.RepeatedCompositeFieldContainer[TimelineEvent]
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ..., events: _Optional[_Iterable[_Union[TimelineEvent, _Mapping]]] = ...) -> None: ...
