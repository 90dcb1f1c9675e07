"""The one error type for on-disk artifacts that do not match the format."""

from __future__ import annotations

__all__ = ["FormatError"]


class FormatError(ValueError):
    """A dataset directory, or one of its files, does not match the format it claims."""
