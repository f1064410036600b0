"""Equal-budget tuning: search-space validation, a tiny study that is interrupted and resumed
without repeating finished trials, pruning, no test access, the tuned file, and ``run --tuned``."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import benchmark.run as run_module
import benchmark.tune as tune_module
import benchmark.tuning as tuning
import benchmark.tuning.trial as trial_module
import datasets.preparation as data_module
from benchmark.config import load_config, method_defaults, read_yaml
from benchmark.summary import load_runs
from core.errors import ConfigError
from core.masks import MissingSpec
from datasets.synthetic import SyntheticDataset
from methods import list_methods

TINY_CONFIG = """
dataset:
  name: synthetic
  options: {{n_train: 96, n_val: 48, n_test: 96, sigma_pix: 0.1, mc_samples: 20000, cache_dir: {cache}}}
methods: [tabular_sklearn, late_fusion]
missing: {{pattern: mixed, protocol: both, rates: [0.5]}}
seeds: [0]
encoders:
  image: {{model: test_efficientnet}}
  tabular: {{hidden: [16], dim: 16}}
training: {{max_epochs: 2, batch_size: 32, threads: 1}}
results_dir: {results}
"""

# lr spans six decades so that most sampled trials fall below the enqueued default at the first
# epoch; with n_startup_trials 1 and no warm-up the median pruner then stops them (deterministic:
# seeded sampler, seeded CPU training).
TINY_TUNE = """
trials: 4
tuning_seeds: [100, 101]
missing_rate: null
shared_space:
  training.lr: {type: float, low: 1.0e-6, high: 1.0e-1, log: true}
sampler: {type: tpe, seed: 0, n_startup_trials: 2}
pruner: {type: median, n_startup_trials: 1, n_warmup_steps: 0}
"""


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    results = tmp_path / "results"
    cfg, tcfg = tmp_path / "tiny.yaml", tmp_path / "tune.yaml"
    cfg.write_text(TINY_CONFIG.format(results=results, cache=tmp_path / "cache"))
    tcfg.write_text(TINY_TUNE)
    return cfg, tcfg, results


# -- search spaces --------------------------------------------------------------------------------
def test_every_registered_method_declares_a_valid_space():
    for method in list_methods():
        tuning.method_space(method, method_defaults(method))
    shared = tuning.load_tune_config()  # the shipped configs/tune.yaml
    assert set(tuning.shared_space(shared)) == {"training.lr", "training.batch_size"}


def _space_error(tmp_path: Path, method: str, entry: str) -> str:
    (tmp_path / "methods").mkdir(exist_ok=True)
    path = tmp_path / "methods" / f"{method}.yaml"
    path.write_text(f"search_space:\n  {entry}\n")
    with pytest.raises(ConfigError) as err:
        tuning.method_space(method, {}, config_dir=tmp_path)
    assert str(path) in str(err.value)
    return str(err.value)


def test_bad_search_spaces_name_file_and_key(tmp_path):
    msg = _space_error(tmp_path, "tabular_sklearn", "options.nope: {type: float, low: 0.1, high: 1.0}")
    assert "options.nope" in msg and "unknown option 'nope'" in msg and "C" in msg
    msg = _space_error(tmp_path, "tabular_sklearn", "options.C: {type: float, low: 1.0, high: 0.1}")
    assert "options.C" in msg and "low < high" in msg
    msg = _space_error(tmp_path, "tabular_sklearn", "options.C: {type: float, low: 0.0, high: 1.0, log: true}")
    assert "low > 0" in msg
    msg = _space_error(tmp_path, "tabular_sklearn", "options.model: {type: categorical, choices: [logistic, svm]}")
    assert "options.model" in msg and "'svm'" in msg
    msg = _space_error(tmp_path, "tabular_sklearn", "options.max_iter: {type: float, low: 10, high: 100}")
    assert "options.max_iter" in msg and "integer" in msg
    msg = _space_error(tmp_path, "tabular_sklearn", "options.C: {type: gaussian, low: 0.1, high: 1.0}")
    assert "options.C.type" in msg
    msg = _space_error(tmp_path, "late_fusion", "training.lr: {type: float, low: 0.001, high: 0.1}")
    assert "configs/tune.yaml" in msg

    tune_yaml = tmp_path / "tune.yaml"
    tune_yaml.write_text("shared_space:\n  training.epochs: {type: int, low: 1, high: 9}\n")
    with pytest.raises(ConfigError, match=r"tune.yaml: shared_space.training.epochs: unknown shared parameter"):
        tuning.load_tune_config(tune_yaml)
    tune_yaml.write_text("shared_space:\n  training.lr: {type: float, low: -1.0, high: 0.1}\n")
    with pytest.raises(ConfigError, match=r"shared_space.training.lr: value -1.0 is not a valid training.lr"):
        tuning.load_tune_config(tune_yaml)


def test_tuning_seeds_must_differ_from_evaluation_seeds(tmp_path, capsys):
    cfg, tcfg, results = _files(tmp_path)
    code = tune_module.main(["--config", str(cfg), "--tune-config", str(tcfg), "--tuning-seeds", "0,100"])
    assert code == 2 and "tuning_seeds: seed 0 is also an evaluation seed" in capsys.readouterr().err
    code = tune_module.main(["--config", str(cfg), "--tune-config", str(tcfg), "--missing-rate", "0.3,0.5"])
    assert code == 2 and "tuning takes one missing spec" in capsys.readouterr().err
    assert not (results / "optuna.db").exists()


# -- the study ------------------------------------------------------------------------------------
class ForbiddenTestAccess(AssertionError):
    """Raised by the guards below whenever tuning would touch the test split."""


def _install_test_guards(monkeypatch) -> None:
    """Any construction of a test SplitData, any test mask and any test image load raises."""
    real_split, real_drop, real_load_table = data_module.SplitData, data_module.drop_mask, SyntheticDataset.load_table

    def guarded_split(name, *args, **kwargs):
        if name == "test":
            raise ForbiddenTestAccess("a test SplitData was built")
        return real_split(name, *args, **kwargs)

    def guarded_drop(ids, strata, rate, pattern, seed, dataset, split, *args, **kwargs):
        if split == "test":
            raise ForbiddenTestAccess("a test mask was drawn")
        return real_drop(ids, strata, rate, pattern, seed, dataset, split, *args, **kwargs)

    class GuardedImages:
        def __init__(self, inner, test_rows):
            self.inner, self.test_rows = inner, test_rows

        def load(self, rows, view, train):
            if np.isin(rows, self.test_rows).any():
                raise ForbiddenTestAccess(f"test images loaded: rows {np.intersect1d(rows, self.test_rows)[:5]}")
            return self.inner.load(rows, view, train)

    def guarded_load_table(self):
        table = real_load_table(self)
        table.images = GuardedImages(table.images, np.flatnonzero(table.split == "test"))
        return table

    monkeypatch.setattr(data_module, "SplitData", guarded_split)
    monkeypatch.setattr(data_module, "drop_mask", guarded_drop)
    monkeypatch.setattr(SyntheticDataset, "load_table", guarded_load_table)


def _study(storage: str, method: str) -> optuna.Study:
    names = [s for s in optuna.get_all_study_names(storage) if f".{method}." in s]
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=storage)


def _snapshot(study: optuna.Study) -> dict[int, tuple]:
    return {t.number: (t.state, t.value, t.params, t.datetime_complete) for t in study.trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}


def test_tiny_study_resumes_prunes_never_reads_test_and_feeds_run_tuned(tmp_path, monkeypatch, capsys):
    cfg, tcfg, results = _files(tmp_path)
    argv = ["--config", str(cfg), "--tune-config", str(tcfg)]
    storage = f"sqlite:///{(results / 'optuna.db').resolve()}"
    real_train = trial_module.train_method
    calls: list[str] = []

    with monkeypatch.context() as guard:
        _install_test_guards(guard)
        # The guards are not vacuous: the evaluation path (which builds the test split) trips them.
        dataset = SyntheticDataset(**load_config(cfg).dataset.options)
        with pytest.raises(ForbiddenTestAccess):
            data_module.prepare_data(dataset, dataset.load_table(), MissingSpec("mixed", 0.5, "both"), 0)

        # 1) Interrupt (Ctrl-C) after the first epoch of late_fusion's second trial.
        def interrupting(method, data, cfg_, seed, on_epoch=None):
            calls.append(method.registry_name)
            if calls.count("late_fusion") == 3:
                def stop(epoch, record):
                    raise KeyboardInterrupt
                return real_train(method, data, cfg_, seed, stop)
            return real_train(method, data, cfg_, seed, on_epoch)

        guard.setattr(trial_module, "train_method", interrupting)
        assert tune_module.main(argv) == 130
        assert "rerun the same command to resume" in capsys.readouterr().err
        sk, lf = _study(storage, "tabular_sklearn"), _study(storage, "late_fusion")
        assert tuning.counted(sk) == 4 and tuning.counted(lf) == 1
        assert lf.trials[0].user_attrs.get("defaults") and lf.trials[0].params == {"training.lr": 0.001}
        interrupted = lf.trials[1]
        assert interrupted.state == TrialState.FAIL
        before_sk, before_lf = _snapshot(sk), _snapshot(lf)

        # 2) Emulate a process killed with SIGKILL: a trial left RUNNING in Optuna and in MLflow.
        stale = lf.ask()  # takes the enqueued retry of the interrupted trial
        stale.suggest_float("training.lr", 1e-6, 1e-1, log=True)
        mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
        exp = mlflow.get_experiment_by_name("medfusion-synthetic-tuning")
        client = mlflow.tracking.MlflowClient()
        parent = client.search_runs([exp.experiment_id], f"tags.kind = 'tuning' and tags.optuna_study = '{lf.study_name}'")
        killed = client.create_run(exp.experiment_id, tags={"kind": "tuning_trial", "optuna_study": lf.study_name,
                                                             "optuna_trial": str(stale.number),
                                                             "mlflow.parentRunId": parent[0].info.run_id})

        # 3) Resume: finished trials are kept and not rerun; the stale trial is closed and retried.
        resumed: list[str] = []

        def counting(method, data, cfg_, seed, on_epoch=None):
            resumed.append(method.registry_name)
            return real_train(method, data, cfg_, seed, on_epoch)

        guard.setattr(trial_module, "train_method", counting)
        assert tune_module.main(argv) == 0
        err = capsys.readouterr().err
        assert f"trial {stale.number} of late_fusion was left unfinished" in err

    assert "tabular_sklearn" not in resumed  # its study was complete: nothing repeated
    sk, lf = _study(storage, "tabular_sklearn"), _study(storage, "late_fusion")
    assert _snapshot(sk) == before_sk
    after_lf = _snapshot(lf)
    assert {n: after_lf[n] for n in before_lf} == before_lf
    assert tuning.counted(lf) == 4 and len(resumed) <= 2 * 3
    stale_trial = lf.trials[stale.number]
    assert stale_trial.state == TrialState.FAIL
    retries = [t for t in lf.trials if t.user_attrs.get("retry_of") == stale.number]
    assert len(retries) == 1 and retries[0].params == interrupted.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    states = [t.state for s in (sk, lf) for t in s.trials]
    assert TrialState.PRUNED in states  # the median pruner stopped at least one trial

    # 4) The tuned files hold each study's best trial.
    for study, method in ((sk, "tabular_sklearn"), (lf, "late_fusion")):
        tuned = read_yaml(results / "synthetic" / "tuned" / f"{method}.yaml")
        best = study.best_trial
        options, training = tuning.split_params(best.params)
        assert tuned["options"] == options and tuned["training"] == training
        assert tuned["trials"] == 4 and tuned["best_value"] == pytest.approx(best.value)
        assert tuned["tuning_seeds"] == [100, 101] and tuned["evaluation_seeds_held_out"] == [0]
    assert "C" in read_yaml(results / "synthetic" / "tuned" / "tabular_sklearn.yaml")["options"]

    # 5) MLflow: one parent per study, one nested child per trial, in the tuning experiment only.
    runs = mlflow.search_runs([exp.experiment_id])
    parents = runs[runs["tags.kind"] == "tuning"]
    children = runs[runs["tags.kind"] == "tuning_trial"]
    assert len(parents) == 2
    for study in (sk, lf):
        mine = children[children["tags.optuna_study"] == study.study_name]
        assert sorted(mine["tags.optuna_trial"].astype(int)) == [t.number for t in study.trials]
        parent_id = parents[parents["tags.optuna_study"] == study.study_name].run_id.iloc[0]
        assert (mine["tags.mlflow.parentRunId"] == parent_id).all()
    assert set(children["tags.trial_state"].dropna()) >= {"COMPLETE", "PRUNED", "INTERRUPTED"}
    assert "tags.runspec_key" not in runs or runs["tags.runspec_key"].isna().all()
    assert load_runs(f"sqlite:///{results / 'mlflow.db'}", "synthetic-tuning").empty
    assert mlflow.get_experiment_by_name("medfusion-synthetic") is None  # tuning never writes there

    # 6) benchmark.run --tuned: tagged, tuned lr used, a resume key distinct from the default run.
    assert run_module.main(["--config", str(cfg), "--tuned", "--no-leaderboard"]) == 0
    assert run_module.main(["--config", str(cfg), "--no-leaderboard"]) == 0
    evaluation = mlflow.get_experiment_by_name("medfusion-synthetic")
    ev = mlflow.search_runs([evaluation.experiment_id], filter_string="tags.runspec_key != ''")
    methods = ev[ev["tags.method"] != "bayes_oracle"]
    assert len(methods) == 4 and methods["tags.runspec_key"].is_unique and (methods.status == "FINISHED").all()
    for method, study in (("tabular_sklearn", sk), ("late_fusion", lf)):
        tuned_run = methods[(methods["tags.method"] == method) & (methods["tags.tuned"] == "true")].iloc[0]
        default_run = methods[(methods["tags.method"] == method) & (methods["tags.tuned"] == "false")].iloc[0]
        assert tuned_run["tags.tuning_trials"] == "4"
        assert float(tuned_run["params.lr"]) == pytest.approx(study.best_trial.params["training.lr"])
        assert float(default_run["params.lr"]) == pytest.approx(0.001)
        assert tuned_run["params.config_hash"] != default_run["params.config_hash"]
    tuned_sk = methods[(methods["tags.method"] == "tabular_sklearn") & (methods["tags.tuned"] == "true")].iloc[0]
    assert float(tuned_sk["params.option.C"]) == pytest.approx(sk.best_trial.params["options.C"])

    # 7) --tuned refuses tuned files that do not fit the evaluation.
    code = run_module.main(["--config", str(cfg), "--tuned", "--methods", "early_fusion", "--no-leaderboard"])
    assert code == 2 and "tuned/early_fusion.yaml does not exist" in capsys.readouterr().err
    code = run_module.main(["--config", str(cfg), "--tuned", "--epochs", "3", "--no-leaderboard"])
    assert code == 2 and "tuned under a different configuration (training.max_epochs" in capsys.readouterr().err
    code = run_module.main(["--config", str(cfg), "--tuned", "--seeds", "0,1", "--no-leaderboard"])
    assert code == 2 and "evaluation seed 1 was not held out" in capsys.readouterr().err


def test_a_crashing_method_is_reported_and_the_others_still_tuned(tmp_path, monkeypatch, capsys):
    cfg, tcfg, results = _files(tmp_path)
    real_train = trial_module.train_method

    def crashing(method, data, cfg_, seed, on_epoch=None):
        if method.registry_name == "late_fusion":
            raise RuntimeError("boom in late_fusion")
        return real_train(method, data, cfg_, seed, on_epoch)

    monkeypatch.setattr(trial_module, "train_method", crashing)
    code = tune_module.main(["--config", str(cfg), "--tune-config", str(tcfg), "--methods", "late_fusion,tabular_sklearn"])
    err = capsys.readouterr().err
    assert code == 1 and "tuning late_fusion failed" in err and "boom in late_fusion" in err
    storage = f"sqlite:///{(results / 'optuna.db').resolve()}"
    assert [t.state for t in _study(storage, "late_fusion").trials] == [TrialState.FAIL]
    assert tuning.counted(_study(storage, "tabular_sklearn")) == 4
    assert (results / "synthetic" / "tuned" / "tabular_sklearn.yaml").exists()
    assert not (results / "synthetic" / "tuned" / "late_fusion.yaml").exists()
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("medfusion-synthetic-tuning")
    failed = mlflow.search_runs([exp.experiment_id], filter_string="tags.kind = 'tuning_trial' and tags.method = 'late_fusion'")
    assert list(failed.status) == ["FAILED"] and list(failed["tags.trial_state"]) == ["FAIL"]

    # Raising --trials continues the same study (same parent run) with one more trial.
    monkeypatch.setattr(trial_module, "train_method", real_train)
    before = _snapshot(_study(storage, "tabular_sklearn"))
    argv = ["--config", str(cfg), "--tune-config", str(tcfg), "--methods", "tabular_sklearn", "--trials", "5"]
    assert tune_module.main(argv) == 0
    study = _study(storage, "tabular_sklearn")
    assert tuning.counted(study) == 5 and {n: v for n, v in _snapshot(study).items() if n in before} == before
    parents = mlflow.search_runs([exp.experiment_id], filter_string="tags.kind = 'tuning' and tags.method = 'tabular_sklearn'")
    assert len(parents) == 1 and parents["tags.trials_target"].iloc[0] == "5"


def test_sigterm_closes_the_trial_and_study_runs_as_killed(tmp_path, monkeypatch, capsys):
    """``kill <pid>`` (SIGTERM) during a trial: exit 143 and no MLflow run left RUNNING (before the
    tuning CLI handled SIGTERM, both the trial's and the study's runs stayed RUNNING)."""
    cfg, tcfg, results = _files(tmp_path)
    real_train = trial_module.train_method

    def terminated(method, data, cfg_, seed, on_epoch=None):
        if method.registry_name != "late_fusion":
            return real_train(method, data, cfg_, seed, on_epoch)

        def stop(epoch, record):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        return real_train(method, data, cfg_, seed, stop)

    monkeypatch.setattr(trial_module, "train_method", terminated)
    handler = signal.getsignal(signal.SIGTERM)
    assert tune_module.main(["--config", str(cfg), "--tune-config", str(tcfg)]) == 143
    assert signal.getsignal(signal.SIGTERM) is handler
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) and "RUNNING" not in set(runs.status)
    # The interrupted trial's run *and* the study's parent run are KILLED, never FAILED (a plain
    # `with mlflow.start_run()` ended the study run FAILED).
    interrupted = runs[runs["tags.method"] == "late_fusion"]
    assert set(interrupted["tags.kind"]) == {"tuning", "tuning_trial"}
    assert set(interrupted.status) == {"KILLED"}, interrupted[["tags.kind", "status"]]
