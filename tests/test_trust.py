"""Results a reader can trust: content-addressed runs, honest intervals, the leak guard.

* Run identity = config + code + data: editing one method's file reruns exactly that method's
  cells; another data root with one changed label reruns every cell; the leaderboard keeps one
  code/data fingerprint per row and lists the superseded runs.
* Intervals include test-sample noise (checked by simulation: nominal coverage, never zero width).
* The leak guard flags a deliberately leaking method and passes every registered one (the
  conformance check ``check_test_split_never_reaches_training`` covers every registered method).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

import benchmark.cells.runner as cell_runner
from benchmark.checks.fixtures import build_csv_manifest
from benchmark.run import main
from benchmark.summary.intervals import auc_effects, honest_interval
from methods.base import FusionMethod, Stage
from tests.conftest import write_tiny_config

REPO = Path(__file__).resolve().parent.parent
SMALL = {"image_size": 32, "cache": "memory"}


def _runs(results: Path, dataset: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name(f"medfusion-{dataset}")
    return mlflow.search_runs([exp.experiment_id], filter_string="tags.runspec_key != ''")


# ----------------------------------------------------------------------------- identity

def test_editing_one_method_reruns_exactly_its_cells(tmp_path):
    """A copy of the repository: run a grid, append a comment to methods/late_fusion.py, rerun."""
    repo = tmp_path / "repo"
    for part in ("core", "methods", "datasets", "benchmark", "configs"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    results = tmp_path / "results"
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump({
        "dataset": {"name": "synthetic", "options": {"n_train": 96, "n_val": 48, "n_test": 96, "sigma_pix": 0.1,
                                                     "mc_samples": 20000}},
        "methods": ["tabular_sklearn", "late_fusion"], "missing": {"rates": [0.0]}, "seeds": [0],
        "encoders": {"image": {"model": "test_efficientnet"}, "tabular": {"hidden": [16], "dim": 16}},
        "training": {"max_epochs": 1, "batch_size": 32}, "results_dir": str(results)}))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(repo)
    command = [sys.executable, "-m", "benchmark.run", "--config", str(cfg)]

    def run() -> str:
        out = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return " ".join(out.stderr.split())

    assert "3 cells, 0 already finished, 3 to run" in run()
    with open(repo / "methods" / "late_fusion.py", "a") as fh:
        fh.write("# an edit that changes no number, but the code is not the code the runs used\n")
    assert "3 cells, 2 already finished, 1 to run" in run()
    runs = _runs(results, "synthetic")
    late = runs[runs["tags.method"] == "late_fusion"]
    assert late["tags.code_fingerprint"].nunique() == 2 and late["tags.data_fingerprint"].nunique() == 1
    assert runs[runs["tags.method"] == "tabular_sklearn"]["tags.code_fingerprint"].nunique() == 1
    md = (results / "synthetic" / "leaderboard.md").read_text()
    assert "**Superseded (not pooled):** 1 run(s) of older code or data" in md
    csv = pd.read_csv(results / "synthetic" / "leaderboard.csv")
    assert (csv[(csv.table == "summary") & (csv.metric == "test_auc") & (csv.method == "late_fusion")].n == 1).all()


def test_a_changed_label_under_another_data_root_reruns_every_cell(tmp_path):
    root_a = build_csv_manifest(tmp_path / "a")
    root_b = tmp_path / "b"
    shutil.copytree(root_a, root_b)
    cases = pd.read_csv(root_b / "cases.csv", dtype=str, keep_default_na=False)
    cases.loc[0, "malignant"] = "1" if cases.loc[0, "malignant"] == "0" else "0"
    cases.to_csv(root_b / "cases.csv", index=False)
    cfg = tmp_path / "csv.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": {"name": "csv_manifest", "options": SMALL},
                                   "methods": ["tabular_sklearn"], "missing": {"rates": [0.0, 0.3]}, "seeds": [0],
                                   "encoders": {"image": {"model": "test_efficientnet"}},
                                   "training": {"max_epochs": 1, "batch_size": 32}}))
    results = tmp_path / "results"
    args = ["--config", str(cfg), "--results-dir", str(results), "--no-leaderboard"]
    assert main(args + ["--data-root", str(root_a)]) == 0
    assert main(args + ["--data-root", str(root_a)]) == 0  # same content: everything resumed
    assert len(_runs(results, "csv_manifest")) == 2
    assert main(args + ["--data-root", str(root_b)]) == 0
    runs = _runs(results, "csv_manifest")
    assert len(runs) == 4 and runs["tags.data_fingerprint"].nunique() == 2  # every cell ran again


# ----------------------------------------------------------------------------- intervals

@pytest.mark.parametrize("shared", [True, False])
def test_intervals_cover_at_the_nominal_rate(shared):
    """Three seeds whose models differ (seed effect), on one shared or on disjoint test sets."""
    rng = np.random.default_rng(0 if shared else 1)
    n, covered, replicates = 300, 0, 300
    truth = sps.norm.cdf(1.0 / np.sqrt(2 * (1 + 0.25 ** 2)))
    for _ in range(replicates):
        y_shared, base = rng.integers(0, 2, n), None
        values, effects = [], []
        for seed in range(3):
            y = y_shared if shared else rng.integers(0, 2, n)
            if base is None or not shared:
                base = rng.normal(size=n) + y
            score = base + 0.25 * rng.normal(size=n)
            ids = np.asarray([f"{'x' if shared else seed}-{i}" for i in range(n)])
            values.append(roc_auc_score(y, score))
            effects.append(auc_effects(ids, y, score))
        summary, with_noise = honest_interval(values, effects)
        assert with_noise and summary.ci_high > summary.ci_low
        covered += summary.ci_low <= truth <= summary.ci_high
    assert 0.92 <= covered / replicates <= 0.985, covered / replicates


def test_one_seed_still_has_an_interval_and_identical_seeds_are_not_zero_width():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    score = rng.normal(size=400) + y
    effects = auc_effects(np.arange(400), y, score)
    auc = roc_auc_score(y, score)
    one, _ = honest_interval([auc], [effects])
    same, _ = honest_interval([auc] * 3, [effects] * 3)  # the Bayes row on a shared test set
    for s in (one, same):
        assert s.ci_low < auc < s.ci_high
    assert same.ci_high - same.ci_low == pytest.approx(one.ci_high - one.ci_low)


# ----------------------------------------------------------------------------- leak guard

ANSWERS: dict[str, int] = {}


class LeakyToy(FusionMethod):
    """Deliberately leaking: predicts the test labels it looked up by sample id."""

    display_name = "Leaky toy"
    registry_name = "leaky_toy"

    def __init__(self, info, encoders, **options) -> None:
        super().__init__(info, encoders, **options)
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, stage: Stage):
        return {"loss": (self.bias ** 2).sum() + 1.0}

    def predict_proba(self, batch):
        p = torch.tensor([float(ANSWERS.get(i, 0)) for i in batch.ids]) * 0.98 + 0.01
        return torch.stack([1 - p, p], dim=1) + 0 * self.bias


def test_the_leak_guard_flags_a_leaking_method(tmp_path, monkeypatch):
    cfg, results = write_tiny_config(tmp_path)
    real_create = cell_runner.create_method

    def create(name, info, encoders, options=None, **kwargs):
        if name == "late_fusion":  # the late_fusion cells run the leaky toy instead
            return LeakyToy(info, encoders)
        return real_create(name, info, encoders, options=options, **kwargs)

    real_prepared = cell_runner.CellRunner.prepared

    def prepared(self, spec):
        data, reference = real_prepared(self, spec)
        test = data.splits["test"]
        ANSWERS.update(dict(zip(test.ids.tolist(), test.labels.tolist())))
        return data, reference

    monkeypatch.setattr(cell_runner, "create_method", create)
    monkeypatch.setattr(cell_runner.CellRunner, "prepared", prepared)
    assert main(["--config", str(cfg)]) == 0
    runs = _runs(results, "synthetic")
    leaky = runs[runs["tags.method"] == "late_fusion"]
    assert (leaky["tags.leak_suspect"] == "true").all() and len(leaky) == 4
    assert runs[runs["tags.method"] == "tabular_sklearn"]["tags.leak_suspect"].isna().all()
    md = (results / "synthetic" / "leaderboard.md").read_text()
    assert "**Leak guard: 4 run(s) flagged**" in md and "above Bayes + 3 SE: leak?" in md
