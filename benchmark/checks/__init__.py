"""Conformance checks importable from the package (scikit-learn's ``utils.estimator_checks`` is the
model): ``methods`` for every fusion method, ``datasets`` for every dataset on fabricated folders
(``fixtures`` writes them with the real file layouts)."""
from __future__ import annotations

from benchmark.checks.datasets import DATASET_CHECKS, DATASET_FIXTURES, check_dataset
from benchmark.checks.methods import METHOD_CHECKS, check_method, mixed_presence, tiny_data, tiny_encoders

__all__ = ["DATASET_CHECKS", "DATASET_FIXTURES", "METHOD_CHECKS", "check_dataset", "check_method",
           "mixed_presence", "tiny_data", "tiny_encoders"]
