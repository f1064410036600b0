"""Image options shared by the file-based datasets and the hashable :class:`Preprocessing`
that fully describes how a file becomes an array (part of the image cache key)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from core.errors import ConfigError


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
    min_image_share: float = 0.5          # a view whose paths resolve for fewer rows is a layout error; 0 = off

    def validate(self, where: str) -> None:
        if not 0.0 <= self.min_image_share <= 1.0:
            raise ConfigError(f"{where}.min_image_share: must be in [0, 1], got {self.min_image_share}")
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
