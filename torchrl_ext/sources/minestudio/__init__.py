"""MineStudio interop: import MineStudio 1.1.6 datasets (LMDB + mp4 chunks, segmentation) and MineGenerator episodes.

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

__all__ = [
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
