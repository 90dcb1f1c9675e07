"""MineStudio interop: MineStudio 1.1.6 datasets (LMDB + mp4 chunks, segmentation) and MineGenerator episodes in,
MineStudio's ``EventDataset`` items out.

- import: :mod:`.importer` (``import_minestudio``, streaming, resumable), :mod:`.layout`, :mod:`.lmdb_parts`,
  :mod:`.video_chunks`, :mod:`.records`, :mod:`.segments`, :mod:`.generated` (MineGenerator episode files).
- items: :mod:`.items` (``EventWindowDataset`` with MineStudio's arguments, through the ``minestudio``
  item plugin), :mod:`.frames` (a window's frames, resized as MineStudio does), :mod:`.segment_items`
  (the ``segmentation`` entry), :mod:`.vpt_actions` (VPT's env -> agent action mapping).
- :mod:`.synthetic`: small datasets in MineStudio's layout (docs, tests, benchmarks).

``lmdb``, PyAV and OpenCV load only when a function here runs
(``pip install torchrl-ext[minestudio]``).
"""

from .generated import (
    GeneratedImportStats,
    counter_events,
    generated_episode_ids,
    import_generated_episodes,
)
from .importer import IMPORTER_VERSION, ImportStats, import_minestudio, separate_roots
from .items import ItemSpec, MineStudioItems, is_minestudio_import, minestudio_spec
from .layout import EVENT_DIR, MODALITY_DIRS, EpisodeRef, MineStudioLayout
from .lmdb_parts import (
    ChunkInfo,
    PartInfo,
    check_lmdb_file,
    chunk_key,
    close_envs,
    open_env,
    read_part,
)
from .segments import (
    BITS_SHAPE,
    MASK_SHAPE,
    SEGMENT_KEYS,
    SegmentEpisode,
    pick_interactions,
    rle_decode,
    rle_encode,
    segment_episode,
    segment_events,
    segment_frames,
)
from .synthetic import read_stamp, stamp, write_minestudio_dataset
from .video_chunks import (
    NotPassthrough,
    StreamParams,
    decode_mp4,
    mp4_to_payload,
    probe_mp4,
)
from .vpt_actions import CameraQuantization, agent_action

__all__ = [
    # EventDataset items
    "MineStudioItems",
    "ItemSpec",
    "minestudio_spec",
    "is_minestudio_import",
    "agent_action",
    "CameraQuantization",
    # import
    "import_minestudio",
    "separate_roots",
    "ImportStats",
    "IMPORTER_VERSION",
    # MineGenerator episodes
    "import_generated_episodes",
    "generated_episode_ids",
    "counter_events",
    "GeneratedImportStats",
    # the on-disk layout
    "MineStudioLayout",
    "EpisodeRef",
    "MODALITY_DIRS",
    "EVENT_DIR",
    "PartInfo",
    "ChunkInfo",
    "read_part",
    "chunk_key",
    "open_env",
    "close_envs",
    "check_lmdb_file",
    # segmentation chunks
    "MASK_SHAPE",
    "BITS_SHAPE",
    "SEGMENT_KEYS",
    "SegmentEpisode",
    "rle_encode",
    "rle_decode",
    "segment_frames",
    "pick_interactions",
    "segment_episode",
    "segment_events",
    # small datasets in MineStudio's layout (docs, tests, benchmarks)
    "write_minestudio_dataset",
    "stamp",
    "read_stamp",
    # image chunks
    "StreamParams",
    "NotPassthrough",
    "probe_mp4",
    "mp4_to_payload",
    "decode_mp4",
]
