"""CrowdPlay's ``dataset.sqlite`` is opened by a quoted URI, read-only, on a time budget."""

from __future__ import annotations

import shutil
import sqlite3
import time

import pytest

from torchrl_ext import FormatError
from torchrl_ext.interop.crowdplay import CrowdPlayDir


@pytest.mark.parametrize("name", ["a#b?c%41 d", "x?mode=rwc", "%2e%2e"])
def test_directory_with_uri_characters_reads_the_same(cp_dir, tmp_path, name):
    copy = shutil.copytree(cp_dir, tmp_path / name / "cp")
    want = CrowdPlayDir(cp_dir).episodes
    got = CrowdPlayDir(copy).episodes
    assert [(e.episode_id, e.environment_id, e.task_id, e.keyword_data, e.env_keyword_data, e.users)
            for e in got] == [(e.episode_id, e.environment_id, e.task_id, e.keyword_data, e.env_keyword_data,
                               e.users) for e in want]
    assert [e.trajectory for e in got] == [copy / e.trajectory.relative_to(cp_dir) for e in want]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing made beside it


def test_endless_view_in_place_of_a_table_is_refused_quickly(cp_dir, tmp_path):
    copy = shutil.copytree(cp_dir, tmp_path / "cp")
    conn = sqlite3.connect(copy / "dataset.sqlite")
    conn.execute("DROP TABLE episodes")
    conn.execute("CREATE VIEW episodes AS WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c) "
                 "SELECT x AS episode_id, 'env0' AS environment_id FROM c")
    conn.commit()
    conn.close()
    start = time.monotonic()
    with pytest.raises(FormatError, match=r"dataset\.sqlite: expected CrowdPlay's tables .*, missing \['episodes'\]"):
        CrowdPlayDir(copy)
    assert time.monotonic() - start < 10.0
