"""The MineStudio-layout dataset writer the tests use (re-exported from the library)."""

from torchrl_ext.sources.minestudio.synthetic import (  # noqa: F401
    BUTTONS,
    EVENTS,
    SEGMENT_EVENTS,
    actions_of,
    events_of,
    interactions_of,
    meta_of,
    mp4_chunk,
    read_stamp,
    segment_mask,
    segments_of,
    stamp,
    write_events,
    write_minestudio_dataset,
)
