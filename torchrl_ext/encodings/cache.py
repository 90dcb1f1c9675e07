"""A bounded, thread-safe LRU of decoded chunks shared by column readers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np

__all__ = ["DecodedChunkCache"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


class DecodedChunkCache:
    """Keeps recently decoded chunks within a byte budget, evicting the least recently used.

    Values are read-only arrays; a value larger than the whole budget is not kept.
    Pickling keeps the budget and drops the contents, so each process fills its own.

    >>> cache = DecodedChunkCache(max_bytes=100)
    >>> cache.put(("f", 0), np.zeros(60, np.uint8))
    >>> cache.put(("f", 1), np.zeros(60, np.uint8))
    >>> cache.get(("f", 0)) is None, cache.nbytes
    (True, 60)
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"`max_bytes` must be an int >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held now (never above ``max_bytes``)."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> np.ndarray | None:
        """The cached array for ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        """Stores ``value`` (made read-only) under ``key``, evicting old entries to fit the budget."""
        size = int(value.nbytes)
        if size > self.max_bytes:
            return
        if value.flags.writeable:
            value = value.view()
            value.flags.writeable = False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
            while self._items and self._nbytes + size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._nbytes -= evicted.nbytes
            self._items[key] = value
            self._nbytes += size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"])

    def __repr__(self) -> str:
        return f"DecodedChunkCache(max_bytes={self.max_bytes}, nbytes={self._nbytes}, items={len(self._items)})"
