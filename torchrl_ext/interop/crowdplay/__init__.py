"""CrowdPlay human-play datasets: import, processed trajectories as CrowdPlay computes them, a preprocess preset.

- :mod:`.layout`: CrowdPlay's directory (``dataset.sqlite`` + trajectory pickles): spec, reader, writer.
- :mod:`.metadata`: keyword data -> typed episode metadata under CrowdPlay's names.
- :mod:`.convert`: :func:`import_crowdplay` (one pass, resumable).
- :mod:`.processed`: :func:`processed_trajectory`, :class:`FrameBuffer` (CrowdPlay's deepmind framebuffer).
- :mod:`.preset`: :class:`CrowdPlayFrames` for :func:`torchrl_ext.preprocess`.

Filter the imported episodes with :class:`torchrl_ext.storages.EpisodeView` and
export them with :func:`torchrl_ext.export.to_d3rlpy`.
"""

from .convert import DEFAULT_ENCODINGS, SOURCE_KIND, agent_episode, import_crowdplay
from .layout import (
    DEFAULT_AGENT,
    SQLITE_NAME,
    CrowdPlayDir,
    CrowdPlayEpisode,
    load_trajectory,
    make_trajectory,
    trajectory_agents,
    write_crowdplay_dir,
)
from .metadata import ALIASES, IDS, MetadataPlan, plain_value
from .preset import CrowdPlayFrames
from .processed import (
    FrameBuffer,
    ProcessedTrajectories,
    find_episode,
    kept_steps,
    processed_trajectory,
)

__all__ = [
    # import
    "import_crowdplay", "agent_episode", "SOURCE_KIND", "DEFAULT_ENCODINGS",
    # CrowdPlay's layout
    "CrowdPlayDir", "CrowdPlayEpisode", "DEFAULT_AGENT", "SQLITE_NAME", "load_trajectory", "make_trajectory",
    "trajectory_agents", "write_crowdplay_dir",
    # metadata
    "IDS", "ALIASES", "MetadataPlan", "plain_value",
    # processed trajectories
    "FrameBuffer", "ProcessedTrajectories", "find_episode", "kept_steps", "processed_trajectory",
    "CrowdPlayFrames",
]
