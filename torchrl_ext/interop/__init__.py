"""Other projects' datasets in and out, one folder per project.

- :mod:`.atari_dqn`: Google's Atari DQN Replay Dataset logs (Dopamine's format), local or from its bucket,
  and :class:`~torchrl_ext.interop.atari_dqn.AtariDQNExperienceReplay` with TorchRL's constructor.
- :mod:`.minestudio`: MineStudio 1.1.6 datasets and MineGenerator episodes in; MineStudio's ``EventDataset``
  items out (frames, actions, VPT agent actions, segmentation).
- :mod:`.crowdplay`: CrowdPlay human-play datasets in; its processed trajectories and a preprocess preset.
- :mod:`.d3rlpy`: a dataset or view out as a d3rlpy 2.x ``ReplayBuffer``.
- :mod:`.lerobot`: LeRobot v3.0 datasets in (h264 kept as it is) and out; LeRobot's items with ``delta_timestamps``.

Generic rooms (``format``, ``encodings``, ``writer``, ``storages``, ``events``,
``samplers``) import nothing from here (``tests/test_layering.py``).
Importing this package loads none of the projects.
"""
