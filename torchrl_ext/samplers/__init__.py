"""TorchRL ``Sampler`` implementations."""

from .event_slice import EventSliceSampler
from .rolling_shards import EpochOrder, RollingShardSampler, shard_order

__all__: list[str] = ["EpochOrder", "EventSliceSampler", "RollingShardSampler", "shard_order"]
