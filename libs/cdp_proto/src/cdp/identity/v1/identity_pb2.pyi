import datetime

from cdp.common.v1 import identifier_pb2 as _identifier_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResolveIdentifierRequest(_message.Message):
    __slots__ = ("identifier",)
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: _identifier_pb2.Identifier
    def __init__(self, identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ResolveIdentifierResponse(_message.Message):
    __slots__ = ("profile_id", "identifiers")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    def __init__(self, profile_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ...) -> None: ...

class ProfileRef(_message.Message):
    __slots__ = ("profile_id", "identifier")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifier: _identifier_pb2.Identifier
    def __init__(self, profile_id: _Optional[str] = ..., identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ...) -> None: ...

class GetIdentityGraphRequest(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: ProfileRef
    def __init__(self, profile: _Optional[_Union[ProfileRef, _Mapping]] = ...) -> None: ...

class GraphIdentifier(_message.Message):
    __slots__ = ("identifier", "first_event_id", "first_seq")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    FIRST_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    identifier: _identifier_pb2.Identifier
    first_event_id: str
    first_seq: int
    def __init__(self, identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ..., first_event_id: _Optional[str] = ..., first_seq: _Optional[int] = ...) -> None: ...

class Merge(_message.Message):
    __slots__ = ("merge_id", "survivor_profile_id", "merged_profile_id", "rule", "identifier", "event_id", "confidence", "survivor_reason", "details_json", "merged_at", "undone_by_split")
    MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_REASON_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    MERGED_AT_FIELD_NUMBER: _ClassVar[int]
    UNDONE_BY_SPLIT_FIELD_NUMBER: _ClassVar[int]
    merge_id: str
    survivor_profile_id: str
    merged_profile_id: str
    rule: str
    identifier: _identifier_pb2.Identifier
    event_id: str
    confidence: float
    survivor_reason: str
    details_json: str
    merged_at: _timestamp_pb2.Timestamp
    undone_by_split: str
    def __init__(self, merge_id: _Optional[str] = ..., survivor_profile_id: _Optional[str] = ..., merged_profile_id: _Optional[str] = ..., rule: _Optional[str] = ..., identifier: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ..., event_id: _Optional[str] = ..., confidence: _Optional[float] = ..., survivor_reason: _Optional[str] = ..., details_json: _Optional[str] = ..., merged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., undone_by_split: _Optional[str] = ...) -> None: ...

class IdentityGraph(_message.Message):
    __slots__ = ("profile_id", "identifiers", "merged_profile_ids", "merges", "event_count")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    MERGES_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[GraphIdentifier]
    merged_profile_ids: _containers.RepeatedScalarFieldContainer[str]
    merges: _containers.RepeatedCompositeFieldContainer[Merge]
    event_count: int
    def __init__(self, profile_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[GraphIdentifier, _Mapping]]] = ..., merged_profile_ids: _Optional[_Iterable[str]] = ..., merges: _Optional[_Iterable[_Union[Merge, _Mapping]]] = ..., event_count: _Optional[int] = ...) -> None: ...

class ListMergesRequest(_message.Message):
    __slots__ = ("profile", "page_size", "page_token")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profile: ProfileRef
    page_size: int
    page_token: str
    def __init__(self, profile: _Optional[_Union[ProfileRef, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMergesResponse(_message.Message):
    __slots__ = ("merges", "next_page_token")
    MERGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    merges: _containers.RepeatedCompositeFieldContainer[Merge]
    next_page_token: str
    def __init__(self, merges: _Optional[_Iterable[_Union[Merge, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SplitProfileRequest(_message.Message):
    __slots__ = ("profile", "identifiers", "reason")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    profile: ProfileRef
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    reason: str
    def __init__(self, profile: _Optional[_Union[ProfileRef, _Mapping]] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...

class SplitProfileResponse(_message.Message):
    __slots__ = ("split_id", "profiles", "events_rebuilt")
    SPLIT_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_REBUILT_FIELD_NUMBER: _ClassVar[int]
    split_id: str
    profiles: _containers.RepeatedCompositeFieldContainer[ProfileGraphEntry]
    events_rebuilt: int
    def __init__(self, split_id: _Optional[str] = ..., profiles: _Optional[_Iterable[_Union[ProfileGraphEntry, _Mapping]]] = ..., events_rebuilt: _Optional[int] = ...) -> None: ...

class ForgetProfileRequest(_message.Message):
    __slots__ = ("profile", "reason")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    profile: ProfileRef
    reason: str
    def __init__(self, profile: _Optional[_Union[ProfileRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ForgetProfileResponse(_message.Message):
    __slots__ = ("profile_ids", "identifiers_forgotten")
    PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    profile_ids: _containers.RepeatedScalarFieldContainer[str]
    identifiers_forgotten: int
    def __init__(self, profile_ids: _Optional[_Iterable[str]] = ..., identifiers_forgotten: _Optional[int] = ...) -> None: ...

class ExportGraphRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProfileGraphEntry(_message.Message):
    __slots__ = ("profile_id", "identifiers")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[_identifier_pb2.Identifier]
    def __init__(self, profile_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[_identifier_pb2.Identifier, _Mapping]]] = ...) -> None: ...

class GetRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ApplyRulesRequest(_message.Message):
    __slots__ = ("yaml", "dry_run")
    YAML_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    dry_run: bool
    def __init__(self, yaml: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class Rules(_message.Message):
    __slots__ = ("yaml", "version", "applied_at")
    YAML_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    version: int
    applied_at: _timestamp_pb2.Timestamp
    def __init__(self, yaml: _Optional[str] = ..., version: _Optional[int] = ..., applied_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListCandidatesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("profile_id", "other_profile_id", "probability", "weight", "details_json", "event_id", "found_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    OTHER_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    FOUND_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    other_profile_id: str
    probability: float
    weight: float
    details_json: str
    event_id: str
    found_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., other_profile_id: _Optional[str] = ..., probability: _Optional[float] = ..., weight: _Optional[float] = ..., details_json: _Optional[str] = ..., event_id: _Optional[str] = ..., found_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReviewCandidateRequest(_message.Message):
    __slots__ = ("profile_id", "other_profile_id", "accept", "reason")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    OTHER_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    other_profile_id: str
    accept: bool
    reason: str
    def __init__(self, profile_id: _Optional[str] = ..., other_profile_id: _Optional[str] = ..., accept: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ReviewCandidateResponse(_message.Message):
    __slots__ = ("status", "survivor_profile_id", "merged_profile_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    status: str
    survivor_profile_id: str
    merged_profile_id: str
    def __init__(self, status: _Optional[str] = ..., survivor_profile_id: _Optional[str] = ..., merged_profile_id: _Optional[str] = ...) -> None: ...

class EstimateMatchModelRequest(_message.Message):
    __slots__ = ("max_records", "apply")
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    APPLY_FIELD_NUMBER: _ClassVar[int]
    max_records: int
    apply: bool
    def __init__(self, max_records: _Optional[int] = ..., apply: _Optional[bool] = ...) -> None: ...

class EstimateMatchModelResponse(_message.Message):
    __slots__ = ("model_yaml", "records", "version")
    MODEL_YAML_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_yaml: str
    records: int
    version: int
    def __init__(self, model_yaml: _Optional[str] = ..., records: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class ListCandidatesResponse(_message.Message):
    __slots__ = ("candidates", "next_page_token")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    next_page_token: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
