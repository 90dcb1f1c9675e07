"""``torchrl-ext import lerobot DIR --root R``, run in-process."""

from __future__ import annotations

import json

from interop.lerobot.make_fixtures import FIXTURES, LENGTHS

from torchrl_ext import ShardedStorage
from torchrl_ext.cli import main

IMAGE = ("observation", "images", "top")


def test_import_then_rerun_resumes_with_nothing_left(tmp_path, capsys):
    args = ["import", "lerobot", str(FIXTURES / "h264"), "--root", str(tmp_path / "ds"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"ds: 3 episodes imported (0 already there), {sum(LENGTHS)} frames, 3 video chunks stored as they are, " \
           "0 episode videos decoded" in out
    assert main(args) == 0
    assert "ds: 0 episodes imported (3 already there), 0 frames" in capsys.readouterr().out
    assert len(ShardedStorage(tmp_path / "ds")) == sum(LENGTHS)


def test_frames_zstd_decodes_every_video(tmp_path, capsys):
    code = main(["import", "lerobot", str(FIXTURES / "h264"), "--root", str(tmp_path / "ds"), "--frames", "zstd",
                 "--no-progress"])
    assert code == 0 and "0 video chunks stored as they are, 3 episode videos decoded" in capsys.readouterr().out
    assert ShardedStorage(tmp_path / "ds").manifest.column(IMAGE).encoding == "zstd"


def test_a_malformed_dataset_exits_1_with_one_line(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "meta").mkdir(parents=True)
    (src / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v2.1", "fps": 10}))
    assert main(["import", "lerobot", str(src), "--root", str(tmp_path / "ds"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("torchrl-ext import: error: ") and "codebase_version 'v2.1', this reader expects 'v3.0'" \
        in err and "\n" not in err
    assert not (tmp_path / "ds").exists()
