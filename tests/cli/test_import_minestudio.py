"""``torchrl-ext import minestudio DIR... --root ROOT``: imports, resumes, separate roots, usage errors."""

from __future__ import annotations

import pytest

pytest.importorskip("lmdb")

from interop.minestudio.ms_maker import write_minestudio_dataset

from torchrl_ext import ShardedStorage
from torchrl_ext.cli import main


def test_import_then_resume_is_a_no_op(tmp_path, capsys):
    src = tmp_path / "6xx"
    write_minestudio_dataset(src, lengths=(64, 96))
    assert main(["import", "minestudio", str(src), "--root", str(tmp_path / "ds"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'ds'}: 2 episodes imported (0 already there, 0 left out), 160 frames, "
                          "5 chunks stored as they are, 0 encoded again,")
    assert main(["import", "minestudio", str(src), "--root", str(tmp_path / "ds"), "--no-progress"]) == 0
    assert "0 episodes imported (2 already there" in capsys.readouterr().out
    assert len(ShardedStorage(tmp_path / "ds")) == 160


def test_separate_roots(tmp_path, capsys):
    a, b = tmp_path / "a" / "6xx", tmp_path / "b" / "7xx"
    write_minestudio_dataset(a, lengths=(32,), events=False)
    write_minestudio_dataset(b, lengths=(64,), events=False)
    assert main(["import", "minestudio", str(a), str(b), "--root", str(tmp_path / "out"), "--separate",
                 "--no-progress"]) == 0
    assert [len(ShardedStorage(tmp_path / "out" / n)) for n in ("6xx", "7xx")] == [32, 64]


def test_missing_directory_is_a_usage_error(tmp_path, capsys):
    assert main(["import", "minestudio", str(tmp_path / "nope"), "--root", str(tmp_path / "ds")]) == 2
    assert "no such directory; expected a MineStudio dataset directory" in capsys.readouterr().err


def test_damaged_directory_exits_1(tmp_path, capsys):
    src = tmp_path / "6xx"
    write_minestudio_dataset(src, lengths=(32,), meta=False)
    (src / "action" / "part-1" / "data.mdb").write_bytes(b"x" * 100)
    assert main(["import", "minestudio", str(src), "--root", str(tmp_path / "ds"), "--no-progress"]) == 1
    assert "not an LMDB file" in capsys.readouterr().err
