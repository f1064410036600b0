"""Embedded synthetic dataset with a Bayes-optimal oracle (datasets spec section 7).

Why it exists: real medical datasets have no ground truth for "how good could fusion be".  Here
the generative model is known, so the Bayes AUC of image-only, tabular-only and fused prediction
is known too (closed form, or Monte Carlo under masks), and a method that beats it by more than
sampling error reveals a leakage bug.

Generator (binary, prevalence ``prevalence``; ``numpy.random.Generator(PCG64(seed))``; float32):
* latent ``(a, b) | y ~ N(mu_y, Sigma)`` with ``mu_1 - mu_0 = (d_img, d_tab)``, unit variances,
  correlation ``rho`` (redundancy knob); ``mu_y = (2y - 1)/2 * (d_img, d_tab)``;
* image ``x = c + a*P + sigma_pix*(eps - <eps,P>P)`` with ``P`` a fixed unit-L2 Gaussian-windowed
  grating, so the matched filter ``<x - c, P> = a`` exactly; with ``shift: k`` the template is
  translated by a uniform integer offset in [-k, k]^2 and the oracle uses the exact mixture;
* tabular ``x_num = b*w + sigma_tab*(eps - <eps,w>w)``, ``w`` spread evenly over the first
  ``n_inf`` columns; plus ``n_cat`` categorical columns with 3-5 levels, pure noise unless
  ``informative_cat > 0`` (then p(level|y) tables are known and folded into the oracle LLR).
Multi-class (``n_classes > 2``) is not implemented: the option is rejected with that message.

Scenarios (option ``scenario``; ``datasets.synthetic_scenarios`` documents each one, what it
tests, its oracle and closed forms): ``balanced`` (default, the latents above), ``interaction``
(a context ``s`` in the extra categorical column ``context``, levels A (s=+1) / B (s=-1), flips the
image shift: ``((1 - lambda) + lambda s) (2y-1) d_img/2``, knob ``interaction_lambda``),
``redundant_hard`` (rho 0.8, hard pixel noise), ``dominant`` (d_img 1.8, d_tab 0.5) and
``informative_missing`` (balanced latents, meant for an ``mnar`` mask of strength 1.5).  The
oracle (exact LLR per pattern, the independent-evidence ceiling, population AUCs) is
``datasets.synthetic_oracle.SyntheticOracle``.

``redundant_hard``'s pixel noise is its own option ``hard_sigma_pix`` (default
``REDUNDANT_HARD_SIGMA_PIX``; configs/datasets/synthetic.yaml says how it was chosen).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from core.contract import ArrayImageSource, SampleTable, TabularColumn
from datasets import register_dataset
from datasets.base import BenchmarkDataset
from datasets.synthetic_oracle import SyntheticOracle
from datasets.synthetic_scenarios import (C_OFFSET, CONTEXT_COLUMN, CONTEXT_LEVELS, PRESETS,
                                          REDUNDANT_HARD_SIGMA_PIX, SCENARIO_MISSING, SCENARIOS,
                                          SyntheticOptions, category_levels, draw_categoricals,
                                          draw_latents, tab_direction, template)

__all__ = ["C_OFFSET", "GENERATOR_VERSION", "PRESETS", "REDUNDANT_HARD_SIGMA_PIX", "SCENARIOS",
           "SyntheticDataset", "SyntheticOptions", "SyntheticOracle", "template"]

# The generator's version: any edit of this module or of the scenarios' latent models makes new
# data (cache key, run fingerprint).
GENERATOR_VERSION = hashlib.sha256(
    Path(__file__).read_bytes() + Path(__file__).with_name("synthetic_scenarios.py").read_bytes()).hexdigest()[:16]


@register_dataset("synthetic")
class SyntheticDataset(BenchmarkDataset):
    display_name = "Synthetic (Bayes oracle)"
    task = "binary"
    class_names = ("negative", "positive")
    views = ("image",)
    primary_metric = "auc"
    source_url = "embedded (generated from a seed)"
    needs_data_root = False
    Options = SyntheticOptions

    # -- generation -------------------------------------------------------------------------
    @property
    def seed_dependent_table(self) -> bool:
        return self.options.seed == "run"

    def table_for_seed(self, run_seed: int) -> SampleTable:
        return self.generate_table(int(run_seed) if self.options.seed == "run" else int(self.options.seed))

    def load_table(self) -> SampleTable:
        """The table of the configured data seed (seed "run": the one of run seed 0)."""
        return self.table_for_seed(0)

    def fingerprint(self) -> dict:
        """Options plus the generator's version: the hash of this module's source, so a changed
        generator is new data (for the resume key and the array cache alike)."""
        return {**super().fingerprint(), "generator": GENERATOR_VERSION}

    def generate_table(self, data_seed: int) -> SampleTable:
        o = self.options
        cached = self._cache_path(data_seed)
        if cached is not None and cached.exists():
            arrays = dict(np.load(cached, allow_pickle=False))
        else:
            arrays = self._generate(data_seed)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                # A file name of this process's own, then an atomic rename: two cells generating
                # the same table at once (local workers) never write into one temporary file.
                handle, tmp_name = tempfile.mkstemp(dir=cached.parent, prefix=cached.stem + ".", suffix=".tmp.npz")
                with os.fdopen(handle, "wb") as tmp:
                    np.savez(tmp, **arrays)
                Path(tmp_name).replace(cached)
        n = len(arrays["y"])
        levels = category_levels(o.n_cat)
        columns = tuple(TabularColumn(f"num{j}", "numeric") for j in range(o.n_num)) + tuple(
            TabularColumn(f"cat{j}", "categorical", tuple(str(v) for v in range(levels[j])))
            for j in range(o.n_cat))
        categorical = arrays["cat"].astype(str).astype(object) if o.n_cat else np.empty((n, 0), object)
        extras = {"latent_a": arrays["a"], "latent_b": arrays["b"], "shift": arrays["shift"], "scenario": o.scenario}
        if o.has_context:  # the clean context column of `interaction`: s = +1 -> "A", s = -1 -> "B"
            columns += (TabularColumn(CONTEXT_COLUMN, "categorical", CONTEXT_LEVELS),)
            level = np.where(arrays["context"] == 1, CONTEXT_LEVELS[0], CONTEXT_LEVELS[1]).astype(object)
            categorical = np.concatenate([categorical, level[:, None]], axis=1)
            extras["context"] = arrays["context"]
        split = np.asarray(["train"] * o.n_train + ["val"] * o.n_val + ["test"] * o.n_test)
        # With seed: run every run seed draws other samples: other ids, so nothing downstream (the
        # id-keyed masks, the clustered DeLong of the leaderboard) takes them for the same patients.
        prefix = f"syn{data_seed}" if o.seed == "run" else "syn"
        ids = np.asarray([f"{prefix}-{i:06d}" for i in range(n)])
        return SampleTable(
            ids=ids, labels=arrays["y"].astype(np.int64), numeric=arrays["num"].astype(np.float64),
            categorical=categorical, columns=columns,
            images=ArrayImageSource({"image": arrays["image"]}),
            view_available=np.ones((n, 1), bool), tabular_available=np.ones(n, bool), split=split,
            extras=extras)

    @property
    def expected_missing(self) -> dict[str, object]:
        """The missingness mechanism the scenario is meant for ({} = any; informative_missing: mnar
        strength 1.5). Recorded only: the suite config's ``missing`` section sets the mask."""
        return dict(SCENARIO_MISSING.get(self.options.scenario, {}))

    def _cache_path(self, data_seed: int) -> Path | None:
        if not self.options.cache_dir:
            return None
        payload = {"options": asdict(self.options), "data_seed": data_seed, "generator": GENERATOR_VERSION}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
        return Path(self.options.cache_dir) / f"synthetic_{key}.npz"

    def _generate(self, data_seed: int) -> dict[str, np.ndarray]:
        o = self.options
        n = o.n_train + o.n_val + o.n_test
        rng = np.random.Generator(np.random.PCG64(data_seed))
        y, a, b, context = draw_latents(o, rng, n)
        s = o.image_size
        shifts = rng.integers(-o.shift, o.shift + 1, size=(n, 2)) if o.shift else np.zeros((n, 2), np.int64)
        images = np.empty((n, 1, s, s), dtype=np.float32)
        templates = {}
        for i in range(n):
            key = (int(shifts[i, 0]), int(shifts[i, 1]))
            if key not in templates:
                templates[key] = template(s, *key).ravel()
            p = templates[key]
            eps = rng.standard_normal(s * s)
            eps -= (eps @ p) * p
            images[i, 0] = (C_OFFSET + a[i] * p + o.pixel_noise * eps).reshape(s, s)
        w = tab_direction(o)
        eps = rng.standard_normal((n, o.n_num))
        eps -= np.outer(eps @ w, w)
        num = b[:, None] * w[None, :] + o.sigma_tab * eps
        cat = draw_categoricals(rng, y, o)
        return {"y": y, "a": a, "b": b, "image": images, "num": num.astype(np.float32),
                "cat": cat, "shift": shifts, "context": context}

    def oracle(self) -> SyntheticOracle:
        return SyntheticOracle(self.options)
