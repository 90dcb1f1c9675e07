"""``python -m torchrl_ext``: the ``torchrl-ext`` command line."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
