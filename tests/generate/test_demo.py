"""`make demo` end to end on a small Pong run."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from torchrl_ext import ShardedStorage
from torchrl_ext.demo import main

pytestmark = pytest.mark.slow  # plays Atari in worker processes


def test_demo_summary_and_preview(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "--episodes", "2", "--workers", "2", "--max-steps", "200"]) == 0
    out = capsys.readouterr().out
    storage = ShardedStorage(tmp_path / "pong")
    assert re.search(r"^rows\s+400$", out, re.M) and storage.num_episodes == 2
    losses = int(re.search(r"^events reward:-1\s+(\d+)$", out, re.M).group(1))
    rewards = storage[list(range(len(storage)))]["next", "reward"]
    assert losses == int((rewards < 0).sum()) > 0
    saving = re.search(r"^frames\s+zstd: .* MiB on disk vs .* MiB raw \((\d+)x smaller\)$", out, re.M)
    assert saving and int(saving.group(1)) >= 20
    assert storage.manifest.column(("observation",)).encoding == "zstd"
    assert "sampled batch (8, 32): observation (8, 32, 84, 84) torch.uint8" in out
    preview = Image.open(tmp_path / "preview.png")
    assert preview.size == (16 * 88 + 4, 4 * 88 + 4)
    assert f"preview: {(tmp_path / 'preview.png').resolve()}" in out
