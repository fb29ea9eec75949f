import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from cdp.segment.v1 import definition_pb2 as _definition_pb2
from cdp.segment.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentInfo(_message.Message):
    __slots__ = ("segment_id", "version", "definition", "predefined", "created_at", "updated_at", "member_count", "yaml", "backfill_done")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    PREDEFINED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_DONE_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    version: int
    definition: _definition_pb2.Definition
    predefined: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    member_count: int
    yaml: str
    backfill_done: bool
    def __init__(self, segment_id: _Optional[str] = ..., version: _Optional[int] = ..., definition: _Optional[_Union[_definition_pb2.Definition, _Mapping]] = ..., predefined: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., member_count: _Optional[int] = ..., yaml: _Optional[str] = ..., backfill_done: _Optional[bool] = ...) -> None: ...

class CreateSegmentRequest(_message.Message):
    __slots__ = ("definition",)
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    definition: _definition_pb2.Definition
    def __init__(self, definition: _Optional[_Union[_definition_pb2.Definition, _Mapping]] = ...) -> None: ...

class UpdateSegmentRequest(_message.Message):
    __slots__ = ("definition", "expected_version")
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    definition: _definition_pb2.Definition
    expected_version: int
    def __init__(self, definition: _Optional[_Union[_definition_pb2.Definition, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteSegmentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSegmentResponse(_message.Message):
    __slots__ = ("members_exited",)
    MEMBERS_EXITED_FIELD_NUMBER: _ClassVar[int]
    members_exited: int
    def __init__(self, members_exited: _Optional[int] = ...) -> None: ...

class GetSegmentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSegmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSegmentsResponse(_message.Message):
    __slots__ = ("segments",)
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentInfo]
    def __init__(self, segments: _Optional[_Iterable[_Union[SegmentInfo, _Mapping]]] = ...) -> None: ...

class ApplySegmentsRequest(_message.Message):
    __slots__ = ("yaml", "dry_run")
    YAML_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    dry_run: bool
    def __init__(self, yaml: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ApplySegmentsResponse(_message.Message):
    __slots__ = ("results", "dry_run")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AppliedSegment]
    dry_run: bool
    def __init__(self, results: _Optional[_Iterable[_Union[AppliedSegment, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class AppliedSegment(_message.Message):
    __slots__ = ("outcome", "segment")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    segment: SegmentInfo
    def __init__(self, outcome: _Optional[str] = ..., segment: _Optional[_Union[SegmentInfo, _Mapping]] = ...) -> None: ...

class PreviewRequest(_message.Message):
    __slots__ = ("definition", "yaml", "sample_size")
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    definition: _definition_pb2.Definition
    yaml: str
    sample_size: int
    def __init__(self, definition: _Optional[_Union[_definition_pb2.Definition, _Mapping]] = ..., yaml: _Optional[str] = ..., sample_size: _Optional[int] = ...) -> None: ...

class PreviewResponse(_message.Message):
    __slots__ = ("count", "sample_profile_ids", "profiles_total")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    PROFILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    count: int
    sample_profile_ids: _containers.RepeatedScalarFieldContainer[str]
    profiles_total: int
    def __init__(self, count: _Optional[int] = ..., sample_profile_ids: _Optional[_Iterable[str]] = ..., profiles_total: _Optional[int] = ...) -> None: ...

class IsMemberRequest(_message.Message):
    __slots__ = ("name", "profile_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile_id: str
    def __init__(self, name: _Optional[str] = ..., profile_id: _Optional[str] = ...) -> None: ...

class IsMemberResponse(_message.Message):
    __slots__ = ("member", "since")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    member: bool
    since: _timestamp_pb2.Timestamp
    def __init__(self, member: _Optional[bool] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("profile_id", "since")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ("name", "page_size", "page_token", "exclude_suppressed_on")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SUPPRESSED_ON_FIELD_NUMBER: _ClassVar[int]
    name: str
    page_size: int
    page_token: str
    exclude_suppressed_on: str
    def __init__(self, name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., exclude_suppressed_on: _Optional[str] = ...) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members", "next_page_token", "total")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    next_page_token: str
    total: int
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class ExportMembersRequest(_message.Message):
    __slots__ = ("name", "exclude_suppressed_on")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SUPPRESSED_ON_FIELD_NUMBER: _ClassVar[int]
    name: str
    exclude_suppressed_on: str
    def __init__(self, name: _Optional[str] = ..., exclude_suppressed_on: _Optional[str] = ...) -> None: ...

class StreamMembershipChangesRequest(_message.Message):
    __slots__ = ("names", "from_sequence")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    from_sequence: int
    def __init__(self, names: _Optional[_Iterable[str]] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class MembershipChange(_message.Message):
    __slots__ = ("sequence", "entered", "exited")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    entered: _events_pb2.SegmentEntered
    exited: _events_pb2.SegmentExited
    def __init__(self, sequence: _Optional[int] = ..., entered: _Optional[_Union[_events_pb2.SegmentEntered, _Mapping]] = ..., exited: _Optional[_Union[_events_pb2.SegmentExited, _Mapping]] = ...) -> None: ...

class CheckSuppressionRequest(_message.Message):
    __slots__ = ("profile_id", "channel")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    channel: str
    def __init__(self, profile_id: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class CheckSuppressionResponse(_message.Message):
    __slots__ = ("suppressed", "segments")
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    suppressed: bool
    segments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, suppressed: _Optional[bool] = ..., segments: _Optional[_Iterable[str]] = ...) -> None: ...

class AuditSegmentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AuditSegmentResponse(_message.Message):
    __slots__ = ("stored_members", "evaluated_members", "only_stored", "only_evaluated")
    STORED_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ONLY_STORED_FIELD_NUMBER: _ClassVar[int]
    ONLY_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    stored_members: int
    evaluated_members: int
    only_stored: _containers.RepeatedScalarFieldContainer[str]
    only_evaluated: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stored_members: _Optional[int] = ..., evaluated_members: _Optional[int] = ..., only_stored: _Optional[_Iterable[str]] = ..., only_evaluated: _Optional[_Iterable[str]] = ...) -> None: ...
