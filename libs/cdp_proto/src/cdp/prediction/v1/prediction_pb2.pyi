import datetime

from cdp.prediction.v1 import events_pb2 as _events_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainModelRequest(_message.Message):
    __slots__ = ("cutoff", "horizon_days", "churn_days", "activate")
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    CHURN_DAYS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    cutoff: _timestamp_pb2.Timestamp
    horizon_days: int
    churn_days: int
    activate: bool
    def __init__(self, cutoff: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., horizon_days: _Optional[int] = ..., churn_days: _Optional[int] = ..., activate: _Optional[bool] = ...) -> None: ...

class TrainProgress(_message.Message):
    __slots__ = ("stage", "done", "total", "model")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done: int
    total: int
    model: ModelInfo
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ActivateModelRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "cutoff", "horizon_days", "churn_days", "features", "metrics_json", "importance_json", "active", "trained_at", "info_json")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    CHURN_DAYS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_JSON_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    TRAINED_AT_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    version: int
    cutoff: _timestamp_pb2.Timestamp
    horizon_days: int
    churn_days: int
    features: _containers.RepeatedScalarFieldContainer[str]
    metrics_json: str
    importance_json: str
    active: bool
    trained_at: _timestamp_pb2.Timestamp
    info_json: str
    def __init__(self, version: _Optional[int] = ..., cutoff: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., horizon_days: _Optional[int] = ..., churn_days: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ..., metrics_json: _Optional[str] = ..., importance_json: _Optional[str] = ..., active: _Optional[bool] = ..., trained_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., info_json: _Optional[str] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("profile_id", "explain_top", "as_of")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_TOP_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    explain_top: int
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., explain_top: _Optional[int] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("prediction", "explanations")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    prediction: _events_pb2.PredictionScored
    explanations: _containers.RepeatedCompositeFieldContainer[TargetExplanation]
    def __init__(self, prediction: _Optional[_Union[_events_pb2.PredictionScored, _Mapping]] = ..., explanations: _Optional[_Iterable[_Union[TargetExplanation, _Mapping]]] = ...) -> None: ...

class TargetExplanation(_message.Message):
    __slots__ = ("target", "contributions")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    target: str
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    def __init__(self, target: _Optional[str] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("feature", "value", "contribution")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    feature: str
    value: float
    contribution: float
    def __init__(self, feature: _Optional[str] = ..., value: _Optional[float] = ..., contribution: _Optional[float] = ...) -> None: ...

class ScoreProfilesRequest(_message.Message):
    __slots__ = ("as_of",)
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScoreProgress(_message.Message):
    __slots__ = ("done", "total", "model_version")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    model_version: int
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., model_version: _Optional[int] = ...) -> None: ...

class ExportPredictionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
