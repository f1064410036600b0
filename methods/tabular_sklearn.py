"""Classical reference: a scikit-learn model on the tabular features only.

A sanity check for the deep baselines: on the synthetic data, logistic regression on the
tabular vector reaches the tabular Bayes AUC, so a deep tabular branch far below it points to a
harness or optimisation problem.  It is fitted once on the whole (observed) training split;
samples without a tabular record get the training prior.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from core.batch import Batch
from methods import register_method
from methods.base import FusionMethod, Stage


@dataclass(frozen=True)
class SklearnOptions:
    model: Literal["logistic", "hgb"] = "logistic"
    C: float = 1.0                 # inverse L2 strength for logistic regression
    max_iter: int = 1000


@register_method("tabular_sklearn")
class TabularSklearn(FusionMethod):
    display_name = "Tabular (scikit-learn)"
    Options = SklearnOptions
    search_space = {"options.C": {"type": "float", "low": 1e-3, "high": 1e2, "log": True}}

    def __init__(self, info, encoders, **options) -> None:
        super().__init__(info, encoders, **options)
        self.estimator: Any = None
        self.register_buffer("prior", torch.full((info.num_classes,), 1.0 / info.num_classes))

    def _new_estimator(self, seed: int) -> Any:
        o = self.options
        if o.model == "logistic":
            est = LogisticRegression(C=o.C, max_iter=o.max_iter)
        else:
            est = HistGradientBoostingClassifier(random_state=seed)
        return OneVsRestClassifier(est) if self.multilabel else est

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("fit", epochs=1, full_batch=True)]

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        rows = batch.tabular_present.numpy()
        x, y = batch.tabular.numpy()[rows], batch.labels.numpy()[rows]
        labels = batch.labels.numpy()
        prior = labels.mean(0) if self.multilabel else np.bincount(labels, minlength=self.info.num_classes) / len(labels)
        self.prior = torch.as_tensor(prior, dtype=torch.float32)
        self.estimator = self._new_estimator(int(torch.initial_seed() % 2**31)).fit(x, y)
        probs = self.predict_proba(batch)
        if self.multilabel:
            loss = torch.nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), batch.labels.float())
        else:
            loss = torch.nn.functional.nll_loss(probs.clamp_min(1e-7).log(), batch.labels)
        return {"loss": loss}

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        out = self.prior.unsqueeze(0).repeat(len(batch), 1)
        rows = batch.tabular_present
        if self.estimator is not None and bool(rows.any()):
            proba = self.estimator.predict_proba(batch.tabular.numpy()[rows.numpy()])
            if not self.multilabel and proba.shape[1] < self.info.num_classes:  # class absent in train
                full = np.zeros((len(proba), self.info.num_classes))
                full[:, self.estimator.classes_] = proba
                proba = full
            out[rows] = torch.as_tensor(proba, dtype=torch.float32)
        return out

    # The fitted estimator travels in the state_dict (so checkpoints and round trips work).
    def get_extra_state(self) -> Any:
        return pickle.dumps(self.estimator)

    def set_extra_state(self, state: Any) -> None:
        self.estimator = pickle.loads(state)
