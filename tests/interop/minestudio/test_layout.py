"""MineStudio's on-disk layout as its own readers see it: parts, chunk keys, episodes, events, damage."""

from __future__ import annotations

import shutil

import pytest
from interop.minestudio.ms_maker import events_of, write_minestudio_dataset

from torchrl_ext.format import FormatError
from torchrl_ext.interop.minestudio import (
    MineStudioLayout,
    chunk_key,
    close_envs,
    read_part,
)


def test_chunk_keys_sort_as_strings():
    keys = sorted(chunk_key(1, s) for s in (0, 32, 64, 96, 128))
    assert keys == [b"(1, 0)", b"(1, 128)", b"(1, 32)", b"(1, 64)", b"(1, 96)"]


def test_episodes_in_sorted_name_order_with_local_indices(ms_dataset):
    root, episodes = ms_dataset
    layout = MineStudioLayout(root, ("image", "action", "meta_info"))
    assert [(e.name, e.num_frames) for e in layout.episodes] == sorted((n, f) for n, _, f in episodes)
    assert layout.chunk_size == 32
    part, idx = layout.episodes[2].parts["image"]
    assert (part.path.name, idx) == ("part-3", 0)


def test_part_metadata(ms_dataset):
    part = read_part(ms_dataset[0] / "action" / "part-2")
    assert part.chunk_size == 32
    assert [(c.episode, c.episode_idx, c.num_frames) for c in part.episodes] == [
        ("player0-1000", 0, 288), ("player1-1007", 1, 192)]


def test_events_through_the_codebook(ms_dataset):
    root, episodes = ms_dataset
    got = MineStudioLayout(root).events()
    for name, e, n in episodes:
        want = sorted((t, ev, v) for t in range(n) for ev, v in events_of(e, t).items())
        assert sorted(got[name]) == want


@pytest.mark.parametrize(("key", "value", "message"), [
    ("item", ([1], 0, 1.0), r"must be \(episode name or code, frame 0\.\.\d+, number\), found \(\[1\], 0, 1\.0\)"),
    ("item", ("0", -5, 1.0), r"must be \(episode name or code, frame"),
    ("item", ("0", 1 << 60, 1.0), r"must be \(episode name or code, frame"),
    ("item", ("0", 3, "many"), r"must be \(episode name or code, frame"),
    ("__codebook__", {"player0-1000": ["0"]}, r"__codebook__ must map episode names to codes"),
    ("__event_info__", {("a",): {"__num_items__": 1}}, r"__event_info__ must be keyed by event names"),
    ("__event_info__", {"a": {"__num_items__": "3"}}, r"has no valid '__num_items__' \(an int >= 0\), found str"),
])
def test_hostile_event_records_are_format_errors(tmp_path, key, value, message):
    import pickle

    import lmdb

    root = tmp_path / "ds"
    write_minestudio_dataset(root, lengths=(64,))
    env = lmdb.open(str(root / "event"), subdir=True, lock=False)
    with env.begin(write=True) as txn:
        if key == "item":
            key = next(k for k, _ in txn.cursor() if not k.startswith(b"__")).decode()
        txn.put(key.encode(), pickle.dumps(value))
    env.close()
    with pytest.raises(FormatError, match=message):
        MineStudioLayout(root).events()


def test_episode_missing_in_a_modality_is_left_out(tmp_path):
    root = tmp_path / "ds"
    write_minestudio_dataset(root, lengths=(64, 64), episodes_per_part=1)
    shutil.rmtree(root / "action" / "part-2")
    layout = MineStudioLayout(root, ("image", "action"))
    assert [e.name for e in layout.episodes] == ["player0-1000"]
    assert layout.skipped == {"player1-1007": "missing in action"}


def test_missing_modality_is_a_format_error(tmp_path):
    root = tmp_path / "ds"
    write_minestudio_dataset(root, lengths=(64,), meta=False)
    with pytest.raises(FormatError, match=r"modality 'meta_info' is missing: expected a folder named one of "
                                          r"\('meta_info', 'contractor_info'\)"):
        MineStudioLayout(root, ("image", "meta_info"))


def test_truncated_lmdb_is_refused_before_mapping(tmp_path):
    root = tmp_path / "ds"
    write_minestudio_dataset(root, lengths=(128,))
    data = root / "image" / "part-1" / "data.mdb"
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) // 2])
    close_envs()
    with pytest.raises(FormatError, match=r"data.mdb: LMDB file is truncated: its meta page lists \d+ pages"):
        MineStudioLayout(root)


def test_not_an_lmdb_file(tmp_path):
    root = tmp_path / "ds"
    write_minestudio_dataset(root, lengths=(32,))
    (root / "action" / "part-1" / "data.mdb").write_bytes(b"\0" * 8192)
    close_envs()
    with pytest.raises(FormatError, match=r"not an LMDB file \(magic 0x0, expected 0xbeefc0de\)"):
        MineStudioLayout(root)
