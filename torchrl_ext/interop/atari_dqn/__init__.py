"""Atari DQN Replay Dataset logs -> sharded datasets of real episodes.

Source format (Dopamine's ``replay_memory/circular_replay_buffer.py``,
``OutOfGraphReplayBuffer``, and google-research ``batch_rl``'s
``baselines/replay_memory/logged_replay_buffer.py``): every checkpoint ``i``
of a run's ``replay_logs`` directory holds gzip-wrapped ``np.save`` arrays

=====================================  ======================================
``$store$_observation_ckpt.<i>.gz``    uint8 ``[C, 84, 84]``
``$store$_action_ckpt.<i>.gz``         int32 ``[C]``
``$store$_reward_ckpt.<i>.gz``         float32 ``[C]``
``$store$_terminal_ckpt.<i>.gz``       uint8 ``[C]``
``add_count_ckpt.<i>.gz``              int64 scalar: transitions added so far
``invalid_range_ckpt.<i>.gz``          int64 ``[stack_size + update_horizon]``
=====================================  ======================================

Writer semantics: a circular buffer of capacity ``C`` (1,000,000 in the
published data) stores transition number ``g`` at row ``g % C``. Before the
first transition and after every terminal one, ``stack_size - 1`` all-zero
padding transitions are added. The logged buffer saves a checkpoint when,
after a real transition, ``add_count % C == C - 1``; so checkpoint 0 never
wrote its last row and later checkpoints start with row ``C - 1`` (the oldest)
followed by rows ``0 .. C - 2``. Because the check runs only after a real
transition, padding can jump over ``C - 1`` and a whole lap is then never
logged. At the end of training ``log_final_buffer`` saves one more
checkpoint whose ``add_count`` file holds the cursor ``add_count % C``
instead of the total: :mod:`.timeline` places it after the previous
checkpoint (its new rows are ``C - 1``, then ``0 .. cursor - 1``; the rows
past the cursor are stale copies). ``invalid_range`` lists rows a single
checkpoint cannot sample from; after chronological reconstruction they are
ordinary (or stale) rows, so it is validated, and kept with ``add_count`` in
``atari_dqn.json`` for ``layout="torchrl"``'s ``metadata``.

Output: one episode per real episode (padding is never written), in TorchRL's
TED layout: ``observation`` uint8 ``[84, 84]``, ``action`` int32,
``("next", "reward")`` float32 ``[1]``, ``("next", "done"/"terminated"/"truncated")``
bool ``[1]``. Episode metadata: ``game``, ``run``, ``checkpoint`` (of the first
step), ``return``, ``first_index`` (transition number of the first step, the
chronological key) and ``terminated``. Events: ``reward:+1``/``reward:-1`` at
rewarded steps and ``episode_end`` at terminal steps. An episode cut by a
lap that was never logged, or by the end of the logs, is ``truncated``.

Modules: :mod:`.logs` (files from a directory or streamed from a bucket),
:mod:`.records` (what each file must hold, checked before anything is
allocated: every malformed file is one ``FormatError`` naming it),
:mod:`.timeline` (checkpoints on one timeline), :mod:`.episodes` (episodes
from the small columns), :mod:`.convert` (one pass into a
:class:`~torchrl_ext.ShardWriter`), :mod:`.checkpoint_files` (which checkpoint
file each row came from, and TorchRL's ``metadata`` of it), :mod:`.runs` (whole runs, many at once), :mod:`.bucket` (Google's bucket: listing,
downloads), :mod:`.replay` (:class:`AtariDQNExperienceReplay`, TorchRL's
constructor over converted runs).
"""

from .bucket import (
    ATARI_BUCKET,
    ATARI_PREFIX,
    atari_run_prefix,
    download_atari_run,
    list_atari_checkpoints,
)
from .convert import CONVERTER_VERSION, DONE_NAME, convert_replay_logs
from .logs import BucketReplayLogs, LocalReplayLogs, ReplayLogs, list_checkpoints
from .replay import (
    ATARI_GAMES,
    AtariDQNExperienceReplay,
    TorchRLLayoutStorage,
    prepare_atari_dqn,
)
from .runs import (
    RUN_EXECUTORS,
    convert_atari_run,
    convert_atari_runs,
    parse_run_id,
    resolve_replay_dir,
)

__all__ = [
    # the bucket
    "ATARI_BUCKET",
    "ATARI_PREFIX",
    "atari_run_prefix",
    "download_atari_run",
    "list_atari_checkpoints",
    # TorchRL dataset
    "ATARI_GAMES",
    "AtariDQNExperienceReplay",
    "TorchRLLayoutStorage",
    "prepare_atari_dqn",
    # conversion
    "CONVERTER_VERSION",
    "DONE_NAME",
    "RUN_EXECUTORS",
    "BucketReplayLogs",
    "LocalReplayLogs",
    "ReplayLogs",
    "convert_atari_run",
    "convert_atari_runs",
    "convert_replay_logs",
    "list_checkpoints",
    "parse_run_id",
    "resolve_replay_dir",
]
