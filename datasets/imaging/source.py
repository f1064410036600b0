"""``FileImageSource``: the ``ImageSource`` protocol over files, with verification at load time
and train augmentation shared by every view of a sample."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import DatasetLayoutError
from datasets.imaging.cache import CACHE
from datasets.imaging.decode import finalize_float
from datasets.imaging.options import Preprocessing

MISSING_REASONS = ("no_path", "file_not_found", "unreadable", "unusable")


class FileImageSource:
    """``ImageSource`` over files: ``paths[view][row]`` is a Path or None (absent view)."""

    def __init__(self, paths: dict[str, Sequence[Path | None]], ids: np.ndarray, prep: Preprocessing,
                 augment: bool, cache: str = "memory", cache_dir: str | Path | None = None,
                 workers: int = 0, dataset: str = "") -> None:
        self.paths = {v: list(p) for v, p in paths.items()}
        self.ids = np.asarray(ids).astype(str)
        self.prep = prep
        self.augment = augment
        self.cache_mode = cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.dataset = dataset
        self._pending: dict[int, list[tuple[float, ...]]] = {}
        self._served: dict[int, dict[str, int]] = {}
        self._aug_seed: int | None = None
        self._n_views: np.ndarray | None = None

    # -- availability --------------------------------------------------------------------------
    def available(self) -> np.ndarray:
        """(N, V) bool: the view has a file."""
        return np.stack([np.asarray([p is not None for p in self.paths[v]], bool) for v in self.paths], axis=1) \
            if self.paths else np.zeros((len(self.ids), 0), bool)

    def verify(self) -> tuple[dict[str, list[tuple[int, str]]], tuple[int, ...] | None]:
        """Decode every referenced file once (filling the cache).

        Returns the unreadable (row, reason) per view -- the caller marks them missing -- and the
        common array shape.  Views or rows whose decoded shapes differ are a layout error.
        """
        bad: dict[str, list[tuple[int, str]]] = {}
        shape: tuple[int, ...] | None = None
        shape_from = ""
        first_kind: tuple[tuple[int, ...], bool] | None = None
        for view, paths in self.paths.items():
            rows = [r for r, p in enumerate(paths) if p is not None]

            def work(r: int) -> tuple[int, np.ndarray | None, str]:
                try:
                    return r, self._get(paths[r]), ""
                except DatasetLayoutError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any decoder failure is "unreadable"
                    return r, None, f"{type(exc).__name__}: {exc}"

            if self.workers > 1 and len(rows) > 1:
                with ThreadPoolExecutor(self.workers) as pool:
                    results = list(pool.map(work, rows))
            else:
                results = [work(r) for r in rows]
            self._n_views = None
            for r, arr, err in results:
                if arr is None:
                    bad.setdefault(view, []).append((r, err))
                    self.paths[view][r] = None
                    continue
                kind = (tuple(arr.shape), arr.dtype == np.uint8)
                if shape is None:
                    shape, shape_from, first_kind = kind[0], str(paths[r]), kind
                elif kind != first_kind:
                    what = "an image" if kind[1] else "an array"
                    raise DatasetLayoutError(
                        f"dataset '{self.dataset}': {paths[r]} (view '{view}') gives {what} of shape "
                        f"{kind[0]} but {shape_from} gave {'an image' if first_kind[1] else 'an array'} of "
                        f"shape {shape}; all views must share one kind and shape (set 'resize' for "
                        f"volumes, or convert the files)")
        return bad, shape

    def _get(self, path: Path) -> np.ndarray:
        return CACHE.get(path, self.prep, self.cache_mode, self.cache_dir)

    # -- ImageSource protocol ----------------------------------------------------------------
    def load(self, rows: np.ndarray, view: str, train: bool) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        paths = self.paths[view]
        out = []
        for r in rows:
            p = paths[r]
            if p is None:
                raise RuntimeError(
                    f"dataset '{self.dataset}': view '{view}' of sample '{self.ids[r]}' is not available "
                    "but was requested (harness bug: absent views must never be loaded)")
            try:
                stored = self._get(p)
            except DatasetLayoutError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise DatasetLayoutError(
                    f"dataset '{self.dataset}': cannot read {p} (view '{view}', sample '{self.ids[r]}'): "
                    f"{type(exc).__name__}: {exc}; set verify_images: true to treat unreadable files "
                    "as missing views") from None
            out.append(stored)
        batch = np.stack(out)
        if batch.dtype == np.uint8:  # rasters: [0, 1], augment, then ImageNet mean/std
            # uint8 until here; every float step below works in place on one (B, C, H, W) buffer
            # (the same operations in the same order as out-of-place ones: identical values).
            x = batch.astype(np.float32)
            np.divide(x, np.float32(255.0), out=x)
            if train and self.augment:
                x = self._augment(torch.from_numpy(x), rows, view, photometric=True).numpy()
            return finalize_float(x, self.prep, inplace=True)
        x = batch.astype(np.float32, copy=True)
        if train and self.augment and x.ndim == 4:  # 2-D/3-D arrays: geometric part only
            x = self._augment(torch.from_numpy(x), rows, view, photometric=False).numpy()
        return x

    # -- augmentation -----------------------------------------------------------------------
    def reset_augmentation(self) -> None:
        """Forget parameters drawn but not yet used by every view (e.g. after an interrupted batch)."""
        self._pending.clear()
        self._served.clear()

    def _params(self, rows: np.ndarray, view: str) -> np.ndarray:
        """(B, 5): hflip, vflip, angle (deg), brightness, contrast per requested row.

        The k-th training load of a sample's view uses the k-th draw of that sample; a draw comes
        from torch's global RNG (seeded by the harness at the start of every run) when the first
        view asks for it and is forgotten once every available view of the sample has used it,
        so all views of a sample in one batch share one transform and nothing carries over
        between runs.
        """
        seed = int(torch.initial_seed())
        if seed != self._aug_seed:
            self._aug_seed = seed
            self.reset_augmentation()
        if self._n_views is None:
            self._n_views = self.available().sum(axis=1)
        out = np.empty((len(rows), 5))
        for i, r in enumerate(rows.tolist()):
            queue = self._pending.setdefault(r, [])
            served = self._served.setdefault(r, {})
            k = served.get(view, 0)
            if k == len(queue):
                u = torch.rand(5, dtype=torch.float64).numpy()
                queue.append((float(u[0] < 0.5), float(u[1] < 0.5), (u[2] * 2 - 1) * 15.0,
                              1 + (u[3] * 2 - 1) * 0.1, 1 + (u[4] * 2 - 1) * 0.1))
            out[i] = queue[k]
            served[view] = k + 1
            if len(served) >= self._n_views[r] and all(c == len(queue) for c in served.values()):
                del self._pending[r], self._served[r]
        return out

    def _augment(self, x: torch.Tensor, rows: np.ndarray, view: str, photometric: bool) -> torch.Tensor:
        p = torch.from_numpy(self._params(rows, view)).to(x.dtype)
        angle = torch.deg2rad(p[:, 2])
        sx = torch.where(p[:, 0] > 0.5, -1.0, 1.0).to(x.dtype)
        sy = torch.where(p[:, 1] > 0.5, -1.0, 1.0).to(x.dtype)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos * sx, -sin * sy, torch.zeros_like(cos)], 1),
                             torch.stack([sin * sx, cos * sy, torch.zeros_like(cos)], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if photometric:  # in place on grid_sample's fresh output (same values as out of place)
            x.mul_(p[:, 3].view(-1, 1, 1, 1))
            gray = (x.mean(dim=1, keepdim=True) if x.shape[1] != 3 else
                    (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]))
            mean = gray.mean(dim=(1, 2, 3), keepdim=True)
            x.sub_(mean).mul_(p[:, 4].view(-1, 1, 1, 1)).add_(mean).clamp_(0.0, 1.0)
        return x
