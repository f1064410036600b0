"""The fair protocol: schedules are fractions of the budget, early stopping is one rule for all.

* every registered method's stages fill the budget exactly for every budget 2..50, and every
  epoch-denominated schedule (warm-up, decay step, contrastive stage) keeps its share of it;
* a budget too small for a method's defining stage is an error naming the minimum (budget 1 for
  ``mdc``, ``cfcml``, ``cmml``), raised by the config loader before anything runs;
* early stopping stops after ``patience`` epochs without improvement, never before ``min_epochs``
  and never inside an earlier stage;
* a method's recipe lr (``configs/methods/<m>.yaml`` ``training:``) reaches its RunSpec only.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.checks.methods import tiny_encoders
from benchmark.config import TrainingConfig, load_config
from benchmark.grid import build_grid
from benchmark.training.loop import train_method
from core.errors import ConfigError
from methods import create_method, get_method_class, list_methods
from methods.base import BudgetError, budget_share

BUDGETS = range(2, 51)


def _method(name, info):
    return create_method(name, info, tiny_encoders())


@pytest.mark.parametrize("name", list_methods())
def test_stages_fill_every_budget_and_keep_their_share(name, tiny_data):
    method = _method(name, tiny_data.info)
    for budget in BUDGETS:
        stages = method.stages(budget)
        total = sum(s.epochs for s in stages)
        if name == "tabular_sklearn":  # a closed-form fit: one full-batch stage whatever the budget
            assert [(s.name, s.epochs, s.full_batch) for s in stages] == [("fit", 1, True)]
            continue
        assert total == budget, (name, budget, stages)
        assert all(s.epochs >= 1 for s in stages), (name, budget, stages)
        assert stages[-1].select_model, (name, budget)  # the last stage is model-selected (and may stop early)
        if name == "mdc":
            share = method.options.pretrain_fraction
            assert stages[0].name == "contrastive" and not stages[0].select_model
            assert abs(stages[0].epochs - share * budget) <= 0.5 or stages[0].epochs == 1
        if name == "shaspec" and len(stages) == 2:
            assert abs(stages[0].epochs - method.options.warmup_fraction * budget) <= 0.5


@pytest.mark.parametrize("name", ["cfcml", "cmml"])
def test_warmup_and_decay_are_fractions_of_the_budget(name, tiny_data):
    method = _method(name, tiny_data.info)
    o = method.options
    step_fraction = o.decay_fraction if name == "cfcml" else o.step_fraction
    for budget in BUDGETS:
        schedule = method.schedule_for(budget)
        assert schedule.warmup == budget_share(o.warmup_fraction, budget) < budget
        assert schedule.step == budget_share(step_fraction, budget)
        factors = [schedule.factor(e) for e in range(budget)]
        assert factors[schedule.warmup - 1] == pytest.approx(1.0)  # warm-up ends at the base lr
        assert all(0 < f <= 1 for f in factors) and factors == sorted(factors[:schedule.warmup]) + factors[schedule.warmup:]
    # the same shape at every budget that is a multiple of 10: the last epoch's factor is 0.8^8 (as upstream at 50)
    for budget in (10, 20, 50):
        assert method.schedule_for(budget).factor(budget - 1) == pytest.approx(0.8 ** 8)


@pytest.mark.parametrize("name", ["mdc", "cfcml", "cmml"])
def test_budget_one_is_an_error_naming_the_minimum(name, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"methods: [{name}]\ntraining: {{max_epochs: 1}}\n")
    minimum, _ = get_method_class(name).minimum_epochs(load_config(None, {"methods": [name]}).options_for(name))
    assert minimum == 2
    with pytest.raises(ConfigError, match=rf"max_epochs = 1 is too small for method '{name}': it needs at least 2"):
        load_config(cfg)


def test_mdc_stage_is_never_silently_dropped(tiny_data):
    method = create_method("mdc", tiny_data.info, tiny_encoders(), pretrain_epochs=3)
    with pytest.raises(BudgetError, match="needs max_epochs >= 4"):
        method.stages(3)
    with pytest.raises(ConfigError, match=r"pretrain_fraction: must be in \(0, 1\)"):
        create_method("mdc", tiny_data.info, tiny_encoders(), pretrain_fraction=0.0)


def test_old_epochs_key_is_refused_with_its_new_name(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("training: {epochs: 5}\n")
    with pytest.raises(ConfigError, match="training.epochs was renamed training.max_epochs"):
        load_config(cfg)


def test_recipe_lr_reaches_only_its_method():
    cfg = load_config(None, {"methods": ["late_fusion", "cfcml", "cmml"]})
    lrs = {spec.method: spec.training.lr for spec in build_grid(cfg, with_oracle=True)}
    assert lrs["cfcml"] == lrs["cmml"] == 5e-4 and lrs["late_fusion"] == cfg.training.lr == 1e-3
    assert lrs["bayes_oracle"] == cfg.training.lr
    # a CLI --lr is the same for every method
    cli = load_config(None, {"methods": ["late_fusion", "cfcml"], "training": {"lr": 2e-3}})
    assert {s.training.lr for s in build_grid(cli, with_oracle=False)} == {2e-3}
    with pytest.raises(ConfigError, match=r"method_training.cfcml.max_epochs: a method may set only lr, weight_decay"):
        load_config(None, {"methods": ["cfcml"], "method_training": {"cfcml": {"max_epochs": 3}}})


def test_early_stopping_rule(tiny_data):
    patient = TrainingConfig(max_epochs=12, patience=2, min_epochs=1, batch_size=32, device="cpu")
    result = train_method(_method("early_fusion", tiny_data.info), tiny_data, patient, seed=0)
    best = result.best_epoch
    if result.stopped_early:  # stopped exactly patience epochs after the last improvement
        assert result.epochs_trained == best + 1 + 2
    else:
        assert result.epochs_trained == 12
    off = TrainingConfig(max_epochs=4, patience=0, batch_size=32, device="cpu")
    assert train_method(_method("early_fusion", tiny_data.info), tiny_data, off, seed=0).epochs_trained == 4
    floor = TrainingConfig(max_epochs=6, patience=1, min_epochs=6, batch_size=32, device="cpu")
    assert train_method(_method("early_fusion", tiny_data.info), tiny_data, floor, seed=0).epochs_trained == 6


def test_early_stopping_never_cuts_an_earlier_stage(tiny_data):
    cfg = TrainingConfig(max_epochs=10, patience=1, batch_size=32, device="cpu")
    method = create_method("mdc", tiny_data.info, tiny_encoders(), pretrain_epochs=4)
    result = train_method(method, tiny_data, cfg, seed=0)
    assert result.epochs_trained >= 4 + 1  # the contrastive stage ran in full, then >= patience epochs
    assert result.best_epoch >= 4           # selection only in the supervised stage
    assert np.isfinite(result.best_val)
