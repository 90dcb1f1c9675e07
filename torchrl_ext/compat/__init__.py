"""Every contact with private API of a dependency lives here, one module per dependency.

Code elsewhere in the package uses only the public names these modules
export. Each module documents the private names and behaviours it relies on,
and ``tests/compat/`` holds a contract test per module that fails with a
clear message when an upgrade of the dependency changes them.

Modules are imported on use (``from torchrl_ext.compat.torchrl_samplers import
SamplerBase``), so importing this package loads no dependency.
"""

from __future__ import annotations

__all__: list[str] = []
