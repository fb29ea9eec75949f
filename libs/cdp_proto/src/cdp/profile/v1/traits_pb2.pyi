import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApplyTraitDefinitionsRequest(_message.Message):
    __slots__ = ("yaml", "dry_run")
    YAML_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    dry_run: bool
    def __init__(self, yaml: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ApplyTraitDefinitionsResponse(_message.Message):
    __slots__ = ("results", "dry_run")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AppliedTraitDefinition]
    dry_run: bool
    def __init__(self, results: _Optional[_Iterable[_Union[AppliedTraitDefinition, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class AppliedTraitDefinition(_message.Message):
    __slots__ = ("outcome", "definition")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    definition: TraitDefinition
    def __init__(self, outcome: _Optional[str] = ..., definition: _Optional[_Union[TraitDefinition, _Mapping]] = ...) -> None: ...

class TraitDefinition(_message.Message):
    __slots__ = ("name", "description", "aggregation", "property", "window", "event_json", "definition_json", "version", "created_at", "updated_at", "backfill")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    EVENT_JSON_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    aggregation: str
    property: str
    window: str
    event_json: str
    definition_json: str
    version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    backfill: TraitBackfill
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., aggregation: _Optional[str] = ..., property: _Optional[str] = ..., window: _Optional[str] = ..., event_json: _Optional[str] = ..., definition_json: _Optional[str] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., backfill: _Optional[_Union[TraitBackfill, _Mapping]] = ...) -> None: ...

class TraitBackfill(_message.Message):
    __slots__ = ("done", "profiles_done", "profiles_total", "finished_at")
    DONE_FIELD_NUMBER: _ClassVar[int]
    PROFILES_DONE_FIELD_NUMBER: _ClassVar[int]
    PROFILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    done: bool
    profiles_done: int
    profiles_total: int
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, done: _Optional[bool] = ..., profiles_done: _Optional[int] = ..., profiles_total: _Optional[int] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListTraitDefinitionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTraitDefinitionsResponse(_message.Message):
    __slots__ = ("definitions",)
    DEFINITIONS_FIELD_NUMBER: _ClassVar[int]
    definitions: _containers.RepeatedCompositeFieldContainer[TraitDefinition]
    def __init__(self, definitions: _Optional[_Iterable[_Union[TraitDefinition, _Mapping]]] = ...) -> None: ...

class DeleteTraitDefinitionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteTraitDefinitionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
