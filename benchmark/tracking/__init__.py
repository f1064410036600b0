"""MLflow tracking: the store, the one resume rule, and a local tracking server for many writers."""
from __future__ import annotations

from benchmark.tracking.store import KEY_TAG, Tracker, experiment_name, resolve_tracking_uri

__all__ = ["KEY_TAG", "Tracker", "experiment_name", "resolve_tracking_uri"]
