"""Minari interop: Minari 0.5 datasets (HDF5, Arrow, Parquet backends) in, our datasets out as Minari datasets.

- import: :mod:`.importer` (:func:`import_minari`, streaming, resumable), :mod:`.layout` (where a dataset
  lives, ``metadata.json``), :mod:`.spaces` (serialized spaces -> columns), :mod:`.hdf5_episodes` and
  :mod:`.arrow_episodes` (one episode at a time, checked before reading), :mod:`.values` (shapes, dtypes,
  JPEG frames).
- export: :mod:`.exporter` (:func:`export_minari`: a dataset or view as a Minari dataset that
  ``minari.load_dataset`` opens).

Reading needs h5py (HDF5), pyarrow (Arrow, Parquet) and Pillow (JPEG frames),
exporting the ``minari`` package; each loads only when a function here runs
(``pip install torchrl-ext[minari]``).
"""

from .exporter import export_minari
from .importer import (
    FRAME_ENCODING,
    IMPORTER_VERSION,
    episode_columns,
    frame_encodings,
    import_minari,
    open_episodes,
)
from .layout import FORMATS, HDF5_NAME, METADATA_NAME, MinariSource, datasets_root
from .spaces import Space, compact, leaves, parse_space, to_gymnasium
from .values import RawEpisode

__all__ = [
    "FORMATS",
    "FRAME_ENCODING",
    "HDF5_NAME",
    "IMPORTER_VERSION",
    "METADATA_NAME",
    "MinariSource",
    "RawEpisode",
    "Space",
    "compact",
    "datasets_root",
    "episode_columns",
    "export_minari",
    "frame_encodings",
    "import_minari",
    "leaves",
    "open_episodes",
    "parse_space",
    "to_gymnasium",
]
