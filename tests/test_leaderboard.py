"""Leaderboard statistics and files, on fake MLflow stores logged directly (no training).

The statistics are checked against scipy / scikit-learn / direct computations on known inputs;
the files against the store (byte-identical rebuilds, missing and failed runs shown, not dropped).
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np
import pandas as pd
import pytest
from conftest import STORE_TEMPLATE, empty_mlflow_store
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from scipy import stats as sps
from sklearn.metrics import accuracy_score, roc_auc_score

from benchmark.leaderboard import main
from benchmark.summary import build_leaderboards, load_runs, render_console, stats
from core.metrics import compute_metrics, delong

# ----------------------------------------------------------------------------- fake stores

REPO = Path(__file__).resolve().parent.parent
BASE_MS = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC
N_TEST = 120


def _scores(rng: np.random.Generator, labels: np.ndarray, signal: float) -> np.ndarray:
    """P(class 1) with a given separation: logistic of signal * (2y - 1) + noise."""
    z = signal * (2 * labels - 1) + rng.normal(size=len(labels))
    return 1 / (1 + np.exp(-z))




@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    """Stores live in RAM when /dev/shm exists: SQLite fsyncs every MLflow call, and the runs are
    throw-away.  The folder is removed after the module."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        root = Path(tempfile.mkdtemp(prefix="leaderboard-test-", dir=shm))
    else:
        root = tmp_path_factory.mktemp("stores")
    yield root
    shutil.rmtree(root, ignore_errors=True)
    STORE_TEMPLATE.clear()


class FakeStore:
    """Logs child runs the way ``benchmark.run`` does (tags, params, metrics, predictions.npz)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{empty_mlflow_store(root)}"
        self.client = MlflowClient(self.uri)
        self.clock = BASE_MS
        self.experiments: dict[str, str] = {}

    def experiment(self, dataset: str) -> str:
        if dataset not in self.experiments:
            self.experiments[dataset] = self.client.create_experiment(
                f"medfusion-{dataset}", artifact_location=(self.root / "mlartifacts" / dataset).as_uri())
        return self.experiments[dataset]

    def log(self, dataset: str, method: str, rate: float, seed: int, signal: float | None = 1.0,
            status: str = "FINISHED", display: str | None = None, config_hash: str = "cfg0",
            tags: dict[str, str] | None = None, pattern: str = "mixed", predictions: bool = True,
            calibration: str | None = None) -> str:
        exp = self.experiment(dataset)
        self.clock += 1000
        reference = method == "bayes_oracle"
        key = f"{dataset}-{method}-{pattern}-{rate}-{seed}-{config_hash}-{(tags or {}).get('tuned', '')}"
        all_tags = {"runspec_key": key, "method": method,
                    "method_display": display or method.replace("_", " ").capitalize(),
                    "dataset": dataset, "row_kind": "reference" if reference else "method",
                    "mask_sha256_test": f"m-{rate}-{seed}", "mask_sha256_train": f"t-{rate}-{seed}",
                    "machine": "test machine, 1 core", "mlflow.source.git.commit": "0123456789abcdef0123",
                    **(tags or {})}
        run = self.client.create_run(exp, start_time=self.clock, run_name=key)
        rid = run.info.run_id
        params = dict(method=method, dataset=dataset, pattern=pattern, protocol="both", rate=rate, seed=seed,
                      epochs=2, batch_size=32, lr=0.001, weight_decay=0.0, config_hash=config_hash)
        if calibration is not None:  # runs logged since the shared calibration step: param + proper scores
            params["calibration"] = calibration
        metrics: dict[str, float] = {}
        preds = None
        if status == "FINISHED" and signal is not None:
            rng = np.random.default_rng(seed)  # same test labels for every method of a seed
            labels = rng.integers(0, 2, N_TEST)
            ids = np.array([f"s{seed}_{i:03d}" for i in range(N_TEST)])
            mrng = np.random.default_rng(zlib.crc32(f"{method}|{rate}|{seed}|{config_hash}".encode()))
            p1 = _scores(mrng, labels, signal * (1 - rate))
            metrics = {"test_auc": roc_auc_score(labels, p1), "test_acc": accuracy_score(labels, p1 > 0.5),
                       "test_balanced_acc": 0.5, "test_f1_macro": 0.5, "population_auc": 0.9}
            for scen, scale in (("full", 1.0), ("image_missing", 0.6), ("tabular_missing", 0.5)):
                metrics[f"{scen}_auc"] = roc_auc_score(labels, _scores(mrng, labels, signal * scale))
            if calibration is not None:
                scored = compute_metrics("binary", labels, np.stack([1 - p1, p1], axis=1))
                metrics.update({f"test_{k}": scored[k] for k in ("ece", "brier", "log_loss")})
            if predictions and not reference:
                preds = dict(ids=ids, labels=labels, probs_mask=np.stack([1 - p1, p1], axis=1).astype(np.float32),
                             present_mask=np.ones((N_TEST, 2), bool))
        self.client.log_batch(
            rid, metrics=[Metric(k, float(v), self.clock, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in all_tags.items()])
        if preds is not None:
            with tempfile.TemporaryDirectory() as tmp:
                np.savez_compressed(Path(tmp) / "predictions.npz", **preds)
                self.client.log_artifact(rid, str(Path(tmp) / "predictions.npz"))
        if status != "RUNNING":
            self.client.set_terminated(rid, status, end_time=self.clock + 500)
        return rid


METHODS = {"late_fusion": 1.2, "early_fusion": 1.0, "tabular_sklearn": 0.6}
RATES = (0.0, 0.3, 0.7)
SEEDS = (0, 1, 2)


def _grid(store: FakeStore, dataset: str = "synthetic", skip: set | None = None, fail: set | None = None,
          oracle: bool = True, rates=RATES, seeds=SEEDS, predictions: bool = True) -> None:
    skip, fail = skip or set(), fail or set()
    for rate in rates:
        for seed in seeds:
            for method, signal in METHODS.items():
                if (method, rate, seed) in skip:
                    continue
                status = "FAILED" if (method, rate, seed) in fail else "FINISHED"
                store.log(dataset, method, rate, seed, signal, status=status, predictions=predictions)
            if oracle:
                store.log(dataset, "bayes_oracle", rate, seed, 2.0, display="Bayes oracle")


@pytest.fixture(scope="module")
def full_store(store_root):
    store = FakeStore(store_root / "full")
    _grid(store)
    return store


@pytest.fixture(scope="module")
def built(full_store, tmp_path_factory):
    """The full store's leaderboard, built once: (results dir, written paths)."""
    out = tmp_path_factory.mktemp("built")
    return out, build_leaderboards(full_store.uri, out, ["synthetic"])


def _files(results: Path, dataset: str = "synthetic") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((results / dataset).iterdir())}


# ----------------------------------------------------------------------------- statistics

def test_t_interval_matches_scipy_and_covers_at_nominal_rate():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=5)
    s = stats.t_interval(x)
    lo, hi = sps.t.interval(0.95, df=4, loc=x.mean(), scale=sps.sem(x))
    assert s.n == 5 and math.isclose(s.ci_low, lo, rel_tol=1e-12) and math.isclose(s.ci_high, hi, rel_tol=1e-12)
    assert math.isclose(s.std, np.std(x, ddof=1))
    # Coverage on simulated data: 4000 experiments of 3 "seeds" each.
    hits = 0
    trials = 4000
    for _ in range(trials):
        sample = rng.normal(0.8, 0.05, size=3)
        c = stats.t_interval(sample)
        hits += c.ci_low <= 0.8 <= c.ci_high
    coverage = hits / trials
    assert abs(coverage - 0.95) < 3 * math.sqrt(0.95 * 0.05 / trials) + 0.002, coverage
    # One seed: no spread, no interval (never a fake zero-width one); NaNs ignored.
    one = stats.t_interval([0.7, float("nan")])
    assert one.n == 1 and one.mean == 0.7 and math.isnan(one.std) and math.isnan(one.ci_low)


def test_paired_tests_match_scipy():
    a = np.array([0.81, 0.79, 0.84, 0.80, 0.83, 0.78, 0.82])
    b = np.array([0.78, 0.78, 0.80, 0.79, 0.80, 0.77, 0.80])
    r = stats.paired_tests(a, b)
    assert r.n == 7
    assert math.isclose(r.p_ttest, sps.ttest_rel(a, b).pvalue, rel_tol=1e-12)
    assert math.isclose(r.p_wilcoxon, sps.wilcoxon(a, b).pvalue, rel_tol=1e-12)
    assert math.isclose(r.diff.mean, float(np.mean(a - b)))
    # Wilcoxon with 3 pairs can never go below 0.25 (the reason the t-test is the one shown).
    assert stats.paired_tests(a[:3], b[:3]).p_wilcoxon >= 0.25
    # Identical methods: no difference at all.
    same = stats.paired_tests(a, a)
    assert same.p_ttest == 1.0 and same.diff.mean == 0.0


def _delong_direct(labels: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float, float]:
    """DeLong (1988) by its definition: O(m n) placement values with the Heaviside kernel."""
    pos, neg = labels == 1, labels == 0

    def components(s):
        x, y = s[pos][:, None], s[neg][None, :]
        psi = (x > y) + 0.5 * (x == y)
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    a1, v10_1, v01_1 = components(s1)
    a2, v10_2, v01_2 = components(s2)
    m, n = pos.sum(), neg.sum()
    s10 = np.cov(np.stack([v10_1, v10_2]))
    s01 = np.cov(np.stack([v01_1, v01_2]))
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return a1, a2, var


def test_delong_matches_direct_computation_and_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 150)
    s1 = np.round(_scores(rng, labels, 1.0), 2)  # rounded: ties exercise the midranks
    s2 = np.round(0.5 * s1 + 0.5 * _scores(rng, labels, 0.5), 2)
    res = stats.delong_test(labels, s1, s2)
    a1, a2, var = _delong_direct(labels, s1, s2)
    assert math.isclose(res.auc_a, roc_auc_score(labels, s1), rel_tol=1e-12)
    assert math.isclose(res.auc_b, roc_auc_score(labels, s2), rel_tol=1e-12)
    assert math.isclose(res.auc_a, a1, rel_tol=1e-12) and math.isclose(res.auc_b, a2, rel_tol=1e-12)
    assert math.isclose(res.se ** 2, var, rel_tol=1e-9)
    z = (a1 - a2) / math.sqrt(var)
    assert math.isclose(res.p, 2 * sps.norm.sf(abs(z)), rel_tol=1e-9)
    # Under the null (two equally good, independent scorers) the test rejects about 5% of the time.
    rejections = 0
    for _ in range(300):
        y = rng.integers(0, 2, 80)
        rejections += stats.delong_test(y, _scores(rng, y, 0.8), _scores(rng, y, 0.8)).p < 0.05
    assert rejections / 300 < 0.1


def test_stratified_delong_reduces_to_delong_and_counts_shared_samples_once():
    rng = np.random.default_rng(2)

    def stratum(n, prefix, seed_rng):
        y = seed_rng.integers(0, 2, n)
        return (np.array([f"{prefix}{i}" for i in range(n)]), y, _scores(seed_rng, y, 1.0), _scores(seed_rng, y, 0.7))

    one = stratum(90, "a", rng)
    single, plain = stats.delong_stratified([one]), stats.delong_test(*one[1:])
    assert math.isclose(single.diff, plain.diff, rel_tol=1e-12) and math.isclose(single.se, plain.se, rel_tol=1e-9)
    # Disjoint test sets: a mean of independent strata, var = sum(var_s) / S^2 (up to the
    # small-sample factor, I/(I-1) over all clusters instead of m_s/(m_s-1) per seed).
    strata = [stratum(90, f"s{k}_", rng) for k in range(3)]
    res = stats.delong_stratified(strata)
    direct = [_delong_direct(y, a, b) for _, y, a, b in strata]
    assert math.isclose(res.diff, np.mean([a1 - a2 for a1, a2, _ in direct]), rel_tol=1e-12)
    assert math.isclose(res.se ** 2, sum(v for *_, v in direct) / 9, rel_tol=0.03)
    # The very same samples and scores in 3 seeds: no new evidence, the SE must not shrink.
    same = stats.delong_stratified([one, one, one])
    assert math.isclose(same.se, plain.se, rel_tol=1e-9) and math.isclose(same.p, plain.p, rel_tol=1e-9)
    # Calibration under the null: two equally good methods, a test set shared by 3 seeds, and a
    # per-sample quirk of each method that every seed of it repeats (a method's bias is stable
    # across seeds).  About 5% rejections; treating the 3 copies of a sample as independent
    # samples (distinct ids: what concatenating the seeds amounts to) rejects ~4x too often.
    rejections = naive = 0
    trials = 400
    for _ in range(trials):
        y = rng.integers(0, 2, 80)
        ids = np.arange(80).astype(str)
        quirk_a, quirk_b = rng.normal(size=80), rng.normal(size=80)
        seeds = [(ids, y, _scores(rng, y, 0.8) + quirk_a, _scores(rng, y, 0.8) + quirk_b) for _ in range(3)]
        rejections += stats.delong_stratified(seeds).p < 0.05
        naive += stats.delong_stratified([(np.char.add(f"{k}_", ids), *rest)
                                          for k, (ids, *rest) in enumerate(seeds)]).p < 0.05
    assert 0.02 < rejections / trials < 0.09, rejections
    assert naive / trials > 0.15, naive


def test_area_drop_and_ranking():
    assert math.isclose(stats.normalised_area([0, 0.5, 1.0], [0.9, 0.8, 0.6]),
                        np.trapezoid([0.9, 0.8, 0.6], [0, 0.5, 1.0]) / 1.0)
    assert math.isnan(stats.normalised_area([0, 0.5], [0.9, float("nan")]))
    assert math.isclose(stats.relative_drop(0.8, 0.6), 0.25)
    # Nemenyi CD against Demšar (2006) table 5: q_0.05 = 2.343 (k=3), 2.569 (k=4), 2.728 (k=5).
    for k, q in ((3, 2.343), (4, 2.569), (5, 2.728)):
        assert math.isclose(stats.nemenyi_critical_difference(k, 10), q * math.sqrt(k * (k + 1) / 60), rel_tol=2e-3)
    scores = np.array([[0.9, 0.8, 0.7], [0.85, 0.86, 0.6], [0.7, 0.65, 0.66], [0.95, 0.9, 0.8]])
    r = stats.rank_methods(scores, ["a", "b", "c"])
    assert r.average_ranks == pytest.approx([1.25, 2.0, 2.75])
    expected = sps.friedmanchisquare(*scores.T)
    assert math.isclose(r.friedman_statistic, expected.statistic) and math.isclose(r.friedman_p, expected.pvalue)


# ----------------------------------------------------------------------------- files


def test_leaderboard_files_are_byte_identical_when_rebuilt(full_store, built, tmp_path):
    out1, written = built
    names = {p.name for p in written}
    assert {"leaderboard.md", "leaderboard.csv", "leaderboard.html", "auc_vs_rate_mixed_both.png",
            "auc_vs_rate_mixed_both.svg", "heatmap_mixed_both.png", "heatmap_mixed_both.svg", "README.md",
            "index.html"} <= names
    first = _files(out1)
    assert len(first) == 7  # md, csv, html, and the png + svg of the robustness plot and of the heatmap
    # Rebuild in a fresh process with another string-hash seed, through the CLI.
    out2 = tmp_path / "again"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "benchmark.leaderboard", "--results-dir", str(out2),
                           "--tracking-uri", full_store.uri, "--dataset", "synthetic"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _files(out2) == first
    assert (out1 / "README.md").read_bytes() == (out2 / "README.md").read_bytes()
    assert (out1 / "index.html").read_bytes() == (out2 / "index.html").read_bytes()


def test_leaderboard_content_matches_the_store(full_store, built, tmp_path):
    out = built[0]
    md = (out / "synthetic" / "leaderboard.md").read_text()
    csv = pd.read_csv(out / "synthetic" / "leaderboard.csv", keep_default_na=False, na_values=[""])
    runs = load_runs(full_store.uri, "synthetic")
    assert len(runs) == 3 * 3 * 4
    # The summary mean / interval of every cell equals the one computed from the runs directly.
    # Each seed has its own test ids here (disjoint test sets), so the interval is the seeds' spread
    # or, where the spread is smaller than the test-sample noise, the mean DeLong variance / n.
    client = MlflowClient(full_store.uri)
    for (method, rate), g in runs.groupby(["method", "rate"]):
        vals = g["metrics.test_auc"].to_numpy()
        row = csv[(csv.table == "summary") & (csv.method == method) & (csv.rate == f"{rate:g}") &
                  (csv.metric == "test_auc")].iloc[0]
        lo, hi = sps.t.interval(0.95, len(vals) - 1, loc=vals.mean(), scale=sps.sem(vals))
        if method != "bayes_oracle":
            per_seed = []
            for rid in g["run_id"]:
                (tmp_path / "effects" / rid).mkdir(parents=True)
                with np.load(client.download_artifacts(rid, "predictions.npz", str(tmp_path / "effects" / rid))) as z:
                    per_seed.append(delong(z["labels"], z["probs_mask"][:, 1].astype(float))[1][0, 0])
            n, v_bar = len(vals), float(np.mean(per_seed))
            seed_part = max(0.0, vals.var(ddof=1) - v_bar) / n
            var = seed_part + v_bar / n
            df = math.inf if seed_part == 0 else var ** 2 * (n - 1) / seed_part ** 2
            q = sps.norm.ppf(0.975) if math.isinf(df) else sps.t.ppf(0.975, df)
            lo, hi = vals.mean() - q * math.sqrt(var), vals.mean() + q * math.sqrt(var)
            assert row.interval == "seeds+test"
        assert row.n == 3 and math.isclose(row["mean"], vals.mean(), rel_tol=1e-5)
        # Pooling the seeds' ids per class changes DeLong's n/(n-1) small-sample factor (O(1/n)).
        tol = 1e-5 if method == "bayes_oracle" else 2e-3
        assert math.isclose(row.ci_low, lo, rel_tol=tol) and math.isclose(row.ci_high, hi, rel_tol=tol), (method, rate)
        assert f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}] (n=3)" in md
    # Provenance: date = latest run end in the store (not now), machine, commit, run count.
    end = pd.to_datetime(runs["end_time"], utc=True).max().strftime("%Y-%m-%d %H:%M:%S UTC")
    assert end.startswith("2026-01-01") and f"**Date:** {end}" in md
    assert "test machine, 1 core" in md and "0123456789ab" in md and "36 grid cells" in md
    assert "cfg0" in md
    # Bayes rows, robustness, paired comparisons and scenarios are there.
    assert "Bayes oracle" in md and "drop at 0.7" in md and "vs the best method" in md and "vs Late fusion" in md
    assert "image missing" in md
    # The paired DeLong in the CSV equals a direct computation on the predictions: every seed has
    # its own test ids here, so it is the mean of per-seed differences with var = sum(var_s) / S^2.
    pair = csv[(csv.table == "paired_vs_late_fusion") & (csv.method == "early_fusion") & (csv.rate == "0.3")].iloc[0]
    direct, strata = [], []
    client = MlflowClient(full_store.uri)
    for seed in SEEDS:
        preds = {}
        for method in ("early_fusion", "late_fusion"):
            rid = runs[(runs.method == method) & (runs.rate == 0.3) & (runs.seed == seed)].run_id.iloc[0]
            dst = tmp_path / rid
            dst.mkdir()
            with np.load(client.download_artifacts(rid, "predictions.npz", str(dst))) as z:
                preds[method] = (z["ids"], z["labels"], z["probs_mask"][:, 1].astype(float))
        (ids, y, a), (_, _, b) = preds["early_fusion"], preds["late_fusion"]
        direct.append(_delong_direct(y, a, b))
        strata.append((ids, y, a, b))
    diff = np.mean([a1 - a2 for a1, a2, _ in direct])
    se = math.sqrt(sum(v for *_, v in direct)) / len(SEEDS)
    assert math.isclose(pair.delong_diff, diff, rel_tol=1e-4)
    assert math.isclose(pair.p_delong, stats.delong_stratified(strata).p, rel_tol=1e-4)
    assert math.isclose(pair.delong_se, se, rel_tol=0.03)
    auc = runs[runs.rate == 0.3].set_index(["method", "seed"])["metrics.test_auc"]
    d = [auc["early_fusion", s] - auc["late_fusion", s] for s in SEEDS]
    assert math.isclose(pair.p_paired_t, sps.ttest_rel([auc["early_fusion", s] for s in SEEDS],
                                                       [auc["late_fusion", s] for s in SEEDS]).pvalue, rel_tol=1e-4)
    assert math.isclose(pair["mean"], np.mean(d), rel_tol=1e-4)
    # The compact headline and the heatmap come first, the full tables below.
    assert md.index("## Headline") < md.index("![test AUC (mixed, both)") < md.index("**Test AUC by missing rate")
    assert "| 1 | Late fusion | default |" in md and "rate 0.3: best **Late fusion**" in md
    # HTML: one self-contained page (data, script and CSS inline; the full report with its inline
    # SVG plots collapsed at the bottom) and no external resource.
    page = (out / "synthetic" / "leaderboard.html").read_text()
    assert page.count("<svg") >= 1 and "src=\"http" not in page and "<link" not in page
    assert 'id="leaderboard-data"' in page and "<details class=\"report\">" in page
    svg = (out / "synthetic" / "auc_vs_rate_mixed_both.svg").read_text()
    assert "stroke-dasharray" in svg and "missing rate" in svg and "Bayes oracle" in svg


def test_missing_and_failed_runs_are_shown_not_dropped(store_root, tmp_path):
    store = FakeStore(store_root / "missing")
    # early_fusion: seed 2 at rate 0.3 failed, rate 0.7 never run for any seed;
    # tabular_sklearn: every run at rate 0.7 failed (the row must still be there).
    fail = {("early_fusion", 0.3, 2)} | {("tabular_sklearn", 0.7, s) for s in SEEDS}
    skip = {("early_fusion", 0.7, s) for s in SEEDS}
    _grid(store, skip=skip, fail=fail)
    store.log("synthetic", "late_fusion", 0.7, 3, status="RUNNING")  # an unfinished run of a 4th seed
    out = tmp_path / "results"
    build_leaderboards(store.uri, out, ["synthetic"])
    md = (out / "synthetic" / "leaderboard.md").read_text()
    table = md.split("**Test AUC by missing rate")[1].split("\n\n")[1]
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[3:-1]]
             for line in table.splitlines()[2:]}
    assert set(lines) == {"Late fusion", "Early fusion", "Tabular sklearn", "Bayes oracle"}
    # Seeds expected = 0..3 (seed 3 appeared in a run); every complete 3-seed cell says n=3 of 4.
    assert "(n=3 of 4; 1 not run)" in lines["Early fusion"][0]
    assert "(n=2 of 4; 1 failed, 1 not run)" in lines["Early fusion"][1]
    assert lines["Early fusion"][2] == "— (n=0 of 4; 4 not run)"
    assert lines["Tabular sklearn"][2] == "— (n=0 of 4; 3 failed, 1 not run)"
    assert "(n=3 of 4; 1 running)" in lines["Late fusion"][2]
    assert lines["Early fusion"][3].startswith("— (n=0 of 4; 4 seed(s) incomplete)")
    robust = md.split("**Robustness:")[1].split("\n\n")[1]
    early = [line for line in robust.splitlines() if line.startswith("| Early fusion")][0]
    assert "(n=2 of 4)" in early and "4 seed(s) incomplete" in early  # drop over common seeds; no area
    tabular = [line for line in robust.splitlines() if line.startswith("| Tabular sklearn")][0]
    assert tabular.rstrip(" |").endswith("— (n=0 of 4)")
    csv = pd.read_csv(out / "synthetic" / "leaderboard.csv", keep_default_na=False, na_values=[""])
    cell = csv[(csv.table == "summary") & (csv.method == "tabular_sklearn") & (csv.rate == "0.7") &
               (csv.metric == "test_auc")].iloc[0]
    assert cell.n == 0 and cell.n_failed == 3 and cell.n_expected == 4 and math.isnan(cell["mean"])
    assert "failed/killed" in md and "3 failed" in md
    # The html and the console show the same.
    assert "4 not run" in (out / "synthetic" / "leaderboard.html").read_text()
    from rich.console import Console
    console = Console(record=True, width=400)
    render_console(store.uri, "synthetic", console)
    text = console.export_text()
    assert "3 failed, 1 not run" in text and "Early fusion" in text


def test_not_significant_differences_are_marked(store_root, tmp_path):
    store = FakeStore(store_root / "not")
    for seed in SEEDS:
        store.log("synthetic", "late_fusion", 0.0, seed, 1.0)
        store.log("synthetic", "late_fusion_twin", 0.0, seed, 1.0, display="Twin")  # same signal: noise only
        store.log("synthetic", "weak", 0.0, seed, 0.05, display="Weak")  # nearly random
    build_leaderboards(store.uri, tmp_path / "r", ["synthetic"])
    csv = pd.read_csv(tmp_path / "r" / "synthetic" / "leaderboard.csv", keep_default_na=False, na_values=[""])
    vs = csv[csv.table == "paired_vs_late_fusion"].set_index("method")
    assert vs.loc["late_fusion_twin", "verdict"] == "ns"
    assert vs.loc["weak", "verdict"] == "sig" and vs.loc["weak", "mean"] < -0.2
    md = (tmp_path / "r" / "synthetic" / "leaderboard.md").read_text()
    twin = [line for line in md.split("vs Late fusion")[1].splitlines() if line.startswith("| Twin")][0]
    assert " n.s. " in twin and "**" not in twin


def test_tuned_runs_are_separate_rows_and_configs_never_mixed(store_root, tmp_path):
    store = FakeStore(store_root / "tuned")
    for seed in (0, 1):
        store.log("synthetic", "late_fusion", 0.0, seed, 1.0)
        store.log("synthetic", "late_fusion", 0.0, seed, 1.5, tags={"tuned": "true", "tuning_trials": "20"})
        store.log("synthetic", "early_fusion", 0.0, seed, 1.0, config_hash="cfgA")
        store.log("synthetic", "early_fusion", 0.0, seed, 0.5, config_hash="cfgB")
    build_leaderboards(store.uri, tmp_path / "r", ["synthetic"])
    md = (tmp_path / "r" / "synthetic" / "leaderboard.md").read_text()
    assert "| Late fusion | default |" in md and "| Late fusion | tuned (20 trials) |" in md
    assert "Early fusion [cfg cfgA]" in md and "Early fusion [cfg cfgB]" in md
    assert "(n=2)" in md and "(n=4)" not in md


def test_ranking_across_datasets_and_cli(store_root, tmp_path, capsys):
    store = FakeStore(store_root / "ranking")
    for dataset in ("alpha", "beta"):  # small grids, no predictions: DeLong must say so, not fail
        _grid(store, dataset=dataset, oracle=False, rates=(0.0, 0.5), seeds=(0, 1), predictions=False)
    out = tmp_path / "results"
    assert main(["--results-dir", str(out), "--tracking-uri", store.uri]) == 0
    printed = capsys.readouterr().out
    assert "README.md" in printed
    index = (out / "README.md").read_text()
    assert "[md](alpha/leaderboard.md)" in index and "[html](beta/leaderboard.html)" in index
    assert "Average rank by AVG test AUC" in index and "Nemenyi" in index
    assert (out / "critical_difference.svg").exists() and (out / "critical_difference.png").exists()
    # Late fusion has the strongest signal on both datasets: rank 1.00.
    assert "| Late fusion | 1.00 |" in index
    md = (out / "alpha" / "leaderboard.md").read_text()
    assert "DeLong n/a (no predictions.npz)" in md


def test_calibration_table_and_header(store_root, built, tmp_path):
    """ECE / Brier / log loss per method and rate (mean over seeds, t interval over seeds), the
    calibration setting in the header; stores without these metrics say so instead of a table."""
    assert "No run of this section logged calibration metrics" in (built[0] / "synthetic" / "leaderboard.md").read_text()
    store = FakeStore(store_root / "calibration")
    for rate in (0.0, 0.5):
        for seed in (0, 1):
            store.log("synthetic", "late_fusion", rate, seed, 1.2, calibration="temperature")
            store.log("synthetic", "early_fusion", rate, seed, 0.8, calibration="temperature")
            store.log("synthetic", "bayes_oracle", rate, seed, 2.0, display="Bayes oracle", calibration="none")
    out = tmp_path / "r"
    build_leaderboards(store.uri, out, ["synthetic"])
    md = (out / "synthetic" / "leaderboard.md").read_text()
    assert "**Calibration** (one post-hoc step for every method" in md
    assert "`temperature` (early_fusion, late_fusion)" in md  # the oracle row is not a method
    table = md.split("**Calibration of the test-mask probabilities")[1].split("\n\n")[1]
    header = [c.strip() for c in table.splitlines()[0].split("|")[1:-1]]
    assert header == ["method", "training", "calibration", "trained at rate", "ECE", "Brier", "log loss"]
    late = [line for line in table.splitlines() if line.startswith("| Late fusion")]
    assert len(late) == 2 and all("| temperature |" in line and "(n=2)" in line for line in late)
    csv = pd.read_csv(out / "synthetic" / "leaderboard.csv", keep_default_na=False, na_values=[""])
    calib = csv[csv.table == "calibration"]
    assert set(calib.metric) == {"test_ece", "test_brier", "test_log_loss"}
    runs = load_runs(store.uri, "synthetic")
    for metric in ("test_ece", "test_brier", "test_log_loss"):
        vals = runs[(runs.method == "late_fusion") & (runs.rate == 0.5)][f"metrics.{metric}"].to_numpy()
        row = calib[(calib.method == "late_fusion") & (calib.rate == "0.5") & (calib.metric == metric)].iloc[0]
        lo, hi = sps.t.interval(0.95, len(vals) - 1, loc=vals.mean(), scale=sps.sem(vals))
        assert row.n == 2 and row.interval == "seeds" and math.isclose(row["mean"], vals.mean(), rel_tol=1e-5)
        assert math.isclose(row.ci_low, max(0.0, lo), rel_tol=1e-5, abs_tol=1e-12)  # the scores are >= 0
        assert math.isclose(row.ci_high, hi, rel_tol=1e-5)
        assert f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}" in table
    # The lowest method mean per (rate, metric) is bold; the oracle row never is.
    oracle = [line for line in table.splitlines() if line.startswith("| Bayes oracle")]
    assert len(oracle) == 2 and all("**" not in line for line in oracle)
    assert table.count("**") >= 2 * 3 * 2


def test_convergence_table_reports_best_and_stopping_epochs(store_root, tmp_path):
    """Median best epoch (1-based) with its range, the share selected at epoch 1, epochs trained,
    early stops and runs whose best epoch was the cap, per method row."""
    store = FakeStore(store_root / "convergence")
    script = {"late_fusion": [(3, 8, 1), (5, 10, 1)], "early_fusion": [(0, 5, 1), (9, 10, 0)]}
    for method, runs in script.items():
        for seed, (best, trained, stopped) in enumerate(runs):
            rid = store.log("synthetic", method, 0.0, seed, 1.0)
            for name, value in (("best_epoch", best), ("epochs_trained", trained), ("stopped_early", stopped)):
                store.client.log_metric(rid, name, float(value))
            store.client.log_param(rid, "max_epochs", "10")
    out = tmp_path / "r"
    build_leaderboards(store.uri, out, ["synthetic"])
    md = (out / "synthetic" / "leaderboard.md").read_text()
    table = md.split("**Convergence under the shared budget")[1].split("\n\n")[1]
    late = next(line for line in table.splitlines() if line.startswith("| Late fusion"))
    early = next(line for line in table.splitlines() if line.startswith("| Early fusion"))
    assert [c.strip() for c in late.split("|")[3:10]] == ["5 [4–6]", "0%", "9", "100%", "0", "10", "2"]
    assert [c.strip() for c in early.split("|")[3:10]] == ["5.5 [1–10]", "50%", "7.5", "50%", "1", "10", "2"]
