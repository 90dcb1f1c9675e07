"""Runs every ``benchmarks/bench_*.py`` in turn and rebuilds ``benchmarks/README.md``.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/run_all.py [names...]``).
Each runner writes ``benchmarks/results/<name>.md``; this script joins them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
HEADER = """# Benchmarks

Each table below was produced by the command written above it, on this
project's 2-core, 24 GiB CPU machine. Every runner compares against a named
ceiling or peer measured in the same run and reports the ratio; a missed
target says so and why. `make bench` reruns all of them and rebuilds this page.
"""


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / f"bench_{name}.py")]).returncode:
            failed.append(name)
    parts = [HEADER] + [p.read_text() for p in sorted((HERE / "results").glob("*.md"))]
    (HERE / "README.md").write_text("\n".join(parts))
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
