"""LeRobot v3.0 datasets in and out, read and written directly (pyarrow + PyAV; the ``lerobot`` package is not needed).

- :mod:`.layout`: LeRobot's on-disk v3.0 layout (spec; ``info.json``, tasks and episode tables checked).
- :mod:`.data_files`: an episode's rows of its parquet data file as numpy columns.
- :mod:`.video_files`: an episode's frames of a multi-episode mp4: h264 and AV1 chunks kept as they are, or decoded.
- :mod:`.importer`: :func:`import_lerobot` (one pass, resumable; tasks as metadata and events).
- :mod:`.frames`: :class:`LeRobotFrames`, LeRobot's items with ``delta_timestamps`` and ``*_is_pad``.
- :mod:`.exporter`: :func:`export_lerobot`, a dataset or view as a v3.0 dataset LeRobot opens.

CLI: ``torchrl-ext import lerobot DIR --root R``. Needs ``pip install torchrl-ext[lerobot]``.
"""

from .exporter import export_lerobot
from .frames import LeRobotFrames, lerobot_features
from .importer import (
    CHUNK_ROWS,
    IMPORTER_VERSION,
    SOURCE_FORMAT,
    ImportStats,
    column_key,
    import_lerobot,
)
from .layout import (
    CODEBASE_VERSION,
    EpisodeRef,
    Feature,
    LeRobotLayout,
    VideoSpan,
    feature_key,
)

__all__ = [
    "CHUNK_ROWS",
    "CODEBASE_VERSION",
    "IMPORTER_VERSION",
    "SOURCE_FORMAT",
    "EpisodeRef",
    "Feature",
    "ImportStats",
    "LeRobotFrames",
    "LeRobotLayout",
    "VideoSpan",
    "column_key",
    "export_lerobot",
    "feature_key",
    "import_lerobot",
    "lerobot_features",
]
