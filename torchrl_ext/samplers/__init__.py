"""TorchRL ``Sampler`` implementations."""

__all__: list[str] = []
