"""Exports of a dataset (or a filtered :class:`~torchrl_ext.storages.EpisodeView`) as a new dataset.

Exports to other libraries' formats live with their project in :mod:`torchrl_ext.interop`
(:func:`torchrl_ext.interop.d3rlpy.to_d3rlpy`).


- :mod:`.dataset`: :func:`export_episodes`, the selected episodes (optionally transformed) as a new dataset.
- :mod:`.selection`: :func:`episodes_of`, the storage and episode ids a source selects.
- :mod:`.row_selection`: :func:`select_rows`, the rows, episodes and shards a filter and event windows select.
- :mod:`.remote_download`: :func:`prefetch`, only the shards a query reads fetched from a remote dataset;
  :func:`download_dataset`, the selected episodes of a remote dataset as a local one.
"""

from ..moved_paths import moved_names
from .dataset import export_episodes
from .remote_download import DownloadResult, PrefetchResult, download_dataset, prefetch
from .row_selection import RowSelection, needed_bytes, select_rows
from .selection import episodes_of

__all__ = [
    "DownloadResult",
    "PrefetchResult",
    "RowSelection",
    "download_dataset",
    "episodes_of",
    "export_episodes",
    "needed_bytes",
    "prefetch",
    "select_rows",
]

# other libraries' formats live in torchrl_ext.interop (old names still resolve, with a warning)
__getattr__ = moved_names(__name__, dict.fromkeys(("stored_trajectory", "to_d3rlpy"), "torchrl_ext.interop.d3rlpy"))
