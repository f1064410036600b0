"""Image reading, preprocessing, caching and train augmentation shared by the file-based datasets.

Why one module: every real dataset must preprocess images the same way (datasets spec section 1),
and a grid over methods x rates x seeds must not decode the same JPEG hundreds of times.  So:

* :class:`Preprocessing` is the complete, hashable description of how a file becomes an array.
  2-D rasters (png/jpg/bmp/tif): RGB (or L) -> optional black-border crop -> square resize to
  ``image_size`` -> stored as uint8; at load time -> float in [0, 1] -> (train augmentation) ->
  ImageNet mean/std (timm's default cfg) unless ``normalize: unit``.  Arrays (``.npy``,
  ``.nii``/``.nii.gz``): 1-D = a precomputed embedding, returned as is (``DatasetInfo``
  then has ``image_channels = E`` and ``image_shape = ()``); 2-D = one-channel image resized
  to ``image_size``;
  3-D ``D x H x W`` volume -> ``clip`` -> ``zscore`` -> trilinear resize to ``resize`` and then
  **slices as channels**: the volume becomes a ``D``-channel 2-D image, so the shared timm 2-D
  encoder sees it with ``in_chans = D``, identically for every method.
* :class:`ImageCache` keeps the decoded-and-resized array keyed by (file, size, mtime,
  preprocessing): in memory (LRU, ``MEDFUSION_IMAGE_CACHE_MB``, default 2048 MB) and, with
  ``cache: disk``, as ``.npy`` files under ``cache_dir`` so that separate processes share it.
* :class:`FileImageSource` implements the ``ImageSource`` protocol for a table of file paths.
  ``verify()`` decodes every referenced file once at load time: a file that is absent or cannot
  be decoded is *real missingness* (the view is marked unavailable, counted and reported), never
  a silent zero image at training time.
* Train augmentation (``augment: true``, spec section 1): h/v flip, rotation in +-15 degrees
  (zero fill), brightness/contrast +-0.1 (rasters only; arrays get the geometric part, applied
  to every slice alike).  Parameters are drawn per sample from torch's global RNG, which the
  harness seeds at the start of every run, and shared by every view of the sample in the batch:
  the same geometric transform for all views (CFCML does this), reproducible under the run seed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import ConfigError, DatasetLayoutError

log = logging.getLogger(__name__)

IMAGENET_MEAN = np.asarray((0.485, 0.456, 0.406), dtype=np.float32)  # timm IMAGENET_DEFAULT_MEAN
IMAGENET_STD = np.asarray((0.229, 0.224, 0.225), dtype=np.float32)   # timm IMAGENET_DEFAULT_STD
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy", ".nii", ".nii.gz")
NIFTI_EXTRA = "medfusion-bench[nifti] (pip install nibabel)"


# ------------------------------------------------------------------------------------------------
# options shared by the datasets' Options dataclasses
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RasterImageOptions:
    """Image options of datasets whose images are photographs (Derm7pt, ODIR)."""

    image_size: int = 224                 # square side after resize (224 real runs, 64 CPU presets)
    crop_border: int = 0                  # black border crop in source pixels (official Derm7pt: 25)
    normalize: Literal["imagenet", "unit"] = "imagenet"  # unit = [0, 1] only (CFCML divides by 255)
    augment: bool = True                  # train-time flips/rotation/brightness/contrast
    verify_images: bool = True            # decode every image at load time; unreadable = missing
    cache: Literal["memory", "disk", "none"] = "memory"
    cache_dir: str = ".cache/medfusion/images"  # used when cache is 'disk'
    workers: int = 0                      # decoding threads; 0 = min(8, CPU count)

    def validate(self, where: str) -> None:
        if self.image_size < 8:
            raise ConfigError(f"{where}.image_size: must be >= 8, got {self.image_size}")
        if self.crop_border < 0:
            raise ConfigError(f"{where}.crop_border: must be >= 0, got {self.crop_border}")
        if self.workers < 0:
            raise ConfigError(f"{where}.workers: must be >= 0, got {self.workers}")


@dataclass(frozen=True)
class ArrayImageOptions(RasterImageOptions):
    """Adds the array/volume options of the manifest datasets (spec section 4)."""

    channels: Literal[1, 3] = 3                       # rasters read as RGB (3) or grayscale (1)
    clip: tuple[float, float] | None = None           # arrays: clip intensities to [lo, hi]
    zscore: Literal["nonzero", "all", "none"] = "none"  # arrays: per-volume z-score
    resize: tuple[int, ...] | None = None             # 3-D volumes: [D, H, W] (D = channels)
    nifti_axes: Literal["zyx", "xyz"] = "zyx"         # nibabel gives (x, y, z); zyx = depth first

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.clip is not None and (len(self.clip) != 2 or self.clip[0] >= self.clip[1]):
            raise ConfigError(f"{where}.clip: expected [lo, hi] with lo < hi, got {list(self.clip)}")
        if self.resize is not None and (len(self.resize) != 3 or min(self.resize) < 1):
            raise ConfigError(f"{where}.resize: expected [D, H, W] of positive integers, got {list(self.resize)}")


@dataclass(frozen=True)
class Preprocessing:
    """Everything that determines the cached array of a file (part of the cache key)."""

    image_size: int = 224
    channels: int = 3
    crop_border: int = 0
    normalize: str = "imagenet"
    clip: tuple[float, float] | None = None
    zscore: str = "none"
    resize: tuple[int, ...] | None = None
    nifti_axes: str = "zyx"

    @classmethod
    def from_options(cls, o: RasterImageOptions) -> "Preprocessing":
        return cls(image_size=o.image_size, channels=getattr(o, "channels", 3), crop_border=o.crop_border,
                   normalize=o.normalize, clip=getattr(o, "clip", None), zscore=getattr(o, "zscore", "none"),
                   resize=getattr(o, "resize", None), nifti_axes=getattr(o, "nifti_axes", "zyx"))

    def key(self) -> str:
        """Only the decode-time fields: normalisation is applied after the cache."""
        d = asdict(self)
        d.pop("normalize")
        return json.dumps(d, sort_keys=True)


def file_kind(path: Path) -> Literal["raster", "array"]:
    name = path.name.lower()
    if name.endswith(RASTER_SUFFIXES):
        return "raster"
    if name.endswith(ARRAY_SUFFIXES):
        return "array"
    raise DatasetLayoutError(
        f"{path}: unsupported image format; expected one of {', '.join(RASTER_SUFFIXES + ARRAY_SUFFIXES)}")


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------
def decode_raster(path: Path, prep: Preprocessing) -> np.ndarray:
    """uint8 (C, S, S): mode conversion, optional border crop, square resize (bilinear, antialiased)."""
    from PIL import Image

    size = prep.image_size
    with Image.open(path) as img:
        full_w, full_h = img.size
        mode = "RGB" if prep.channels == 3 else "L"
        # JPEG draft decoding: decode at the smallest 1/2^k scale still >= the target size.
        target = (size + 2 * prep.crop_border, size + 2 * prep.crop_border)
        img.draft(mode, target)
        scale = img.size[0] / full_w
        img = img.convert(mode)
        if prep.crop_border:
            c = int(round(prep.crop_border * scale))
            w, h = img.size
            if 2 * c >= min(w, h):
                raise ValueError(f"crop_border {prep.crop_border} is larger than the image ({full_w}x{full_h})")
            img = img.crop((c, c, w - c, h - c))
        img = img.resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def read_array(path: Path, prep: Preprocessing) -> np.ndarray:
    """Raw float32 array from ``.npy`` or NIfTI (through the optional nibabel extra)."""
    name = path.name.lower()
    if name.endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
    else:
        try:
            import nibabel as nib
        except ImportError:
            raise DatasetLayoutError(
                f"{path}: reading NIfTI needs the optional extra {NIFTI_EXTRA}") from None
        arr = np.asarray(nib.load(str(path)).dataobj)
        if arr.ndim == 3 and prep.nifti_axes == "zyx":
            arr = arr.transpose(2, 1, 0)
    return np.asarray(arr, dtype=np.float32)


def preprocess_array(arr: np.ndarray, prep: Preprocessing, path: Path) -> np.ndarray:
    """1-D: embedding as is; 2-D: (1, S, S); 3-D: (D, H, W) = D channels after clip/zscore/resize."""
    if arr.ndim == 1:
        return np.ascontiguousarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"array of shape {arr.shape}: expected 1-D (embedding), 2-D or 3-D (D, H, W)")
    if not np.isfinite(arr).all():
        raise ValueError("array contains NaN or infinite values")
    if prep.clip is not None:
        arr = np.clip(arr, prep.clip[0], prep.clip[1])
    if prep.zscore != "none":
        region = arr > 0 if prep.zscore == "nonzero" else np.ones(arr.shape, bool)
        if region.any():
            mean, std = float(arr[region].mean()), float(arr[region].std())
            std = std if std > 1e-8 else 1.0
            # nonzero: the background stays exactly 0 (nnU-Net style); all: every voxel.
            arr = np.where(region, (arr - mean) / std, 0.0).astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if arr.ndim == 2:
        s = prep.image_size
        out = F.interpolate(t[None, None], size=(s, s), mode="bilinear", align_corners=False)[0]
        return out.numpy()
    if prep.resize is not None:
        t = F.interpolate(t[None, None], size=tuple(prep.resize), mode="trilinear", align_corners=False)[0, 0]
    return np.ascontiguousarray(t.numpy())


def decode_file(path: Path, prep: Preprocessing) -> np.ndarray:
    """The cacheable form of a file: uint8 (C, S, S) for rasters, float32 for arrays."""
    if file_kind(path) == "raster":
        return decode_raster(path, prep)
    return preprocess_array(read_array(path, prep), prep, path)


# ------------------------------------------------------------------------------------------------
# cache
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# file index (case-insensitive lookup)
# ------------------------------------------------------------------------------------------------
class CaseInsensitiveFiles:
    """Resolve relative paths under a directory exactly first, then ignoring case.

    Derm7pt's ``meta.csv`` says ``NEL/NEL025.JPG`` where the file is ``NEL/Nel025.jpg``: on a
    case-sensitive file system an exact lookup would silently lose the image.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self._index: dict[str, list[Path]] | None = None

    def _build(self) -> dict[str, list[Path]]:
        index: dict[str, list[Path]] = {}
        if self.base.is_dir():
            for dirpath, _, files in os.walk(self.base):
                for f in files:
                    full = Path(dirpath) / f
                    rel = full.relative_to(self.base).as_posix().lower()
                    index.setdefault(rel, []).append(full)
        return index

    def resolve(self, relative: str) -> Path | None:
        text = relative.strip()
        if not text:
            return None
        if os.path.isabs(text):  # manifests may give absolute paths
            return Path(text) if Path(text).is_file() else None
        rel = posixpath.normpath(text.replace("\\", "/"))
        exact = self.base / rel
        if exact.is_file():
            return exact
        if self._index is None:
            self._index = self._build()
        hits = self._index.get(rel.lower(), [])
        if len(hits) > 1:
            raise DatasetLayoutError(
                f"{self.base}: '{relative}' matches several files that differ only in case: "
                f"{', '.join(str(h) for h in hits)}")
        return hits[0] if hits else None


# ------------------------------------------------------------------------------------------------
# the ImageSource
# ------------------------------------------------------------------------------------------------
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
            x = batch.astype(np.float32) / 255.0
            if train and self.augment:
                x = self._augment(torch.from_numpy(x), rows, view, photometric=True).numpy()
            return finalize_float(x, self.prep)
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
        if photometric:
            x = x * p[:, 3].view(-1, 1, 1, 1)
            gray = (x.mean(dim=1, keepdim=True) if x.shape[1] != 3 else
                    (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]))
            mean = gray.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * p[:, 4].view(-1, 1, 1, 1) + mean).clamp(0.0, 1.0)
        return x


def finalize_float(x: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Batch (B, C, H, W) in [0, 1] -> normalised float32."""
    x = x.astype(np.float32, copy=False)
    if prep.normalize == "imagenet":
        if x.shape[1] == 3:
            x = (x - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
        else:
            x = (x - IMAGENET_MEAN.mean()) / IMAGENET_STD.mean()
    return x


def report_missing(dataset: str, views: Iterable[str], counts: dict[str, dict[str, int]],
                   examples: dict[str, list[str]]) -> None:
    """One warning summarising the real missingness per view (never silent)."""
    parts = []
    for view in views:
        c = counts.get(view, {})
        items = [f"{reason} {c[reason]}" for reason in MISSING_REASONS if c.get(reason)]
        if items:
            parts.append(f"{view}: " + ", ".join(items))
    if parts:
        ex = [e for v in views for e in examples.get(v, [])][:3]
        log.warning("dataset '%s': real missing views (kept as missing, not dropped): %s%s", dataset,
                    "; ".join(parts), (" — e.g. " + " | ".join(ex)) if ex else "")


Resolver = "CaseInsensitiveFiles | Sequence[CaseInsensitiveFiles]"


@dataclass
class ImageTableResult:
    source: FileImageSource
    view_available: np.ndarray                 # (N, V) bool
    counts: dict[str, dict[str, int]]          # view -> reason -> count
    image_shape: tuple[int, ...] | None        # the common decoded shape (None if not verified)


def build_image_source(dataset: str, views: Sequence[str], ids: np.ndarray,
                       references: dict[str, Sequence[str | None]],
                       resolvers: "dict[str, Resolver] | Resolver",
                       options: RasterImageOptions,
                       unusable: dict[str, np.ndarray] | None = None) -> ImageTableResult:
    """Resolve each row's file per view, verify it decodes, and count real missingness.

    ``references[view][row]`` is the path as written in the dataset's table (relative to the
    view's resolver), or None/"" when the table has no file for that view.  ``unusable[view]``
    marks views the dataset knows to be unusable (ODIR 'no fundus image').  A resolver is one
    :class:`CaseInsensitiveFiles` or a list with one per row (ODIR layout C: one folder per set).
    """
    counts: dict[str, dict[str, int]] = {v: {r: 0 for r in MISSING_REASONS} for v in views}
    examples: dict[str, list[str]] = {v: [] for v in views}
    paths: dict[str, list[Path | None]] = {}
    for view in views:
        per_view = resolvers[view] if isinstance(resolvers, dict) else resolvers
        flags = unusable.get(view) if unusable else None
        col: list[Path | None] = []
        for r, ref in enumerate(references[view]):
            if flags is not None and flags[r]:
                counts[view]["unusable"] += 1
                col.append(None)
                continue
            if ref is None or (isinstance(ref, float) and ref != ref) or not str(ref).strip():
                counts[view]["no_path"] += 1
                col.append(None)
                continue
            resolver = per_view[r] if isinstance(per_view, (list, tuple)) else per_view
            path = resolver.resolve(str(ref))
            if path is None:
                counts[view]["file_not_found"] += 1
                if len(examples[view]) < 3:
                    examples[view].append(f"{resolver.base / str(ref).strip()} not found")
                col.append(None)
                continue
            col.append(path)
        paths[view] = col
    source = FileImageSource(paths, ids, Preprocessing.from_options(options), options.augment,
                             options.cache, options.cache_dir, options.workers, dataset)
    shape = None
    if options.verify_images:
        bad, shape = source.verify()
        for view, items in bad.items():
            counts[view]["unreadable"] += len(items)
            for r, err in items[:3]:
                examples[view].append(f"{references[view][r]} unreadable ({err})")
    report_missing(dataset, views, counts, examples)
    return ImageTableResult(source, source.available(), counts, shape)
