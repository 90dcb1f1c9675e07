"""TorchRL ``Sampler`` implementations."""

from .event_slice import EventSliceSampler

__all__: list[str] = ["EventSliceSampler"]
