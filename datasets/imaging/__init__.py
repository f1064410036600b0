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

Modules: ``options`` (what the user sets, ``Preprocessing``), ``decode`` (one file -> array),
``cache`` (memory LRU + disk), ``source`` (``FileImageSource``, augmentation), ``files`` (path
resolution in one or several folders, the fail-fast layout check, ``build_image_source``).
"""
from __future__ import annotations

from datasets.imaging.cache import CACHE, ImageCache
from datasets.imaging.decode import decode_file, finalize_float
from datasets.imaging.files import CaseInsensitiveFiles, ImageTableResult, SearchPath, build_image_source
from datasets.imaging.options import ArrayImageOptions, Preprocessing, RasterImageOptions
from datasets.imaging.source import FileImageSource

__all__ = ["CACHE", "ImageCache", "decode_file", "finalize_float", "CaseInsensitiveFiles", "ImageTableResult",
           "SearchPath", "build_image_source", "ArrayImageOptions", "Preprocessing", "RasterImageOptions",
           "FileImageSource"]
