"""Shared fixtures: tiny synthetic data fabricated at test time (no files, no network)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark.checks.methods import TINY_SYNTHETIC, tiny_encoders
from core.masks import MissingSpec
from datasets import create_dataset

torch.set_num_threads(1)

TINY = TINY_SYNTHETIC


@pytest.fixture(scope="session")
def tiny_dataset():
    return create_dataset("synthetic", **TINY)


@pytest.fixture(scope="session")
def tiny_table(tiny_dataset):
    return tiny_dataset.load_table()


@pytest.fixture(scope="session")
def tiny_data(tiny_dataset, tiny_table):
    return tiny_dataset.prepare(tiny_table, MissingSpec("mixed", 0.5, "both"), seed=0)


@pytest.fixture(scope="session")
def encoder_config():
    return tiny_encoders()


TINY_GRID_CONFIG = """
dataset:
  name: synthetic
  options: {{n_train: 96, n_val: 48, n_test: 96, sigma_pix: 0.1, mc_samples: 20000}}
methods: [tabular_sklearn, late_fusion]
missing: {{pattern: mixed, protocol: both, rates: [0.0, 0.5]}}
seeds: [0, 1]
encoders:
  image: {{model: test_efficientnet}}
  tabular: {{hidden: [16], dim: 16}}
training: {{max_epochs: {epochs}, batch_size: 32}}
results_dir: {results}
"""


def write_tiny_config(tmp_path: Path, epochs: int = 1) -> tuple[Path, Path]:
    """A 12-cell grid (2 methods + oracle x 2 rates x 2 seeds) on tiny synthetic data."""
    results = tmp_path / "results"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_GRID_CONFIG.format(epochs=epochs, results=results))
    return cfg, results



STORE_TEMPLATE: dict[str, Path] = {}  # cleared by the fixtures that own the folder it lives in


def empty_mlflow_store(folder: Path) -> Path:
    """A migrated, empty MLflow SQLite file in ``folder``: created once, then copied (migrations
    take seconds), for tests that fabricate stores."""
    if "db" not in STORE_TEMPLATE or not STORE_TEMPLATE["db"].exists():  # its folder may be gone
        template = folder.parent / "template" / "mlflow.db"
        template.parent.mkdir(parents=True, exist_ok=True)
        MlflowClient(f"sqlite:///{template}").search_experiments()
        STORE_TEMPLATE["db"] = template
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(STORE_TEMPLATE["db"], folder / "mlflow.db")
    return folder / "mlflow.db"
