"""TorchRL replay buffers saved on disk -> sharded datasets.

- :mod:`.layout`: ``rb.dumps(path)`` directories and memmap TensorDict
  directories read as data (sizes, dtypes and paths checked; pickles never loaded).
- :mod:`.importer`: :func:`import_torchrl_buffer`, episodes grouped by their id
  column or split on ``done``, compressed frame columns, resumable.

CLI: ``torchrl-ext import torchrl DIR --root R``.
"""

from .importer import EPISODE_KEYS, import_torchrl_buffer
from .layout import BufferColumns, read_buffer_dir

__all__ = ["EPISODE_KEYS", "BufferColumns", "import_torchrl_buffer", "read_buffer_dir"]
