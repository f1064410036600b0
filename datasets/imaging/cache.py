"""The decoded-image cache: memory LRU (``MEDFUSION_IMAGE_CACHE_MB``) plus optional ``.npy``
files on disk, so a grid over methods, rates and seeds decodes each file once."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from datasets.imaging.decode import decode_file
from datasets.imaging.options import Preprocessing

log = logging.getLogger(__name__)


def _memory_budget() -> int:
    try:
        return int(float(os.environ.get("MEDFUSION_IMAGE_CACHE_MB", "2048")) * 2 ** 20)
    except ValueError:
        raise ConfigError("MEDFUSION_IMAGE_CACHE_MB: expected a number of megabytes") from None


class ImageCache:
    """Decoded-and-resized arrays keyed by (file, size, mtime, preprocessing); memory LRU + disk."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = _memory_budget() if max_bytes is None else max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.disk_hits = self.evictions = 0
        self._warned_full = False

    @staticmethod
    def key(path: Path, prep: Preprocessing) -> str:
        st = path.stat()
        raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{prep.key()}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = self.disk_hits = self.evictions = 0

    def get(self, path: Path, prep: Preprocessing, mode: str, cache_dir: Path | None) -> np.ndarray:
        """The cached array of ``path``, decoding it on a miss. Raises on an unreadable file."""
        if mode == "none":
            self.misses += 1
            return decode_file(path, prep)
        key = self.key(path, prep)
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return arr
        disk = cache_dir / key[:2] / f"{key}.npy" if (mode == "disk" and cache_dir is not None) else None
        if disk is not None and disk.exists():
            try:
                arr = np.load(disk, allow_pickle=False)
                self.disk_hits += 1
            except (OSError, ValueError):
                arr = None  # a torn cache file is rebuilt
        if arr is None:
            self.misses += 1
            arr = decode_file(path, prep)
            if disk is not None:
                disk.parent.mkdir(parents=True, exist_ok=True)
                tmp = disk.with_name(f"{disk.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
                np.save(tmp, arr)
                tmp.replace(disk)
        arr.setflags(write=False)
        self._put(key, arr)
        return arr

    def _put(self, key: str, arr: np.ndarray) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = arr
            self._bytes += arr.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
                self.evictions += 1
                if not self._warned_full:
                    self._warned_full = True
                    log.warning("image memory cache is full (%d MB, MEDFUSION_IMAGE_CACHE_MB); images "
                                "will be decoded again each epoch: raise the budget or set cache: disk",
                                self.max_bytes // 2 ** 20)


CACHE = ImageCache()
