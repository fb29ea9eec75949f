from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Definition(_message.Message):
    __slots__ = ("name", "description", "where", "suppresses")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSES_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    where: Node
    suppresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., where: _Optional[_Union[Node, _Mapping]] = ..., suppresses: _Optional[_Iterable[str]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("all", "any", "trait", "computed", "affinity", "event", "sequence", "reachable", "consent", "engaged", "device", "location", "near", "predicted", "segment", "account", "known", "product", "purchase_overdue")
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NOT_FIELD_NUMBER: _ClassVar[int]
    TRAIT_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    ENGAGED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    NEAR_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_OVERDUE_FIELD_NUMBER: _ClassVar[int]
    all: NodeList
    any: NodeList
    trait: TraitCondition
    computed: ComputedCondition
    affinity: AffinityCondition
    event: EventCondition
    sequence: SequenceCondition
    reachable: ChannelCondition
    consent: ConsentCondition
    engaged: EngagedCondition
    device: DeviceCondition
    location: LocationCondition
    near: NearCondition
    predicted: PredictedCondition
    segment: SegmentCondition
    account: AccountCondition
    known: KnownCondition
    product: ProductCondition
    purchase_overdue: OverdueCondition
    def __init__(self, all: _Optional[_Union[NodeList, _Mapping]] = ..., any: _Optional[_Union[NodeList, _Mapping]] = ..., trait: _Optional[_Union[TraitCondition, _Mapping]] = ..., computed: _Optional[_Union[ComputedCondition, _Mapping]] = ..., affinity: _Optional[_Union[AffinityCondition, _Mapping]] = ..., event: _Optional[_Union[EventCondition, _Mapping]] = ..., sequence: _Optional[_Union[SequenceCondition, _Mapping]] = ..., reachable: _Optional[_Union[ChannelCondition, _Mapping]] = ..., consent: _Optional[_Union[ConsentCondition, _Mapping]] = ..., engaged: _Optional[_Union[EngagedCondition, _Mapping]] = ..., device: _Optional[_Union[DeviceCondition, _Mapping]] = ..., location: _Optional[_Union[LocationCondition, _Mapping]] = ..., near: _Optional[_Union[NearCondition, _Mapping]] = ..., predicted: _Optional[_Union[PredictedCondition, _Mapping]] = ..., segment: _Optional[_Union[SegmentCondition, _Mapping]] = ..., account: _Optional[_Union[AccountCondition, _Mapping]] = ..., known: _Optional[_Union[KnownCondition, _Mapping]] = ..., product: _Optional[_Union[ProductCondition, _Mapping]] = ..., purchase_overdue: _Optional[_Union[OverdueCondition, _Mapping]] = ..., **kwargs) -> None: ...

class NodeList(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class TraitCondition(_message.Message):
    __slots__ = ("name", "type", "op", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    op: str
    value: _struct_pb2.Value
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class ComputedCondition(_message.Message):
    __slots__ = ("name", "op", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    op: str
    value: _struct_pb2.Value
    def __init__(self, name: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class AffinityCondition(_message.Message):
    __slots__ = ("dimension", "op", "value", "score")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    dimension: str
    op: str
    value: str
    score: float
    def __init__(self, dimension: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Window(_message.Message):
    __slots__ = ("last_days", "last_hours", "from_days_ago", "to_days_ago", "after", "before")
    LAST_DAYS_FIELD_NUMBER: _ClassVar[int]
    LAST_HOURS_FIELD_NUMBER: _ClassVar[int]
    FROM_DAYS_AGO_FIELD_NUMBER: _ClassVar[int]
    TO_DAYS_AGO_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    last_days: int
    last_hours: int
    from_days_ago: int
    to_days_ago: int
    after: str
    before: str
    def __init__(self, last_days: _Optional[int] = ..., last_hours: _Optional[int] = ..., from_days_ago: _Optional[int] = ..., to_days_ago: _Optional[int] = ..., after: _Optional[str] = ..., before: _Optional[str] = ...) -> None: ...

class PropertyFilter(_message.Message):
    __slots__ = ("property", "type", "op", "value")
    PROPERTY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    property: str
    type: str
    op: str
    value: _struct_pb2.Value
    def __init__(self, property: _Optional[str] = ..., type: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class Count(_message.Message):
    __slots__ = ("op", "value")
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    op: str
    value: int
    def __init__(self, op: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...

class EventCondition(_message.Message):
    __slots__ = ("name", "did_not", "where", "count", "window")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DID_NOT_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    did_not: bool
    where: _containers.RepeatedCompositeFieldContainer[PropertyFilter]
    count: Count
    window: Window
    def __init__(self, name: _Optional[str] = ..., did_not: _Optional[bool] = ..., where: _Optional[_Iterable[_Union[PropertyFilter, _Mapping]]] = ..., count: _Optional[_Union[Count, _Mapping]] = ..., window: _Optional[_Union[Window, _Mapping]] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("name", "where")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    name: str
    where: _containers.RepeatedCompositeFieldContainer[PropertyFilter]
    def __init__(self, name: _Optional[str] = ..., where: _Optional[_Iterable[_Union[PropertyFilter, _Mapping]]] = ...) -> None: ...

class SequenceCondition(_message.Message):
    __slots__ = ("steps", "within_hours", "window")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    WITHIN_HOURS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    within_hours: float
    window: Window
    def __init__(self, steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., within_hours: _Optional[float] = ..., window: _Optional[_Union[Window, _Mapping]] = ...) -> None: ...

class ChannelCondition(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class ConsentCondition(_message.Message):
    __slots__ = ("key", "state")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    key: str
    state: str
    def __init__(self, key: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class EngagedCondition(_message.Message):
    __slots__ = ("channel", "within_days")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    WITHIN_DAYS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    within_days: int
    def __init__(self, channel: _Optional[str] = ..., within_days: _Optional[int] = ...) -> None: ...

class DeviceCondition(_message.Message):
    __slots__ = ("field", "op", "value")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: str
    value: _struct_pb2.Value
    def __init__(self, field: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class LocationCondition(_message.Message):
    __slots__ = ("field", "op", "value")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: str
    value: _struct_pb2.Value
    def __init__(self, field: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class NearCondition(_message.Message):
    __slots__ = ("latitude", "longitude", "store", "km")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    KM_FIELD_NUMBER: _ClassVar[int]
    latitude: float
    longitude: float
    store: str
    km: float
    def __init__(self, latitude: _Optional[float] = ..., longitude: _Optional[float] = ..., store: _Optional[str] = ..., km: _Optional[float] = ...) -> None: ...

class PredictedCondition(_message.Message):
    __slots__ = ("name", "op", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    op: str
    value: _struct_pb2.Value
    def __init__(self, name: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class SegmentCondition(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AccountCondition(_message.Message):
    __slots__ = ("trait",)
    TRAIT_FIELD_NUMBER: _ClassVar[int]
    trait: TraitCondition
    def __init__(self, trait: _Optional[_Union[TraitCondition, _Mapping]] = ...) -> None: ...

class KnownCondition(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...

class ProductCondition(_message.Message):
    __slots__ = ("list", "field", "op", "value")
    LIST_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    list: str
    field: str
    op: str
    value: _struct_pb2.Value
    def __init__(self, list: _Optional[str] = ..., field: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class OverdueCondition(_message.Message):
    __slots__ = ("factor",)
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    factor: float
    def __init__(self, factor: _Optional[float] = ...) -> None: ...
