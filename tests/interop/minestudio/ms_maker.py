"""The MineStudio-layout dataset writer the tests use (re-exported from the library)."""

from torchrl_ext.interop.minestudio.synthetic import (  # noqa: F401
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


# A child process that imports argv[1] into argv[2] and dies (os._exit(17)) at the argv[3]-th fsync;
# shards of 128 rows, so episodes straddle shards and a resume copies a committed prefix.
KILLED_IMPORT = """
import os, sys
kill_at = int(sys.argv[3]); calls = [0]
real = os.fsync
def fsync(fd):
    calls[0] += 1
    if calls[0] == kill_at:
        os._exit(17)
    return real(fd)
os.fsync = fsync
from torchrl_ext.interop.minestudio import import_minestudio
import_minestudio(sys.argv[1], sys.argv[2], progress=False, shard_rows=128)
"""
