"""MLflow tracking: the store, the one resume rule, and a local tracking server for many writers."""
from __future__ import annotations

from benchmark.tracking.store import (KEY_TAG, StorageError, Tracker, TrackingUnavailable, experiment_name,
                                      leaderboard_dir, resolve_tracking_uri)

__all__ = ["KEY_TAG", "StorageError", "Tracker", "TrackingUnavailable", "experiment_name", "leaderboard_dir",
           "resolve_tracking_uri"]
