"""Fusion-method registry: ``@register_method("name")``, ``create_method``, ``list_methods``.

Modelled on timm: every module in this package is imported on first use, so adding a method is
adding one file with a decorated class.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from core.registry import Registry

METHODS: Registry = Registry("method")
register_method = METHODS.register


def import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def create_method(name: str, info, encoders, options: Any = None, **kwargs: Any):
    """Build a registered method for a dataset's ``DatasetInfo`` and the shared encoder config.

    ``options`` may be the method's validated ``Options`` instance (what the harness passes) or a
    mapping; keyword arguments are options too."""
    import_all()
    return METHODS.create(name, info, encoders, options=options, **kwargs)


def list_methods(pattern: str = "*") -> list[str]:
    import_all()
    return METHODS.list(pattern)


def get_method_class(name: str):
    import_all()
    return METHODS.get(name)
