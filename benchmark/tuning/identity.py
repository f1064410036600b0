"""What tuning fingerprints, derived from the one run identity (:meth:`RunSpec.identity`).

A study tunes a *template cell*: the RunSpec the grid would build for the method at the tuning
missing spec, with the config's own options and budget.  Both fingerprints of tuning are views
of that cell's identity, so nothing that changes a run can be forgotten by one of them:

* the study fingerprint (part of the Optuna study name): the identity without the seed (a study
  spans the tuning seeds), plus what only tuning has (space, seeds, sampler, pruner);
* the tuned-file context (what must match between tuning and ``benchmark.run --tuned``): the
  identity without the grid coordinates, the ``tuned`` flag, the code/data fingerprints (a tuned
  file stays usable after an unrelated edit; the study fingerprint does include them, so trials of
  different code are never pooled in one study) and the tuned keys themselves.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from benchmark.config.schema import BenchmarkConfig
from benchmark.grid.build import cell_spec
from benchmark.grid.spec import COORDINATES, RunSpec, digest, drop_keys
from benchmark.tuning.settings import TuneConfig
from benchmark.tuning.space import ParamSpec, space_mapping
from core.masks import MissingSpec
from core.options import to_mapping


def template_cell(cfg: BenchmarkConfig, method: str, mspec: MissingSpec) -> RunSpec:
    """The cell a study stands for.  Its seed is arbitrary (an evaluation seed): every view of the
    template below drops it."""
    return cell_spec(cfg, method, mspec, cfg.seeds[0])


def study_fingerprint(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, mspec: MissingSpec,
                      space: Mapping[str, ParamSpec]) -> str:
    """Everything that changes what a trial measures; ``trials`` is not part of it, so raising
    ``--trials`` continues the same study.  The evaluation seeds are: their test rows are held out."""
    payload = {"cell": drop_keys(template_cell(cfg, method, mspec).identity(), ("seed",)),
               "space": space_mapping(space), "tuning_seeds": list(tcfg.tuning_seeds),
               "evaluation_seeds": list(cfg.seeds), "sampler": to_mapping(tcfg.sampler),
               "pruner": to_mapping(tcfg.pruner), "enqueue_defaults": tcfg.enqueue_defaults}
    return digest(payload, 10)


def tuned_context(spec: RunSpec, options: Iterable[str], training: Iterable[str]) -> dict[str, Any]:
    """What must match between tuning and evaluation: the cell's identity without the grid
    coordinates (a tuned file serves every rate and seed), the ``tuned`` flag and the tuned
    keys (``options.<k>``, ``training.<k>``: they are what the file changes)."""
    tuned_keys = tuple(f"options.{k}" for k in options) + tuple(f"training.{k}" for k in training)
    return drop_keys(spec.identity(), COORDINATES + ("tuned", "fingerprint") + tuned_keys)
