"""The scenario suite: its file and expansion (no training), the tags that select an entry's runs,
and the summary (gap matrix, ceiling, interaction and informative tables, claims) built from fake
MLflow stores logged directly, the way ``benchmark.run`` logs (tags, params, metrics, predictions).
"""
from __future__ import annotations

import os
import shutil
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
from sklearn.metrics import roc_auc_score

from benchmark import run as run_cli
from benchmark.leaderboard import main as leaderboard_main
from benchmark.suite import check_disjoint, entry_config, entry_grid, load_suite, tag_entry
from benchmark.suite.spec import EVALUATIONS
from benchmark.summary import build_leaderboards, build_report
from benchmark.summary.scenarios import build_suite
from core.errors import ConfigError
from methods import list_methods

BASE_MS = 1_767_225_600_000
N_TEST = 300
PREFIXES = ("test", "full", "image_missing", "tabular_missing")
SCEN = {"test": "mask", "full": "full", "image_missing": "image_missing", "tabular_missing": "tabular_missing"}

# ----------------------------------------------------------------------------- the suite file


def test_suite_file_expands_to_the_expected_entries():
    suite = load_suite("scenarios")
    names = [e.name for e in suite.entries]
    assert names == ["balanced", "interaction", "redundant_hard", "dominant", "informative_missing",
                     "informative_missing_mcar"]
    assert suite.results_dir == "results/scenarios"
    by = {e.name: e for e in suite.entries}
    assert by["redundant_hard"].evaluate == "tabular_missing"
    assert all(by[n].evaluate == "test" for n in names if n != "redundant_hard")
    assert {e.evaluate for e in suite.entries} <= set(EVALUATIONS)
    for e in suite.entries:
        assert e.overrides["methods"] == list(list_methods())  # every registered method
        assert e.overrides["dataset"]["options"]["scenario"] == e.scenario
        assert e.overrides["results_dir"] == "results/scenarios"
        assert e.overrides["seeds"] == [0, 1, 2]
    assert by["balanced"].overrides["missing"]["rates"] == [0.0, 0.3, 0.6]
    assert by["interaction"].overrides["dataset"]["options"]["interaction_lambda"] == 1.0
    for n in ("interaction", "redundant_hard", "dominant"):
        assert by[n].overrides["missing"]["rates"] == [0.0]
    info, shifted = by["informative_missing"].overrides["missing"], by["informative_missing_mcar"].overrides["missing"]
    assert info["mechanism"] == shifted["mechanism"] == "mnar" and info["strength"] == shifted["strength"] == 1.5
    assert "test_mechanism" not in info and shifted["test_mechanism"] == "mcar"
    assert by["informative_missing"].scenario == by["informative_missing_mcar"].scenario == "informative_missing"
    only = load_suite("scenarios", only=["dominant", "interaction"])
    assert [e.name for e in only.entries] == ["interaction", "dominant"]  # file order
    with pytest.raises(ConfigError, match="no entry 'nope'"):
        load_suite("scenarios", only=["nope"])


def test_suite_entries_are_valid_configs_and_never_pool():
    """Each entry validates as a normal config (CLI flags on top), and no two share a key or a
    leaderboard row: their dataset options or missing specs differ, so their config hashes do."""
    suite = load_suite("scenarios")
    cli = {"seeds": [0], "methods": ["late_fusion", "cfcml"]}
    grids = []
    for entry in suite.entries:
        cfg = entry_config(suite, entry, cli)
        assert list(cfg.methods) == ["late_fusion", "cfcml"] and list(cfg.seeds) == [0]
        assert cfg.dataset.options["scenario"] == entry.scenario
        grid = entry_grid(cfg)
        assert {s.method for s in grid} == {"late_fusion", "cfcml", "bayes_oracle"}  # the oracle is in the grid
        grids.append((entry.name, grid))
    check_disjoint(grids)
    hashes = [{s.config_hash() for s in g if s.method == "late_fusion"} for _, g in grids]
    assert all(len(h) == 1 for h in hashes) and len(set.union(*hashes)) == len(grids)
    # Two entries differing only by their rates would pool in one row: refused.
    same = [(name, grid) for name, grid in grids[:1]] * 2
    with pytest.raises(ConfigError, match="share"):
        check_disjoint([("a", same[0][1]), ("b", same[1][1])])


def test_suite_file_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries: {x: {scenario: balanced, evaluate: nonsense}}\n")
    with pytest.raises(ConfigError, match="evaluate"):
        load_suite(bad)
    bad.write_text("entries: {x: {scenario: balanced, rates: [0]}}\n")
    with pytest.raises(ConfigError, match="unknown key 'rates'"):
        load_suite(bad)
    bad.write_text("entrees: {}\n")
    with pytest.raises(ConfigError, match="unknown key 'entrees'"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="unknown suite"):
        load_suite("no_such_suite")


# ----------------------------------------------------------------------------- fake stores



@pytest.fixture(scope="module")
def root(tmp_path_factory):
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = Path(tempfile.mkdtemp(prefix="suite-test-", dir=shm))
    else:
        base = tmp_path_factory.mktemp("suite-stores")
    yield base
    shutil.rmtree(base, ignore_errors=True)
    STORE_TEMPLATE.clear()


def _probs(rng: np.random.Generator, labels: np.ndarray, signal: float) -> np.ndarray:
    p1 = 1 / (1 + np.exp(-(signal * (2 * labels - 1) + rng.normal(size=len(labels)))))
    return np.stack([1 - p1, p1], axis=1).astype(np.float32)


class SuiteStore:
    """Logs child runs of the synthetic experiment with the suite tags and predictions.npz."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.uri = f"sqlite:///{empty_mlflow_store(folder)}"
        self.client = MlflowClient(self.uri)
        self.exp = self.client.create_experiment("medfusion-synthetic",
                                                 artifact_location=(folder / "mlartifacts").as_uri())
        self.clock = BASE_MS

    def log(self, entry: str | None, method: str, rate: float, seed: int, signals: dict[str, float],
            config_hash: str, scenario: str = "balanced", evaluate: str = "test", mechanism: str = "mcar",
            ceiling: dict[str, float] | None = None, key: str | None = None, suite: str = "scenarios") -> str:
        self.clock += 1000
        ref = method == "bayes_oracle"
        key = key or f"{entry}-{method}-{rate}-{seed}-{config_hash}"
        tags = {"runspec_key": key, "method": method, "method_display": "Bayes oracle" if ref else method,
                "dataset": "synthetic", "row_kind": "reference" if ref else "method",
                "mask_sha256_test": f"{entry}-{rate}-{seed}", "mask_sha256_train": f"{entry}-t-{rate}-{seed}",
                "code_fingerprint": "c" * 16, "data_fingerprint": "d" * 16}
        if entry is not None:
            tags.update({"suite": suite, "suite_entry": entry, "suite_scenario": scenario, "suite_evaluate": evaluate,
                         "suite_test_mechanism": mechanism})
        run = self.client.create_run(self.exp, start_time=self.clock, run_name=key)
        rid = run.info.run_id
        labels = np.random.default_rng(seed).integers(0, 2, N_TEST)  # one test set per seed, every entry
        ids = np.array([f"s{seed}_{i:03d}" for i in range(N_TEST)])
        mrng = np.random.default_rng(zlib.crc32(f"{entry}|{method}|{rate}|{seed}".encode()))
        preds: dict[str, np.ndarray] = {"ids": ids, "labels": labels}
        metrics = {"population_auc": 0.9, "test_acc": 0.7, "test_balanced_acc": 0.7, "test_f1_macro": 0.7}
        for prefix in PREFIXES:
            p = _probs(mrng, labels, signals.get(prefix, signals["test"]))
            preds[f"probs_{SCEN[prefix]}"] = p
            metrics[f"{prefix}_auc"] = roc_auc_score(labels, p[:, 1])
            if ceiling is not None:
                c = _probs(mrng, labels, ceiling.get(prefix, ceiling["test"]))
                preds[f"ceiling_probs_{SCEN[prefix]}"] = c
                metrics[f"ceiling_{prefix}_auc"] = roc_auc_score(labels, c[:, 1])
        params = dict(method=method, dataset="synthetic", pattern="mixed", protocol="both", rate=rate, seed=seed,
                      config_hash=config_hash)
        self.client.log_batch(rid, metrics=[Metric(k, float(v), self.clock, 0) for k, v in metrics.items()],
                              params=[Param(k, str(v)) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        with tempfile.TemporaryDirectory() as tmp:
            np.savez_compressed(Path(tmp) / "predictions.npz", **preds)
            self.client.log_artifact(rid, str(Path(tmp) / "predictions.npz"))
        self.client.set_terminated(rid, "FINISHED", end_time=self.clock + 500)
        return rid


# Per entry: (scenario, evaluate, test mechanism, rates, {method: signals}, oracle signals, ceiling signals)
BAYES = {"test": 2.0}
ENTRIES = {
    "balanced": ("balanced", "test", "mcar", (0.0, 0.6), {
        "late_fusion": {"test": 1.9}, "early_fusion": {"test": 1.5}, "cmml": {"test": 1.9}}, BAYES, BAYES),
    "interaction": ("interaction", "test", "mcar", (0.0,), {
        "late_fusion": {"test": 1.0}, "early_fusion": {"test": 1.9}, "cfcml": {"test": 1.95}}, BAYES, {"test": 1.0}),
    "redundant_hard": ("redundant_hard", "tabular_missing", "mcar", (0.0,), {
        "early_fusion": {"test": 2.0, "tabular_missing": 0.6}, "cmml": {"test": 2.0, "tabular_missing": 1.4},
        "image_only": {"test": 0.6}}, {"test": 2.0, "tabular_missing": 1.5}, {"test": 2.0, "tabular_missing": 1.5}),
    "informative_missing": ("informative_missing", "test", "mnar", (0.6,), {
        "late_fusion": {"test": 1.8}, "early_fusion": {"test": 1.8}}, BAYES, BAYES),
    "informative_missing_mcar": ("informative_missing", "test", "mcar", (0.6,), {
        "late_fusion": {"test": 1.75}, "early_fusion": {"test": 1.0}}, BAYES, BAYES),
}
SEEDS = (0, 1, 2)


def fill(store: SuiteStore, entries: dict = ENTRIES, with_ceiling: bool = True) -> None:
    for name, (scenario, evaluate, mech, rates, methods, bayes, ceiling) in entries.items():
        for rate in rates:
            for seed in SEEDS:
                for method, signals in methods.items():
                    store.log(name, method, rate, seed, signals, f"{name}-{method}", scenario, evaluate, mech)
                store.log(name, "bayes_oracle", rate, seed, bayes, f"{name}-oracle", scenario, evaluate, mech,
                          ceiling=ceiling if with_ceiling else None)


@pytest.fixture(scope="module")
def suite_store(root):
    store = SuiteStore(root / "suite")
    fill(store)
    store.log(None, "late_fusion", 0.0, 0, {"test": 3.0}, "not-in-the-suite")  # an untagged run: never shown
    return store


@pytest.fixture(scope="module")
def built(suite_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("suite-built")
    return out, build_suite(suite_store.uri, out, "scenarios")


def _summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.csv")


def test_summary_matrix_and_claims_from_the_store(built):
    out, written = built
    names = {p.relative_to(out).as_posix() for p in written}
    assert {"summary.md", "summary.csv", "summary.html"} <= names
    for entry in ENTRIES:
        assert f"{entry}/leaderboard.md" in names and f"{entry}/leaderboard.html" in names
    md = (out / "summary.md").read_text()
    csv = _summary(out)
    gap = csv[csv.table == "gap_to_bayes"].set_index(["entry", "method"])
    # The interaction entry: late fusion sits at the ceiling, far below Bayes; early fusion near Bayes.
    assert gap.loc[("interaction", "late_fusion"), "ci_high"] < 0
    assert gap.loc[("interaction", "evidence_ceiling"), "ci_high"] < 0  # ceiling below Bayes
    assert abs(gap.loc[("balanced", "evidence_ceiling"), "mean"]) < 0.05  # balanced: ceiling = Bayes (noise only)
    assert (gap["interval"].dropna() == "seeds+test").all()
    # redundant_hard is read on the image alone: its gap uses tabular_missing_auc of both sides.
    assert gap.loc[("redundant_hard", "image_only"), "mean"] < gap.loc[("redundant_hard", "cmml"), "mean"]
    assert "Gap to Bayes" in md and "Independent-evidence ceiling" in md
    vs = csv[csv.table == "vs_ceiling"].set_index("method")
    assert vs.loc["cfcml", "verdict"] == "above the ceiling (sig.)" and vs.loc["late_fusion", "verdict"] == "n.s."
    drop = csv[csv.table == "mnar_minus_mcar"].set_index("method")
    assert drop.loc["early_fusion", "verdict"] == "sig." and drop.loc["early_fusion", "mean"] > 0
    assert drop.loc["late_fusion", "verdict"] == "n.s."
    claims = csv[csv.table == "claims"]
    assert set(claims.method) == {"cfcml", "cmml", "mdc"}  # the methods of claims.md that are registered
    by = {(r.method, r.entry): r for r in claims.itertuples()}
    assert by[("cfcml", "interaction")].verdict == "sig. better" and by[("cfcml", "interaction")].baseline == "late_fusion"
    assert by[("cmml", "redundant_hard")].verdict == "sig. better" and by[("cmml", "redundant_hard")].rates == "0"
    assert by[("cmml", "balanced")].rates == "0.6" and by[("cmml", "balanced")].verdict == "sig. better"
    assert by[("mdc", "dominant")].verdict == "entry 'dominant' not run"
    assert "arXiv 2603.20016" in md and "Claims" in md
    html = (out / "summary.html").read_text()
    assert "<table" in html and "sig. better" in html


def test_per_entry_leaderboards_select_their_own_runs(built):
    out, _ = built
    for entry, (_, _, _, _, methods, _, _) in ENTRIES.items():
        board = pd.read_csv(out / entry / "leaderboard.csv")
        assert set(board["config_hash"].dropna()) <= {f"{entry}-{m}" for m in list(methods) + ["oracle"]}
        assert set(board["method"]) - {"evidence_ceiling"} == set(methods) | {"bayes_oracle"}
        assert "not-in-the-suite" not in (out / entry / "leaderboard.md").read_text()


def test_summary_rebuild_is_byte_identical_and_cli(suite_store, built, tmp_path, capsys):
    out, written = built
    again = build_suite(suite_store.uri, tmp_path, "scenarios")
    assert [p.relative_to(tmp_path) for p in again] == [p.relative_to(out) for p in written]
    for p in ("summary.md", "summary.csv", "summary.html", "interaction/leaderboard.md"):
        assert (tmp_path / p).read_bytes() == (out / p).read_bytes(), p
    cli_out = tmp_path / "cli"
    assert leaderboard_main(["--suite", "scenarios", "--tracking-uri", suite_store.uri,
                             "--results-dir", str(cli_out)]) == 0
    assert (cli_out / "summary.md").read_bytes() == (out / "summary.md").read_bytes()
    assert (cli_out / "interaction" / "leaderboard.md").exists()
    assert not (cli_out / "synthetic").exists()  # the suite never writes the pooled dataset leaderboard


def test_ceiling_reference_only_when_the_oracle_has_ceiling_data(root, tmp_path):
    one = {"interaction": ENTRIES["interaction"]}
    with_c, without = SuiteStore(root / "with-ceiling"), SuiteStore(root / "without-ceiling")
    fill(with_c, one, with_ceiling=True)
    fill(without, one, with_ceiling=False)
    for store, expected in ((with_c, True), (without, False)):
        out = tmp_path / ("with" if expected else "without")
        build_leaderboards(store.uri, out, ["synthetic"])
        md = (out / "synthetic" / "leaderboard.md").read_text()
        csv = pd.read_csv(out / "synthetic" / "leaderboard.csv")
        assert ("Independent-evidence ceiling" in md) is expected
        assert ("evidence_ceiling" in set(csv["method"])) is expected
        svg = (out / "synthetic" / "auc_vs_rate_mixed_both.svg").read_text()
        assert ("Independent-evidence ceiling" in svg) is expected
        report = build_report(store.uri, "synthetic")
        evidence = report.page["sections"][0]["evidence"]
        if expected:
            assert set(evidence) == set(PREFIXES) and evidence["test"][0]["rate"] == 0.0
            assert 0.5 < evidence["test"][0]["m"] < report.page["sections"][0]["bayes"]["m"]
            headline = report.headlines[0]
            assert headline.evidence is not None and headline.evidence.summary.mean < headline.bayes.summary.mean
        else:
            assert evidence is None and report.headlines[0].evidence is None
        summary = build_suite(store.uri, tmp_path / f"suite-{expected}", "scenarios")
        gap = pd.read_csv([p for p in summary if p.name == "summary.csv"][0])
        ceiling = gap[(gap.table == "gap_to_bayes") & (gap.method == "evidence_ceiling")]
        assert (ceiling["n"] > 0).all() if expected else (ceiling["n"] == 0).all()


def test_tag_entry_tags_every_attempt_of_the_keys_only(root):
    store = SuiteStore(root / "tagging")
    a = store.log(None, "late_fusion", 0.0, 0, {"test": 1.0}, "h", key="k1")
    b = store.log(None, "late_fusion", 0.0, 1, {"test": 1.0}, "h", key="k2")
    tags = {"suite": "scenarios", "suite_entry": "balanced"}
    assert tag_entry(store.uri, store.folder, "synthetic", {"k1"}, tags) == 1
    assert tag_entry(store.uri, store.folder, "synthetic", {"k1"}, tags) == 0  # already tagged
    assert store.client.get_run(a).data.tags["suite_entry"] == "balanced"
    assert "suite_entry" not in store.client.get_run(b).data.tags


def test_run_suite_tags_each_entry_and_builds_the_summary(root, tmp_path, monkeypatch):
    """``--suite`` with training replaced by logging fake runs for each entry's real grid keys:
    the orchestration (configs, tags, leaderboards) without a single epoch."""
    results = tmp_path / "results"
    store = SuiteStore(results)  # the suite's store: results/mlflow.db
    seen = []

    def fake_run_benchmark(cfg, build_leaderboard=True, tuned=False, results_dir_given=False):
        assert not build_leaderboard
        scenario = cfg.dataset.options["scenario"]
        seen.append(scenario)
        for spec in entry_grid(cfg):
            signal = {"late_fusion": 1.0, "cfcml": 1.9, "bayes_oracle": 2.0}[spec.method]
            store.log(None, spec.method, spec.missing.rate, spec.seed, {"test": signal}, spec.config_hash(),
                      key=spec.key(), ceiling={"test": 1.0} if spec.method == "bayes_oracle" else None)
        return 0

    monkeypatch.setattr(run_cli, "run_benchmark", fake_run_benchmark)
    code = run_cli.main(["--suite", "scenarios", "--suite-entries", "interaction,dominant", "--methods",
                         "late_fusion", "cfcml", "--seeds", "0", "1", "--results-dir", str(results)])
    assert code == 0 and seen == ["interaction", "dominant"]
    runs = store.client.search_runs([store.exp])
    assert {r.data.tags.get("suite_entry") for r in runs} == {"interaction", "dominant"}
    assert {r.data.tags.get("suite_test_mechanism") for r in runs} == {"mcar"}
    csv = pd.read_csv(results / "summary.csv")
    cfcml = csv[(csv.table == "claims") & (csv.method == "cfcml")].iloc[0]
    assert cfcml.entry == "interaction" and cfcml.verdict in ("sig. better", "n.s.") and cfcml.n == 2
    assert (results / "interaction" / "leaderboard.md").exists() and (results / "dominant" / "leaderboard.md").exists()
