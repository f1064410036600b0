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
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from core.contract import ArrayImageSource, SampleTable, TabularColumn
from core.errors import ConfigError
from core.masks import IMAGE, TABULAR
from datasets import register_dataset
from datasets.base import BenchmarkDataset

# The generator's version: any edit of this module makes new data (cache key, run fingerprint).
GENERATOR_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]

C_OFFSET = 0.5
PRESETS: dict[str, dict[str, float]] = {
    "balanced": {"d_img": 1.19, "d_tab": 0.954, "rho": 0.0},
    "image_dominant": {"d_img": 1.8, "d_tab": 0.5, "rho": 0.0},
    "tabular_dominant": {"d_img": 0.5, "d_tab": 1.8, "rho": 0.0},
    "redundant": {"d_img": 1.19, "d_tab": 0.954, "rho": 0.8},
    "noise_image": {"d_img": 0.0, "d_tab": 0.954, "rho": 0.0},
}


@dataclass(frozen=True)
class SyntheticOptions:
    preset: str | None = None      # one of PRESETS; explicit d_img/d_tab/rho below override it
    d_img: float | None = None     # mean shift of the image latent (AUC_img = Phi(d_img/sqrt 2))
    d_tab: float | None = None     # mean shift of the tabular latent
    rho: float | None = None       # correlation of the latents: redundancy between modalities
    image_size: int = 32           # S in {32, 64}
    sigma_pix: float = 1.0         # pixel noise: how hard P is to learn (not the Bayes AUC)
    sigma_tab: float = 1.0
    n_num: int = 8
    n_inf: int = 4
    n_cat: int = 3
    informative_cat: float = 0.0   # 0 = noise categoricals; >0 = log-odds tilt of p(level|y=1)
    shift: int = 0                 # nuisance translation of P by up to +-shift px
    n_classes: int = 2
    prevalence: float = 0.5
    n_train: int = 2000
    n_val: int = 500
    n_test: int = 2000
    # Data seed: an integer fixes one dataset for every run seed (the test set is shared, so the
    # seeds replicate training and masks only); "run" draws a fresh dataset per run seed, so seeds
    # are full replicates (training, masks *and* test sample) -- the default config uses "run".
    seed: int | Literal["run"] = 0
    cache_dir: str | None = None   # where the generated arrays are cached as .npz (None: memory)
    mc_samples: int = 200_000

    def validate(self, where: str) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"{where}.preset: unknown preset '{self.preset}'; known: {', '.join(PRESETS)}")
        if self.image_size not in (32, 64):
            raise ConfigError(f"{where}.image_size: must be 32 or 64, got {self.image_size}")
        if self.n_classes != 2:
            raise ConfigError(f"{where}.n_classes: only 2 classes are implemented (got {self.n_classes})")
        if not 0 < self.n_inf <= self.n_num:
            raise ConfigError(f"{where}.n_inf: must be in 1..n_num ({self.n_num}), got {self.n_inf}")
        if self.rho is not None and not -1 < self.rho < 1:
            raise ConfigError(f"{where}.rho: must be in (-1, 1), got {self.rho}")
        if not 0 < self.prevalence < 1:
            raise ConfigError(f"{where}.prevalence: must be in (0, 1), got {self.prevalence}")

    def resolved(self) -> tuple[float, float, float]:
        base = dict(PRESETS[self.preset or "balanced"])
        for key in ("d_img", "d_tab", "rho"):
            if getattr(self, key) is not None:
                base[key] = float(getattr(self, key))
        return base["d_img"], base["d_tab"], base["rho"]


def template(size: int, dx: int = 0, dy: int = 0) -> np.ndarray:
    """Unit-L2 centred Gaussian-windowed grating (seed-independent), optionally translated."""
    coords = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(coords - dy, coords - dx, indexing="ij")
    window = np.exp(-(xx ** 2 + yy ** 2) / (2 * (size / 6) ** 2))
    grating = np.cos(2 * np.pi * (xx + yy) / (size / 2.5))
    p = window * grating
    return (p / np.linalg.norm(p)).astype(np.float64)


def _category_levels(n_cat: int) -> list[int]:
    return [3 + (j % 3) for j in range(n_cat)]


def _category_tables(levels: list[int], strength: float) -> list[np.ndarray]:
    """p(level | y) as (2, L) per column; uniform for y=0, tilted by ``strength`` for y=1."""
    tables = []
    for n in levels:
        p0 = np.full(n, 1.0 / n)
        logits = strength * (np.arange(n) - (n - 1) / 2) / max(n - 1, 1)
        p1 = np.exp(logits) / np.exp(logits).sum()
        tables.append(np.stack([p0, p1]))
    return tables


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
                tmp = cached.with_name(cached.stem + ".tmp.npz")
                np.savez(tmp, **arrays)
                tmp.replace(cached)
        n = len(arrays["y"])
        levels = _category_levels(o.n_cat)
        columns = tuple(TabularColumn(f"num{j}", "numeric") for j in range(o.n_num)) + tuple(
            TabularColumn(f"cat{j}", "categorical", tuple(str(v) for v in range(levels[j])))
            for j in range(o.n_cat))
        categorical = arrays["cat"].astype(str).astype(object) if o.n_cat else np.empty((n, 0), object)
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
            extras={"latent_a": arrays["a"], "latent_b": arrays["b"], "shift": arrays["shift"]})

    def _cache_path(self, data_seed: int) -> Path | None:
        if not self.options.cache_dir:
            return None
        payload = {"options": asdict(self.options), "data_seed": data_seed, "generator": GENERATOR_VERSION}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
        return Path(self.options.cache_dir) / f"synthetic_{key}.npz"

    def _latents(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d_img, d_tab, rho = self.options.resolved()
        y = (rng.random(n) < self.options.prevalence).astype(np.int64)
        z = rng.standard_normal((n, 2))
        a = z[:, 0]
        b = rho * z[:, 0] + np.sqrt(1 - rho ** 2) * z[:, 1]
        sign = y - 0.5
        return y, a + sign * d_img, b + sign * d_tab

    def _generate(self, data_seed: int) -> dict[str, np.ndarray]:
        o = self.options
        n = o.n_train + o.n_val + o.n_test
        rng = np.random.Generator(np.random.PCG64(data_seed))
        y, a, b = self._latents(rng, n)
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
            images[i, 0] = (C_OFFSET + a[i] * p + o.sigma_pix * eps).reshape(s, s)
        w = self._tab_direction()
        eps = rng.standard_normal((n, o.n_num))
        eps -= np.outer(eps @ w, w)
        num = b[:, None] * w[None, :] + o.sigma_tab * eps
        levels = _category_levels(o.n_cat)
        tables = _category_tables(levels, o.informative_cat)
        cat = np.zeros((n, o.n_cat), dtype=np.int64)
        for j, table in enumerate(tables):
            u = rng.random(n)
            cdf = np.cumsum(table[y], axis=1)
            cat[:, j] = (u[:, None] > cdf).sum(axis=1).clip(max=levels[j] - 1)
        return {"y": y, "a": a, "b": b, "image": images, "num": num.astype(np.float32),
                "cat": cat, "shift": shifts}

    def _tab_direction(self) -> np.ndarray:
        w = np.zeros(self.options.n_num)
        w[: self.options.n_inf] = 1.0 / np.sqrt(self.options.n_inf)
        return w

    def oracle(self) -> "SyntheticOracle":
        return SyntheticOracle(self)


class SyntheticOracle:
    """Bayes posterior from the *available* modalities only (``oracle_llr`` of the spec)."""

    def __init__(self, dataset: SyntheticDataset) -> None:
        self.dataset = dataset
        self.o = dataset.options
        self.d_img, self.d_tab, self.rho = self.o.resolved()
        cov = np.array([[1.0, self.rho], [self.rho, 1.0]])
        self.cov_inv = np.linalg.inv(cov)
        self.mu = {y: (y - 0.5) * np.array([self.d_img, self.d_tab]) for y in (0, 1)}
        self.tables = _category_tables(_category_levels(self.o.n_cat), self.o.informative_cat)
        self.shifts = [(dx, dy) for dx in range(-self.o.shift, self.o.shift + 1)
                       for dy in range(-self.o.shift, self.o.shift + 1)]

    # -- closed form ------------------------------------------------------------------------
    def closed_form(self) -> dict[str, float]:
        """Bayes AUCs without masks, for the no-shift, noise-categorical case."""
        d2 = (self.d_img ** 2 + self.d_tab ** 2 - 2 * self.rho * self.d_img * self.d_tab) / (1 - self.rho ** 2)
        return {"image": float(norm.cdf(self.d_img / np.sqrt(2))),
                "tabular": float(norm.cdf(self.d_tab / np.sqrt(2))),
                "fused": float(norm.cdf(np.sqrt(d2) / np.sqrt(2)))}

    # -- LLR from sufficient statistics -------------------------------------------------------
    def llr(self, t_img: np.ndarray, t_tab: np.ndarray, cat: np.ndarray, present: np.ndarray) -> np.ndarray:
        """log p(obs|y=1) - log p(obs|y=0). ``t_img`` is (N, n_shift) matched-filter outputs."""
        n = len(present)
        out = np.zeros(n)
        both = present[:, IMAGE] & present[:, TABULAR]
        img_only = present[:, IMAGE] & ~present[:, TABULAR]
        tab_only = ~present[:, IMAGE] & present[:, TABULAR]
        sig2 = self.o.sigma_pix ** 2

        def log_gauss2(ta: np.ndarray, tb: np.ndarray, y: int) -> np.ndarray:
            da, db = ta - self.mu[y][0], tb - self.mu[y][1]
            ci = self.cov_inv
            return -0.5 * (ci[0, 0] * da * da + 2 * ci[0, 1] * da * db + ci[1, 1] * db * db)

        def mix(terms: list[np.ndarray], t: np.ndarray) -> np.ndarray:
            # Mixture over shifts: component weight includes the residual-density term t_s^2/(2 s^2).
            return logsumexp(np.stack(terms, axis=1) + t ** 2 / (2 * sig2), axis=1)

        if both.any():
            ta, tb = t_img[both], t_tab[both][:, None]
            out[both] = (mix([log_gauss2(ta[:, s], tb[:, 0], 1) for s in range(ta.shape[1])], ta)
                         - mix([log_gauss2(ta[:, s], tb[:, 0], 0) for s in range(ta.shape[1])], ta))
        if img_only.any():
            ta = t_img[img_only]
            m1, m0 = self.mu[1][0], self.mu[0][0]
            out[img_only] = (mix([-0.5 * (ta[:, s] - m1) ** 2 for s in range(ta.shape[1])], ta)
                             - mix([-0.5 * (ta[:, s] - m0) ** 2 for s in range(ta.shape[1])], ta))
        if tab_only.any():
            tb = t_tab[tab_only]
            out[tab_only] = -0.5 * (tb - self.mu[1][1]) ** 2 + 0.5 * (tb - self.mu[0][1]) ** 2
        if self.o.informative_cat and cat.shape[1]:
            cat_llr = np.zeros(n)
            for j, table in enumerate(self.tables):
                cat_llr += np.log(table[1][cat[:, j]]) - np.log(table[0][cat[:, j]])
            out += np.where(present[:, TABULAR], cat_llr, 0.0)
        return out

    def _matched(self, images: np.ndarray) -> np.ndarray:
        flat = images.reshape(len(images), -1).astype(np.float64) - C_OFFSET
        p = np.stack([template(self.o.image_size, dx, dy).ravel() for dx, dy in self.shifts], axis=1)
        return flat @ p

    def scores(self, table: SampleTable, rows: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Posterior (N, 2) for table rows, using only the available modalities."""
        images = table.images.load(rows, "image", False)
        t_img = self._matched(images)
        t_tab = table.numeric[rows] @ self.dataset._tab_direction()
        cat = np.asarray(table.categorical[rows], dtype=np.int64) if self.o.n_cat else np.zeros((len(rows), 0), np.int64)
        llr = self.llr(t_img, t_tab, cat, present) + np.log(self.o.prevalence / (1 - self.o.prevalence))
        p1 = 1.0 / (1.0 + np.exp(-llr))
        return np.stack([1 - p1, p1], axis=1)

    # -- population value -------------------------------------------------------------------
    def population_auc(self, pattern: str, rate: float, seed: int = 12345, image_share: float = 0.5) -> float:
        """Bayes AUC of the population under a mask: closed form when exact, else Monte Carlo."""
        simple = self.o.shift == 0 and self.o.informative_cat == 0
        if rate == 0 and simple:
            return self.closed_form()["fused"]
        rng = np.random.Generator(np.random.PCG64(seed))
        n = self.o.mc_samples
        y, a, b = self.dataset._latents(rng, n)
        if self.o.shift:
            t_img = self._mc_shift_statistics(rng, a)
        else:
            t_img = a[:, None]
        levels = _category_levels(self.o.n_cat)
        cat = np.zeros((n, self.o.n_cat), dtype=np.int64)
        for j, table in enumerate(self.tables):
            cdf = np.cumsum(table[y], axis=1)
            cat[:, j] = (rng.random(n)[:, None] > cdf).sum(axis=1).clip(max=levels[j] - 1)
        present = np.ones((n, 2), bool)
        n_drop = int(round(rate * n))
        dropped = rng.permutation(n)[:n_drop]
        if pattern == "image":
            present[dropped, IMAGE] = False
        elif pattern == "tabular":
            present[dropped, TABULAR] = False
        else:
            n_img = int(round(image_share * n_drop))
            present[dropped[:n_img], IMAGE] = False
            present[dropped[n_img:], TABULAR] = False
        return float(roc_auc_score(y, self.llr(t_img, b, cat, present)))

    def _mc_shift_statistics(self, rng: np.random.Generator, a: np.ndarray) -> np.ndarray:
        """Matched-filter outputs for every shift of freshly generated shifted images (chunked)."""
        s = self.o.image_size
        p_all = np.stack([template(s, dx, dy).ravel() for dx, dy in self.shifts], axis=1)
        out = np.empty((len(a), len(self.shifts)))
        for start in range(0, len(a), 10_000):
            stop = min(start + 10_000, len(a))
            k = rng.integers(0, len(self.shifts), size=stop - start)
            p = p_all[:, k].T
            eps = rng.standard_normal((stop - start, s * s))
            eps -= (eps * p).sum(axis=1, keepdims=True) * p
            x = a[start:stop, None] * p + self.o.sigma_pix * eps
            out[start:stop] = x @ p_all
        return out
