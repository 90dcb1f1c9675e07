"""One progress style: every long operation's bar names the operation and ends at ``n == total``.

Each operation runs on a tiny dataset with ``progress=True``; every
:class:`~torchrl_ext.progress.ProgressBar` closed during it is recorded
(whether or not stderr is a terminal, the bar counts), so the test sees the
count, the total, the start of a resumed run and the description.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass

import pytest
from interop.atari_dqn.replay_logs_maker import make_replay_logs

import torchrl_ext.interop.crowdplay.convert as crowdplay_convert
from torchrl_ext import ShardedStorage, ShardWriter, read_manifest
from torchrl_ext.events import EventIndex
from torchrl_ext.interop.atari_dqn import convert_replay_logs, list_checkpoints
from torchrl_ext.interop.crowdplay import import_crowdplay
from torchrl_ext.interop.crowdplay.layout import CrowdPlayDir
from torchrl_ext.interop.crowdplay.maker import make_crowdplay_dir
from torchrl_ext.preprocessing import add_episode_metadata, preprocess
from torchrl_ext.progress import ProgressBar, track
from torchrl_ext.sources import download_prefix
from torchrl_ext.synthetic import write_synthetic

CAPACITY = 200


@dataclass(frozen=True)
class Closed:
    """What a bar held when it was closed."""

    desc: str
    unit: str
    initial: int
    n: int
    total: int | None
    enabled: bool
    completed: bool


@pytest.fixture
def bars(monkeypatch) -> list[Closed]:
    """The bars closed during the test, in closing order."""
    closed: list[Closed] = []
    real = ProgressBar.close

    def close(self, completed: bool = True) -> None:
        closed.append(Closed(self.desc, self.unit, self.initial, self.n, self.total, self.enabled, completed))
        real(self, completed)

    monkeypatch.setattr(ProgressBar, "close", close)
    return closed


@pytest.fixture(scope="module")
def cp_src(tmp_path_factory):
    """A CrowdPlay-layout directory of real ALE frames, shared by the CrowdPlay cases."""
    return make_crowdplay_dir(tmp_path_factory.mktemp("crowdplay") / "cp")


def _only(bars: list[Closed], desc: str) -> Closed:
    found = [b for b in bars if b.desc == desc]
    assert len(found) == 1, bars
    return found[0]


# ---------------------------------------------------------------------- the operations
def _convert_atari(tmp_path, request):
    src = tmp_path / "logs"
    make_replay_logs(src, capacity=CAPACITY, num_episodes=12, mean_len=40, obs_shape=(6, 6), seed=3)
    convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, progress=True)
    return "convert Pong/1", "frame", CAPACITY * len(list_checkpoints(src))


def _build_event_index(tmp_path, request):
    root = write_synthetic(tmp_path / "ds", episodes=4, length=6, obs_shape=(1,), shard_rows=8, events_every=2)
    EventIndex.build(root)
    return "build event index", "log", len(read_manifest(root).event_logs)


def _import_minestudio(tmp_path, request):
    pytest.importorskip("lmdb")
    pytest.importorskip("av")
    from torchrl_ext.interop.minestudio import import_minestudio
    from torchrl_ext.interop.minestudio.synthetic import write_minestudio_dataset

    lengths = (64, 32, 96)
    write_minestudio_dataset(tmp_path / "ms", lengths, chunk_size=32, size=(32, 32))
    import_minestudio(tmp_path / "ms", tmp_path / "ds", progress=True)
    return "import minestudio", "frame", sum(lengths)


def _preprocess(tmp_path, request):
    root = write_synthetic(tmp_path / "ds", episodes=4, length=(3, 9), obs_shape=(2,), shard_rows=10)
    preprocess(root, _double, tmp_path / "out", num_workers=0, pbar=True)
    return "preprocess", "row", len(ShardedStorage(root))


def _preprocess_where(tmp_path, request):
    root = write_synthetic(tmp_path / "ds", episodes=5, length=4, obs_shape=(2,))
    preprocess(root, _double, tmp_path / "out", where="game = ?", params=("pong",), pbar=True)
    return "preprocess", "episode", 3  # episodes 0, 2 and 4 play pong


def _add_metadata(tmp_path, request):
    root = write_synthetic(tmp_path / "ds", episodes=3, length=4, obs_shape=(1,))
    add_episode_metadata(root, "steps", lambda ep: len(ep), columns=[("next", "reward")], progress=True)
    return "add metadata steps", "episode", 3


def _import_crowdplay(tmp_path, request):
    src = request.getfixturevalue("cp_src")
    import_crowdplay(src, tmp_path / "ds", shard_rows=64, progress=True)
    return "import crowdplay", "episode", len(CrowdPlayDir(src))


def _generate(tmp_path, request):
    from generate.generate_test_envs import CountingEnv

    from torchrl_ext.generate import generate

    generate(CountingEnv, None, tmp_path / "ds", num_episodes=3, num_workers=1, max_steps=50, seed=1,
             progress=True)
    return "generate", "episode", 3


def _download(tmp_path, request):
    objects = {f"runs/{i}.gz": bytes(range(i, i + 200)) * 10 for i in range(3)}
    request.getfixturevalue("fault_server")(objects)
    download_prefix("test-bucket", "runs/", tmp_path / "d", progress=True, deadline=10)
    return "download gs://test-bucket/runs/", "B", sum(len(v) for v in objects.values())


def _double(td):
    td["observation"] = td["observation"] * 2
    return td


OPERATIONS = {
    "convert atari": _convert_atari,
    "build event index": _build_event_index,
    "import minestudio": _import_minestudio,
    "preprocess": _preprocess,
    "preprocess where": _preprocess_where,
    "add metadata": _add_metadata,
    "import crowdplay": _import_crowdplay,
    "generate": _generate,
    "download": _download,
}


@pytest.mark.slow
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_operation_bar_names_it_and_ends_at_its_total(operation, bars, tmp_path, request):
    desc, unit, total = OPERATIONS[operation](tmp_path, request)
    bar = _only(bars, desc)
    assert (bar.unit, bar.initial, bar.n, bar.total) == (unit, 0, total, total)
    assert bar.enabled and bar.completed
    assert all(b.n == b.total for b in bars), bars  # the event index an import builds at its end too


def test_preprocess_with_where_is_not_called_export(bars, tmp_path):
    _preprocess_where(tmp_path, None)
    assert [b.desc for b in bars] == ["preprocess"]


# ---------------------------------------------------------------------- resumed operations
@pytest.mark.slow
def test_crowdplay_resume_logs_the_episodes_already_there_and_starts_the_bar_at_them(bars, tmp_path, monkeypatch,
                                                                                     caplog, cp_src):
    src = cp_src
    real, calls = crowdplay_convert.load_trajectory, []

    def stops_at_the_fourth(path):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(crowdplay_convert, "load_trajectory", stops_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        import_crowdplay(src, tmp_path / "ds", shard_rows=64, progress=True)
    monkeypatch.setattr(crowdplay_convert, "load_trajectory", real)
    stopped = bars[-1]
    assert (stopped.desc, stopped.completed) == ("import crowdplay", False)
    per_player = read_manifest(tmp_path / "ds").num_episodes
    table = ShardedStorage(tmp_path / "ds").episode_table()
    try:
        there = len({table.metadata(e)["episode_id"] for e in range(per_player)})
    finally:
        table.close()
    assert 0 < there < len(CrowdPlayDir(src))
    with caplog.at_level(logging.INFO, logger="torchrl_ext.interop.crowdplay.convert"):
        import_crowdplay(src, tmp_path / "ds", shard_rows=64, progress=True)
    assert f"resuming; {there} of {len(CrowdPlayDir(src))} episodes ({per_player} per-player episodes) were " \
           "already imported" in caplog.text
    resumed = bars[-1]
    assert (resumed.desc, resumed.initial, resumed.n, resumed.total) == (
        "import crowdplay", there, len(CrowdPlayDir(src)), len(CrowdPlayDir(src)))


@pytest.mark.slow
def test_crowdplay_frames_beside_the_bar_include_the_episode_just_counted(bars, tmp_path, monkeypatch, cp_src):
    shown = []
    real = ProgressBar.update

    def update(self, n: int = 1, **postfix) -> None:
        shown.append((self.n + n, postfix.get("frames")))
        real(self, n, **postfix)

    monkeypatch.setattr(ProgressBar, "update", update)
    src = cp_src
    storage = import_crowdplay(src, tmp_path / "ds", shard_rows=64, progress=True)
    table = storage.episode_table()
    try:
        ids = [table.metadata(e)["episode_id"] for e in range(storage.num_episodes)]
    finally:
        table.close()
    lengths, frames, expected = storage.episode_bounds[1].tolist(), 0, []
    for i, (episode_id, n) in enumerate(zip(ids, lengths)):  # per-player episodes, grouped by CrowdPlay episode
        frames += n
        if i + 1 == len(ids) or ids[i + 1] != episode_id:
            expected.append((len(expected) + 1, frames))
    assert shown == expected and len(expected) == len(CrowdPlayDir(src))


def test_resumed_minestudio_import_starts_at_the_frames_already_there(bars, tmp_path):
    _import_minestudio(tmp_path, None)
    from torchrl_ext.interop.minestudio import import_minestudio

    import_minestudio(tmp_path / "ms", tmp_path / "ds", progress=True)
    again = [b for b in bars if b.desc == "import minestudio"][-1]
    assert (again.initial, again.n, again.total) == (192, 192, 192)


def test_atari_bar_starts_at_the_checkpoints_a_resumed_conversion_does_not_read_again(bars, tmp_path, monkeypatch):
    src = tmp_path / "logs"
    make_replay_logs(src, capacity=CAPACITY, num_episodes=24, mean_len=40, obs_shape=(6, 6), seed=11)
    total = CAPACITY * len(list_checkpoints(src))
    original, calls = ShardWriter.add_episode, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 13:
            raise KeyboardInterrupt("power cut")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ShardWriter, "add_episode", interrupted)
    with pytest.raises(KeyboardInterrupt, match="power cut"):
        convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, shard_bytes=2000, progress=True)
    monkeypatch.setattr(ShardWriter, "add_episode", original)
    convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, shard_bytes=2000, progress=True)
    convert_replay_logs(src, tmp_path / "ds", game="Pong", run=1, shard_bytes=2000, progress=True)  # done
    stopped, resumed = [b for b in bars if b.desc == "convert Pong/1"]  # a finished conversion shows none
    assert not stopped.completed and stopped.n < total
    assert 0 < resumed.initial < total and resumed.initial % CAPACITY == 0  # whole checkpoints skipped
    assert (resumed.n, resumed.total, resumed.completed) == (total, total, True)


# ---------------------------------------------------------------------- the bar itself
def test_a_bar_that_counts_other_than_its_total_still_ends_full(caplog):
    with caplog.at_level(logging.DEBUG, logger="torchrl_ext.progress"), ProgressBar("copy", 5, unit="file",
                                                                                    enabled=False) as bar:
        bar.update(3)
    assert (bar.n, bar.total, bar.bar.total) == (3, 5, 3)
    assert "copy: counted 3 file, the total was 5" in caplog.text


def test_an_interrupted_bar_is_left_where_it_stopped(bars):
    with pytest.raises(RuntimeError, match="stop"), ProgressBar("copy", 5, unit="file", enabled=False) as bar:
        bar.update(2)
        raise RuntimeError("stop")
    assert bars == [Closed("copy", "file", 0, 2, 5, False, False)]


def test_moveto_sets_count_and_total():
    bar = ProgressBar("convert", 100, unit="frame", enabled=False)
    bar.moveto(40)
    bar.moveto(120, 120)
    bar.close()
    assert (bar.initial, bar.n, bar.total) == (0, 120, 120)


def test_track_counts_an_item_once_its_loop_body_is_done(bars):
    items = track(["a", "b", "c"], "read", unit="log", enabled=False)
    for item in items:
        if item == "b":
            break
    items.close()
    assert list(track(["a", "b"], "read", unit="log", enabled=False)) == ["a", "b"]
    assert bars == [Closed("read", "log", 0, 1, 3, False, False), Closed("read", "log", 0, 2, 2, False, True)]


def test_moveto_on_a_bar_without_total_starts_it_where_the_work_starts():
    bar = ProgressBar("convert", None, unit="frame", enabled=False)
    bar.moveto(400, 1000)
    bar.moveto(1000)
    bar.close()
    assert (bar.initial, bar.n, bar.total) == (400, 1000, 1000)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("enabled", "out", "shown"), [(True, _Terminal, True), (True, io.StringIO, False),
                                                       (False, _Terminal, False)])
def test_a_bar_shows_on_a_terminal_unless_the_caller_turns_it_off(monkeypatch, enabled, out, shown):
    from torchrl_ext import progress

    stream = out()
    monkeypatch.setattr(progress, "tqdm", functools.partial(progress.tqdm, file=stream, ascii=True, ncols=100))
    with ProgressBar("import crowdplay", 4, unit="episode", initial=1, enabled=enabled) as bar:
        bar.update(3, frames=120)
    last = stream.getvalue().split("\r")[-1]
    assert (bar.n, bar.total) == (4, 4)
    if shown:
        assert last.startswith("import crowdplay: 100%") and "4/4 [" in last and "episode/s, frames=120]" in last
    else:
        assert stream.getvalue() == ""
