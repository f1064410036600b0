"""Dataset registry: ``@register_dataset("name")``, ``create_dataset``, ``list_datasets``.

Every module in this package is imported on first use, so adding a dataset is adding one file.
Note: this top-level package shadows HuggingFace ``datasets``; this project never uses that one.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from core.registry import Registry

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register


def import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", "preparation", "splitting"):
            importlib.import_module(f"{__name__}.{info.name}")


def create_dataset(name: str, root: str | None = None, **options: Any):
    """Instantiate a registered dataset; options are validated by the dataset's Options class.

    The layout is checked here (``BenchmarkDataset.check_layout``: every file path resolved, none
    decoded), so a wrong folder stops the CLI before any grid cell starts."""
    import_all()
    dataset = DATASETS.create(name, root, **options)
    dataset.check_layout()
    return dataset


def list_datasets(pattern: str = "*") -> list[str]:
    import_all()
    return DATASETS.list(pattern)


def get_dataset_class(name: str):
    import_all()
    return DATASETS.get(name)
