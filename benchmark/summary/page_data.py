"""The data of the interactive leaderboard page: one JSON payload per dataset (computation only).

Built from what the report already computed (sections, cells with their intervals, the headline's
paired verdicts) plus, for the per-method view, each run's id, stopping epoch, training curves
(``val_auc`` / ``train_loss`` metric histories, read once per run) and a calibration summary of the
logged test predictions.  Floats are rounded to 4 decimals and missing values are ``null``;
``page_json`` serialises with sorted keys, so the page is byte-identical when rebuilt.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

from benchmark.summary.compare import Comparison
from benchmark.summary.contrast import ceiling_cells
from benchmark.summary.formatting import rate_text
from benchmark.summary.headline import Headline
from benchmark.summary.load import FAILED_STATUSES
from benchmark.summary.model import CellStat, Row, Section
from benchmark.summary.predictions import PredictionStore, binary_scores
from benchmark.summary.stats import mean_over_rates
from benchmark.summary.tables import SCENARIOS

CURVE_METRICS = ("val_auc", "train_loss")
CALIBRATION_BINS = 10


def r4(x: Any) -> float | None:
    """A float rounded to 4 decimals; None for NaN / inf / None."""
    if x is None:
        return None
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def cell_json(c: CellStat) -> dict[str, Any]:
    """m(ean), lo/hi (95% interval), sd, n of `of` expected, why (missing seeds), noise (interval kind)."""
    s = c.summary
    return {"m": r4(s.mean), "lo": r4(s.ci_low), "hi": r4(s.ci_high), "sd": r4(s.std), "n": c.n,
            "of": c.n_expected, "why": c.reasons(), "noise": "seeds+test" if c.with_test_noise else "seeds",
            "leak": c.n_leak}


def comparison_json(c: Comparison) -> dict[str, Any]:
    d = c.paired.diff if c.paired is not None else None
    return {"d": r4(d.mean) if d else None, "lo": r4(d.ci_low) if d else None, "hi": r4(d.ci_high) if d else None,
            "pt": r4(c.paired.p_ttest) if c.paired else None, "pd": r4(c.delong.p) if c.delong else None,
            "n": c.paired.n if c.paired else 0, "v": "sig" if c.significant else "ns",
            "note": c.delong_note, "ref": c.reference.id}


class HistoryCache:
    """Metric histories read from MLflow once per run id (steps sorted, last value per step)."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.client = MlflowClient(tracking_uri) if tracking_uri else None
        self.cache: dict[tuple[str, str], list[list[float]]] = {}

    def get(self, run_id: str, key: str) -> list[list[float]]:
        if self.client is None:
            return []
        if (run_id, key) not in self.cache:
            points = sorted(self.client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
            last = {int(m.step): m.value for m in points}
            self.cache[(run_id, key)] = [[step, r4(v)] for step, v in sorted(last.items())]
        return self.cache[(run_id, key)]


def calibration(section: Section, row: Row, rate: float, predictions: PredictionStore | None) -> dict | None:
    """Reliability of the pooled seeds' test predictions (binary tasks): 10 equal-width bins of
    P(class 1) as [mean predicted, observed frequency, count], and the expected calibration error."""
    if predictions is None:
        return None
    probs, labels = [], []
    for seed in section.seeds:
        run = section.lookup.get((row.id, rate, seed))
        if run is None or run["status"] != "FINISHED":
            continue
        pred = predictions.get(run)
        scores = binary_scores(pred) if pred is not None else None
        if scores is None:
            continue
        labels.append(scores[1])
        probs.append(scores[2])
    if not probs:
        return None
    p, y = np.concatenate(probs), np.concatenate(labels)
    which = np.minimum((p * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    bins, ece = [], 0.0
    for b in range(CALIBRATION_BINS):
        sel = which == b
        if sel.any():
            conf, freq = float(p[sel].mean()), float(y[sel].mean())
            bins.append([r4(conf), r4(freq), int(sel.sum())])
            ece += sel.sum() / len(p) * abs(freq - conf)
    return {"ece": r4(ece), "bins": bins, "n": len(p)}


def runs_json(section: Section, row: Row, history: HistoryCache) -> tuple[list[list[dict]], dict[str, dict]]:
    """Per rate, per seed: run id, experiment, status, test AUC, stopping epoch; and the curves."""
    per_rate, curves = [], {}
    for rate in section.rates:
        seeds = []
        for seed in section.seeds:
            run = section.lookup.get((row.id, rate, seed))
            if run is None:
                seeds.append({"seed": seed, "status": "not run"})
                continue
            status = str(run["status"])
            rid = str(run["run_id"])
            entry = {"seed": seed, "run": rid, "exp": str(run.get("experiment_id", "")),
                     "status": "failed" if status in FAILED_STATUSES else status.lower(),
                     "auc": r4(run.get("metrics.test_auc", math.nan)),
                     "epoch": r4(run.get("metrics.best_epoch", math.nan))}
            seeds.append(entry)
            if not row.is_reference and status == "FINISHED":
                got = {k: history.get(rid, k) for k in CURVE_METRICS}
                if any(got.values()):
                    curves[rid] = got
        per_rate.append(seeds)
    return per_rate, curves


def section_json(section: Section, headline: Headline, predictions: PredictionStore | None,
                 history: HistoryCache) -> dict[str, Any]:
    """Everything the page shows for one (pattern, protocol) section."""
    rows = [{"id": r.id, "label": r.label, "method": r.method, "setting": r.setting, "ref": r.is_reference,
             "cfg": r.config_hash} for r in section.rows]
    cells: dict[str, dict[str, Any]] = {}
    for prefix, label in SCENARIOS:
        metric = f"{prefix}_auc"
        cells[prefix] = {r.id: {"rates": [cell_json(section.cell(r, rate, metric)) for rate in section.rates],
                                "avg": cell_json(section.per_seed_aggregate(r, metric, mean_over_rates))}
                         for r in section.rows}
    paired: dict[str, list[Any]] = {r.id: [None] * len(section.rates) for r in section.method_rows()}
    verdicts = []
    for j, v in enumerate(headline.verdicts):
        for comp in v.ties + v.worse:
            paired[comp.row.id][j] = comparison_json(comp)
        verdicts.append({"rate": v.rate, "best": v.best.id if v.best else None,
                         "ties": [c.row.id for c in v.ties], "worse": [c.row.id for c in v.worse],
                         "untested": [r.id for r in v.untested], "text": v.sentence()})
    runs, curves, calib = {}, {}, {}
    for r in section.rows:
        runs[r.id], got = runs_json(section, r, history)
        curves.update(got)
        calib[r.id] = [calibration(section, r, rate, predictions) for rate in section.rates]
    ranking = [{"row": x.row.id, "avg": cell_json(x.avg), "gap": r4(x.gap)} for x in headline.ranked]
    return {"id": section.slug, "pattern": section.pattern, "protocol": section.protocol,
            "rates": [float(r) for r in section.rates], "rate_labels": [rate_text(r) for r in section.rates],
            "seeds": list(section.seeds), "rows": rows, "cells": cells, "paired": paired, "verdicts": verdicts,
            "ranking": ranking, "bayes": cell_json(headline.bayes) if headline.bayes is not None else None,
            "runs": runs, "curves": curves, "calibration": calib,
            "evidence": evidence_json(section)}


def evidence_json(section: Section) -> dict[str, list[dict[str, Any]]] | None:
    """The independent-evidence ceiling per scenario prefix (the page's second reference line):
    ``{prefix: [{rate, m, lo, hi, n}, ...]}`` for the scenarios the oracle logged a ceiling for;
    None when it logged none (other datasets have no oracle, older oracles no ceiling)."""
    out = {}
    for prefix, _ in SCENARIOS:
        cells = ceiling_cells(section, prefix)
        if cells is not None:
            out[prefix] = [{"rate": float(rate), "m": r4(c.summary.mean), "lo": r4(c.summary.ci_low),
                            "hi": r4(c.summary.ci_high), "n": c.n} for rate, c in zip(section.rates, cells)]
    return out or None


def dataset_json(dataset: str, provenance_lines: list[str], sections: list[Section], headlines: list[Headline],
                 predictions: PredictionStore | None, tracking_uri: str | None) -> dict[str, Any]:
    """One dataset's payload: provenance lines and every section."""
    history = HistoryCache(tracking_uri)
    return {"name": dataset, "provenance": provenance_lines,
            "scenarios": [[prefix, label] for prefix, label in SCENARIOS],
            "sections": [section_json(s, h, predictions, history) for s, h in zip(sections, headlines)]}


def page_json(payload: dict[str, Any]) -> str:
    """Deterministic JSON, safe inside ``<script type="application/json">``."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
