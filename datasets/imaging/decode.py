"""Decoding one file into its cacheable array (uint8 rasters, float32 arrays) and the final
float normalisation applied after the cache."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import DatasetLayoutError
from datasets.imaging.options import Preprocessing

IMAGENET_MEAN = np.asarray((0.485, 0.456, 0.406), dtype=np.float32)  # timm IMAGENET_DEFAULT_MEAN
IMAGENET_STD = np.asarray((0.229, 0.224, 0.225), dtype=np.float32)   # timm IMAGENET_DEFAULT_STD
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy", ".nii", ".nii.gz")
NIFTI_EXTRA = "medfusion-bench[nifti] (pip install nibabel)"


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



def finalize_float(x: np.ndarray, prep: Preprocessing, inplace: bool = False) -> np.ndarray:
    """Batch (B, C, H, W) in [0, 1] -> normalised float32 (``inplace``: overwrite ``x``, which
    must then be a writable float32 array the caller owns)."""
    x = x.astype(np.float32, copy=False)
    if prep.normalize == "imagenet":
        if x.shape[1] == 3:
            mean, std = IMAGENET_MEAN[None, :, None, None], IMAGENET_STD[None, :, None, None]
        else:
            mean, std = IMAGENET_MEAN.mean(), IMAGENET_STD.mean()
        if not inplace:
            return (x - mean) / std
        np.subtract(x, mean, out=x)
        np.divide(x, std, out=x)
    return x
