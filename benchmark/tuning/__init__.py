"""Equal-budget hyperparameter tuning with Optuna, tracked in MLflow (``python -m benchmark.tune``).

Why this package exists: a comparison where one method got hand-tuned and the others ran with
defaults measures the tuning effort, not the method.  Here every method gets the same budget:
the same number of trials (COMPLETE + PRUNED), the same seeded TPE sampler, the same pruner,
the same tuning seeds and the same epoch budget; only its declared search space differs.

* Search spaces (``space``, ``settings``): each method's ``search_space``
  (``configs/methods/<name>.yaml`` when that file has the key, else the method class's
  ``search_space``) plus the shared space of ``configs/tune.yaml`` (``training.lr``,
  ``training.batch_size``).  Validated at load: an unknown option or a value the method's
  ``Options`` would reject raises :class:`ConfigError` naming the file and key.  The config's
  defaults are enqueued as trial 0 (``enqueue_defaults``), so the tuned result is never worse than
  the default on validation.
* Objective (``trial``): the validation primary metric (AUC) at the selected epoch, averaged over
  the tuning seeds (default 100, 101; they must differ from the evaluation seeds).  The test split
  is never touched (``data``): the tuning data hold the train and validation rows only, minus every
  row that is a test row for any evaluation seed (this matters for datasets without an official
  split).
* Pruning: after every epoch the validation metric is reported at step
  ``seed_index * epochs + epoch``; the median (or Hyperband) pruner stops trials below the others.
  A trial whose loss diverges (non-finite) is pruned too: divergence is an outcome of that
  configuration, and counting it keeps budgets equal.
* Storage and resume (``study``): one study per (dataset, method, missing spec, fingerprint) in an
  Optuna RDB store (``sqlite:///<results>/optuna.db``).  A rerun continues the study: finished
  trials are never repeated; a trial left RUNNING by a killed process is marked FAIL and its
  parameters are enqueued again.  The sampler is reseeded with ``seed + trials so far`` on resume
  so it does not replay the random start-up points already tried.
* One run identity (``identity``): the study fingerprint and the tuned-file context are views of
  :meth:`benchmark.grid.RunSpec.identity` of the study's template cell, not hashes of their own.
* MLflow: one parent run per study (experiment ``medfusion-<dataset>-tuning``, never the evaluation
  experiment, and no ``runspec_key`` tag, so leaderboards never see a trial) and one nested child
  run per trial.
* Output (``tuned_files``): ``<results>/<dataset>/tuned/<method>.yaml`` with the best parameters;
  ``python -m benchmark.run --tuned`` evaluates them on the evaluation seeds (:func:`apply_tuned`).

Layering: this package uses ``core``, ``methods``, ``datasets`` and the ``benchmark`` layers below
the CLI (config, grid, training, tracking); ``benchmark.tune`` and ``benchmark.run`` sit on top.
"""
from __future__ import annotations

from benchmark.tuning.data import TuningView, prepare_tuning_data
from benchmark.tuning.driver import check_tuning, tune
from benchmark.tuning.identity import study_fingerprint, template_cell, tuned_context
from benchmark.tuning.settings import (TUNABLE_TRAINING, TUNE_CONFIG, PrunerSection, SamplerSection, TuneConfig,
                                       load_tune_config, shared_space, study_space)
from benchmark.tuning.space import ParamSpec, default_params, method_space, parse_param, resolve_params, split_params
from benchmark.tuning.study import counted, run_study, storage_url, study_name
from benchmark.tuning.trial import run_trial
from benchmark.tuning.tuned_files import (TUNED_FILE_VERSION, StudyResult, TunedParams, apply_tuned, load_tuned,
                                          tuned_path, write_tuned)

__all__ = ["TUNABLE_TRAINING", "TUNED_FILE_VERSION", "TUNE_CONFIG", "ParamSpec", "PrunerSection", "SamplerSection",
           "StudyResult", "TuneConfig", "TunedParams", "TuningView", "apply_tuned", "check_tuning", "counted",
           "default_params", "load_tune_config", "load_tuned", "method_space", "parse_param", "prepare_tuning_data",
           "resolve_params", "run_study", "split_params", "run_trial", "shared_space", "storage_url", "study_fingerprint",
           "study_name", "study_space", "template_cell", "tune", "tuned_context", "tuned_path", "write_tuned"]
