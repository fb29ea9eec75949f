import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionScored(_message.Message):
    __slots__ = ("profile_id", "model_version", "horizon_days", "purchase_probability", "churn_probability", "expected_purchases", "predicted_ltv", "ltv_percentile", "discount_affinity", "affinities", "as_of", "scored_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CHURN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PURCHASES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LTV_FIELD_NUMBER: _ClassVar[int]
    LTV_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    AFFINITIES_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    SCORED_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    model_version: int
    horizon_days: int
    purchase_probability: float
    churn_probability: float
    expected_purchases: float
    predicted_ltv: float
    ltv_percentile: float
    discount_affinity: float
    affinities: _containers.RepeatedCompositeFieldContainer[AttributeAffinity]
    as_of: _timestamp_pb2.Timestamp
    scored_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., model_version: _Optional[int] = ..., horizon_days: _Optional[int] = ..., purchase_probability: _Optional[float] = ..., churn_probability: _Optional[float] = ..., expected_purchases: _Optional[float] = ..., predicted_ltv: _Optional[float] = ..., ltv_percentile: _Optional[float] = ..., discount_affinity: _Optional[float] = ..., affinities: _Optional[_Iterable[_Union[AttributeAffinity, _Mapping]]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scored_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AttributeAffinity(_message.Message):
    __slots__ = ("attribute", "value", "score")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    value: str
    score: float
    def __init__(self, attribute: _Optional[str] = ..., value: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...
