"""A reference of CrowdPlay's processed trajectories, written from its published definition.

``RingFrameBuffer`` follows ``MaxAndSkipAndWarpAndScaleAndStackFrameBuffer``
(``crowdplay_datasets/deepmind.py``, 0.1.0) step by step: a ring of
``(stack_n - 1) * skip_n + max_n`` raw frames, zeros at first, the newest at
the write pointer; an observation is ``stack_n`` entries spaced ``skip_n``
apart, oldest first, each the max of ``max_n`` consecutive ring entries,
grayscaled and INTER_AREA-resized with OpenCV, optionally scaled, concatenated
on the last axis. ``reference_processed`` is ``preprocess_obs_in_trajectory``
(``dataset.py``): one loop over the steps, the original last-step clause when
``original_last_clause`` is True.
"""

from __future__ import annotations

import cv2
import numpy as np


class RingFrameBuffer:
    def __init__(self, frame_shape, max_n=2, skip_n=4, stack_n=4, warp=True, scale=False, warp_width=84,
                 warp_height=84):
        self.max_n, self.skip_n, self.stack_n = max_n, skip_n, stack_n
        self.warp, self.scale, self.size = warp, scale, (warp_width, warp_height)
        self.length = (stack_n - 1) * skip_n + max_n
        self.ring = np.zeros((self.length, *frame_shape), np.uint8)
        self.pointer = 0

    def add(self, frame):
        self.pointer = (self.pointer - 1) % self.length
        self.ring[self.pointer] = frame

    def _one(self, index):
        frame = np.take(self.ring, range(index, index + self.max_n), axis=0, mode="wrap").max(axis=0)
        if self.warp:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)[:, :, None]
        if self.scale:
            frame = np.array(frame).astype(np.float32) / 255.0
        return frame

    def get(self):
        top = self.pointer + (self.stack_n - 1) * self.skip_n
        return np.concatenate([self._one(top - i * self.skip_n) for i in range(self.stack_n)], axis=-1)


def reference_processed(steps, agent, framestack_axis_first=False, downsample_frequency=1, downsample_offset=0,
                        original_last_clause=False, **kwargs):
    """``(obs, acs, rew, term)`` lists, as CrowdPlay's loop builds them."""
    shape = np.shape(steps[0]["prev_obs"][agent]["image"])
    fb = RingFrameBuffer(shape, **kwargs)
    obs, acs, rew, term = [], [], [], []
    reward = 0
    n = len(steps)
    for i, step in enumerate(steps):
        fb.add(step["prev_obs"][agent]["image"])
        reward += step["reward"][agent]
        last = (i % downsample_frequency == n - 1) if original_last_clause else (i == n - 1)
        if i % downsample_frequency == downsample_offset or last:
            o = fb.get()
            obs.append(np.moveaxis(o, 2, 0) if framestack_axis_first else o)
            acs.append(step["action"][agent]["game"])
            rew.append(reward)
            term.append(int(step["done"][agent]))
            reward = 0
    return obs, acs, rew, term
