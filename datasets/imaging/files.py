"""Resolving the paths a dataset's table names (case-insensitively, in one or several folders) and
building its image source, counting real missingness per view and reason.

A view whose paths resolve for no row, or for fewer than ``min_image_share`` of the rows that name
a file, is a *layout* mistake (wrong folder, wrong path template), not real missingness: it raises
one :class:`DatasetLayoutError` naming the column, the folders searched and two paths tried."""
from __future__ import annotations

import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from core.errors import DatasetLayoutError
from datasets.imaging.options import Preprocessing, RasterImageOptions
from datasets.imaging.source import MISSING_REASONS, FileImageSource

log = logging.getLogger(__name__)


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

    @property
    def bases(self) -> list[Path]:
        return [self.base]

    def tried(self, relative: str) -> list[Path]:
        """The path(s) a failed :meth:`resolve` looked at (for error messages)."""
        text = relative.strip()
        return [Path(text) if os.path.isabs(text) else self.base / text]


class SearchPath:
    """Several folders searched in order, each case-insensitively; the first hit wins.

    For releases that split one image set over folders (HAM10000's two part folders,
    PAD-UFES-20's three); names are assumed unique across the folders."""

    def __init__(self, bases: Sequence[Path]) -> None:
        if not bases:
            raise ValueError("SearchPath needs at least one folder")
        self.roots = [CaseInsensitiveFiles(Path(b)) for b in bases]
        self.base = self.roots[0].base

    @property
    def bases(self) -> list[Path]:
        return [r.base for r in self.roots]

    def resolve(self, relative: str) -> Path | None:
        for root in self.roots:
            hit = root.resolve(relative)
            if hit is not None:
                return hit
        return None

    def tried(self, relative: str) -> list[Path]:
        return [p for root in self.roots for p in root.tried(relative)]


def require_resolved(dataset: str, view: str, source: str, found: int, referenced: int, roots: Sequence[Path],
                     tried: Sequence[Sequence[Path]], threshold: float) -> None:
    """DatasetLayoutError when a view resolves for no row, or for a share of rows below ``threshold``."""
    if threshold <= 0 or (found and found >= threshold * referenced):
        return
    share = found / referenced if referenced else 0.0
    examples = "; ".join(" or ".join(str(p) for p in paths) for paths in tried[:2]) or "nothing (no row names a file)"
    raise DatasetLayoutError(
        f"dataset '{dataset}': view '{view}' ({source}) resolves to a file for {found} of {referenced} rows "
        f"({share:.0%}, below min_image_share {threshold:.0%}): a layout mistake, not missing images. Searched "
        f"{', '.join(str(r) for r in roots)}; tried e.g. {examples}. Check the image folder(s) and the path "
        "column or template, or set the dataset option min_image_share (0 turns this check off)")



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


Resolver = "CaseInsensitiveFiles | SearchPath | Sequence[CaseInsensitiveFiles | SearchPath]"


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
                       unusable: dict[str, np.ndarray] | None = None,
                       sources: dict[str, str] | None = None) -> ImageTableResult:
    """Resolve each row's file per view, check the layout, verify it decodes, count real missingness.

    ``references[view][row]`` is the path as written in the dataset's table (relative to the
    view's resolver), or None/"" when the table has no file for that view.  ``unusable[view]``
    marks views the dataset knows to be unusable (ODIR 'no fundus image').  A resolver is one
    :class:`CaseInsensitiveFiles` or :class:`SearchPath`, or a list with one per row (ODIR layout
    C: one folder per set).  ``sources[view]`` says where the paths come from (e.g. "column
    'image_path'") for the layout error of :func:`require_resolved`.
    """
    counts: dict[str, dict[str, int]] = {v: {r: 0 for r in MISSING_REASONS} for v in views}
    examples: dict[str, list[str]] = {v: [] for v in views}
    paths: dict[str, list[Path | None]] = {}
    for view in views:
        per_view = resolvers[view] if isinstance(resolvers, dict) else resolvers
        flags = unusable.get(view) if unusable else None
        roots: dict[Path, None] = {}
        tried: list[list[Path]] = []
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
            roots.update(dict.fromkeys(resolver.bases))
            path = resolver.resolve(str(ref))
            if path is None:
                counts[view]["file_not_found"] += 1
                if len(tried) < 2:
                    tried.append(resolver.tried(str(ref)))
                if len(examples[view]) < 3:
                    examples[view].append(f"{' or '.join(str(p) for p in resolver.tried(str(ref)))} not found")
                col.append(None)
                continue
            col.append(path)
        paths[view] = col
        require_resolved(dataset, view, (sources or {}).get(view, f"the paths of view '{view}'"),
                         sum(p is not None for p in col), len(col) - counts[view]["unusable"] - counts[view]["no_path"],
                         list(roots), tried, getattr(options, "min_image_share", 0.5))
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
