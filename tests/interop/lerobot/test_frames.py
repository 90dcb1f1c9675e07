"""``LeRobotFrames`` returns the items LeRobot's own ``LeRobotDataset.__getitem__`` returned, padding flags included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interop.lerobot.make_fixtures import LENGTHS, action
from interop.lerobot.reference import differences, load_reference

from torchrl_ext import ShardWriter
from torchrl_ext.interop.lerobot import LeRobotFrames
from torchrl_ext.storages import EpisodeView
from torchrl_ext.synthetic import make_episode


@pytest.mark.parametrize("name", ["h264", "av1"])
@pytest.mark.parametrize("with_deltas", [False, True], ids=["plain", "delta_timestamps"])
def test_items_equal_lerobots(imported, name, with_deltas):
    ref = load_reference(name)
    frames = LeRobotFrames(imported[name][0], ref["delta_timestamps"] if with_deltas else None)
    assert len(frames) == ref["len"] == sum(LENGTHS)
    items = ref["delta_items" if with_deltas else "items"]
    for index, theirs in items.items():
        assert differences(frames[int(index)], theirs) == [], index


def test_padding_at_both_episode_ends(imported):
    frames = LeRobotFrames(imported["h264"][0], {"action": [-0.2, 0.0, 0.3]})
    first, last = frames[LENGTHS[0]], frames[LENGTHS[0] + LENGTHS[1] - 1]  # episode 1's first and last frames
    assert first["action_is_pad"].tolist() == [True, False, False]
    assert last["action_is_pad"].tolist() == [False, False, True]
    np.testing.assert_array_equal(first["action"].numpy(), np.stack([action(1, 0), action(1, 0), action(1, 3)]))
    np.testing.assert_array_equal(last["action"][2].numpy(), action(1, LENGTHS[1] - 1))  # clamped to the episode


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                    for k in a)


def test_a_batch_reads_the_same_items_as_single_reads(imported):
    frames = LeRobotFrames(imported["h264"][0], {"observation.images.top": [-0.1, 0.0], "action": [0.0, 0.1]})
    indices = [0, 22, 23, 79, 40]
    batch = frames.__getitems__(indices)
    for i, item in zip(indices, batch):
        assert _same(item, frames[i]), i
    loader = torch.utils.data.DataLoader(frames, batch_size=5, sampler=indices)
    collated = next(iter(loader))
    assert collated["observation.images.top"].shape == (5, 2, 3, 32, 32)
    assert collated["index"].tolist() == indices and collated["task"][2] == "push the blue block"


def test_a_view_numbers_its_rows_from_zero(imported):
    root = imported["h264"][0]
    frames = LeRobotFrames(EpisodeView(root, "task LIKE '%blue%'"), {"action": [-0.1, 0.0]})
    assert len(frames) == LENGTHS[1]
    assert _same(frames[0], LeRobotFrames(root, {"action": [-0.1, 0.0]})[LENGTHS[0]])
    assert (frames[0]["episode_index"].item(), frames[0]["index"].item()) == (1, LENGTHS[0])


@pytest.mark.parametrize(("deltas", "match"), [
    ({"action": [0.05]}, r"`delta_timestamps\['action'\]` has \[0\.05\], not multiples of 1/10 s"),
    ({"observation.velocity": [0.0]}, r"names 'observation.velocity', not a feature; features are \["),
    ({"action": []}, r"must be a non-empty list of seconds"),
])
def test_bad_delta_timestamps_are_refused(imported, deltas, match):
    with pytest.raises(ValueError, match=match):
        LeRobotFrames(imported["h264"][0], deltas)


def test_an_index_past_the_end_is_refused(imported):
    with pytest.raises(IndexError, match=r"index out of range for 80 frames: \[80\]"):
        LeRobotFrames(imported["h264"][0])[80]


def test_a_dataset_of_this_library_needs_fps(tmp_path):
    with ShardWriter.create(tmp_path / "ds") as w:
        w.add_episode(make_episode(0, 4, (3,)))
    with pytest.raises(ValueError, match=r"`fps` must be a positive int \(the dataset records none\), got None"):
        LeRobotFrames(tmp_path / "ds")
    frames = LeRobotFrames(tmp_path / "ds", {"observation": [-0.5, 0.0]}, fps=2)
    plain = LeRobotFrames(tmp_path / "ds", fps=2)
    assert frames[0]["observation_is_pad"].tolist() == [True, False]
    assert frames[3]["observation_is_pad"].tolist() == [False, False] and frames[3]["timestamp"].item() == 1.5
    assert torch.equal(frames[3]["observation"], torch.stack([plain[2]["observation"], plain[3]["observation"]]))
    assert plain[2]["action"].dtype == torch.int64 and plain[2]["action"].item() == 2  # make_episode's (e + t) % 6
