"""Public releases shipped as one metadata CSV + image folder(s), read exactly as downloaded.

A release (``ham10000``, ``pad_ufes20``) is a declarative subclass of :class:`CsvReleaseDataset`:
where its metadata file and image folders lie in each known download (detected automatically,
folder names matched case-insensitively; every image folder found is searched, in order), which
column is the sample id, the label and the group (patient or lesion), how a row names its image
file (a path template over columns), the tabular columns a clinician has at diagnosis time, the
texts the release writes for "unknown", and the columns that **leak** the label.  Leaking columns
are never inputs unless named in the option ``leaking_columns`` (a warning then says the results
are a leakage demonstration).

Reading is ``csv_manifest``'s: the subclass becomes one inline :class:`ManifestSpec`, so the rules
are the same (an empty cell or an NA text is real missingness: NaN or an unknown category; an
absent image is a missing view; a view that resolves for fewer than ``min_image_share`` of the
rows is a layout error naming the folders searched).  The seeded 70/10/20 split is grouped:
no patient or lesion is in two splits.  A missing metadata file raises "file X missing, expected
at Y" with the accepted layouts and the download address.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.contract import SampleTable, TaskType
from core.errors import ConfigError, DatasetLayoutError
from datasets.base import BenchmarkDataset
from datasets.csv_manifest import ManifestSpec, manifest_table
from datasets.imaging import RasterImageOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CsvReleaseOptions(RasterImageOptions):
    """Options every release has; a subclass narrows ``task`` and ``group_by`` to its own choices."""

    task: str = ""
    group_by: str = ""                    # the group column of the split, or "none" (ungrouped: leaks)
    leaking_columns: tuple[str, ...] = ()  # LEAKAGE DEMO ONLY: add these label-leaking columns as inputs


def find_path(root: Path, relative: str) -> Path | None:
    """``root / relative``, each component matched exactly first, then ignoring case; None if absent."""
    path = root
    for part in Path(relative).parts:
        if part == ".":
            continue
        if (path / part).exists():
            path = path / part
            continue
        hits = sorted(c for c in path.iterdir() if c.name.lower() == part.lower()) if path.is_dir() else []
        if not hits:
            return None
        path = hits[0]
    return path


def holds_files(folder: Path, suffix: str) -> bool:
    """True if ``folder`` directly contains a file ending in ``suffix`` (any case); stops at the first."""
    with os.scandir(folder) as entries:
        return any(e.is_file() and e.name.lower().endswith(suffix) for e in entries)


class CsvReleaseDataset(BenchmarkDataset):
    """Base of the metadata-CSV releases; subclasses only declare (see the module docstring)."""

    metadata_files: ClassVar[tuple[str, ...]] = ()   # candidates relative to the root, first found wins
    image_dirs: ClassVar[tuple[str, ...]] = ()       # candidates ("." = the root); every one found is searched
    image_suffix: ClassVar[str] = ".jpg"             # a candidate folder counts if it holds such files
    layouts: ClassVar[str] = ""                      # the accepted layouts, for error messages
    layout_hints: ClassVar[dict[str, str]] = {}      # file present without the metadata -> what to do
    id_column: ClassVar[str] = ""
    label_column: ClassVar[str] = ""
    path_template: ClassVar[str] = ""                # e.g. "{image_id}.jpg"
    numeric: ClassVar[tuple[str, ...]] = ()          # tabular inputs known at diagnosis time
    categorical: ClassVar[tuple[str, ...]] = ()
    leaking: ClassVar[dict[str, str]] = {}           # column -> "numeric" | "categorical"; never a default input
    na_values: ClassVar[tuple[str, ...]] = ()        # cell texts meaning "unknown" (real missingness)
    tasks: ClassVar[dict[str, tuple[TaskType, tuple[str, ...], dict[str, str]]]] = {}  # task -> kind, classes, map
    licence: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    Options = CsvReleaseOptions

    def __init__(self, root: Any = None, **options: Any) -> None:
        super().__init__(root, **options)
        o = self.options
        self.task, self.class_names, self.label_map = self.tasks[o.task]
        odd = [c for c in o.leaking_columns if c not in self.leaking]
        if odd:
            raise ConfigError(f"dataset '{self.registry_name}' options.leaking_columns: '{odd[0]}' is not a known "
                              f"leaking column of this release ({', '.join(self.leaking)})")
        self.metadata = self._find_metadata()
        self.image_roots = self._find_image_dirs()

    def _find_metadata(self) -> Path:
        for candidate in self.metadata_files:
            path = find_path(self.root, candidate)
            if path is not None and path.is_file():
                return path
        hints = dict.fromkeys(h for name, h in self.layout_hints.items() if find_path(self.root, name) is not None)
        raise DatasetLayoutError(
            f"dataset '{self.registry_name}': file {self.metadata_files[0]} missing, expected at "
            f"{self.root / self.metadata_files[0]}{''.join(f' ({h})' for h in hints)}. Accepted layouts: "
            f"{self.layouts}. Download: {self.source_url}")

    def _find_image_dirs(self) -> list[Path]:
        found: dict[Path, Path] = {}  # real path -> as found (the root "." may also be another candidate)
        for candidate in self.image_dirs:
            path = find_path(self.root, candidate)
            if path is not None and path.is_dir() and holds_files(path, self.image_suffix):
                found.setdefault(path.resolve(), path)
        if not found:
            raise DatasetLayoutError(
                f"dataset '{self.registry_name}': no image folder under {self.root}: expected one of "
                f"{', '.join(d + '/' for d in self.image_dirs if d != '.')} (or the root itself) holding "
                f"*{self.image_suffix} files. Accepted layouts: {self.layouts}. Download: {self.source_url}")
        return list(found.values())

    def manifest_spec(self) -> ManifestSpec:
        """The release as a csv_manifest spec: default inputs plus the leaking columns asked for."""
        o = self.options
        leak = {kind: tuple(c for c in o.leaking_columns if self.leaking[c] == kind) for kind in ("numeric",
                                                                                                   "categorical")}
        spec = ManifestSpec(
            manifest=str(self.metadata), id_column=self.id_column, task=self.task, label_columns=(self.label_column,),
            views={self.views[0]: self.path_template}, image_root=tuple(str(d) for d in self.image_roots),
            numeric=self.numeric + leak["numeric"], categorical=self.categorical + leak["categorical"],
            group_column=None if o.group_by == "none" else o.group_by, class_names=self.class_names,
            label_map=dict(self.label_map), na_values=self.na_values)
        spec.validate(f"dataset '{self.registry_name}'")
        return spec

    def load_table(self) -> SampleTable:
        o = self.options
        if o.leaking_columns:
            log.warning("dataset '%s': leaking_columns %s are ON — they are decided by the diagnosis, so results "
                        "with them are a LEAKAGE DEMONSTRATION, not a benchmark result", self.registry_name,
                        list(o.leaking_columns))
        if o.group_by == "none":
            log.warning("dataset '%s': group_by none — images of one patient/lesion can land in train and test, "
                        "which inflates every score", self.registry_name)
        table, _ = manifest_table(self.manifest_spec(), self.root, o, self.registry_name)
        groups = "" if table.groups is None else f", {len(np.unique(table.groups))} groups ({o.group_by})"
        log.info("dataset '%s': %d images from %s, images searched in %s%s", self.registry_name, len(table.ids),
                 self.metadata.name, ", ".join(str(p) for p in self.image_roots), groups)
        return table
