"""Options and latent models of the synthetic dataset's scenarios (scenarios spec part B).

Every scenario keeps the generator's construction (``datasets.synthetic``: template ``P``, matched
filter ``<x - c, P> = a`` exactly, noise projected out of ``P``; tabular direction ``w``) and
changes only the latent model ``(y, a, b[, s])`` or the mask it expects.  ``d = (d_img, d_tab)``,
``Phi`` the normal CDF; each scenario's exact oracle is ``datasets.synthetic_oracle``.

* ``balanced`` (default; today's behaviour, the ``preset`` option picks its latents): ``(a, b) | y
  ~ N((2y-1)/2 d, Sigma)``, unit variances, correlation ``rho``.  Tests nothing by design (the
  control): with ``rho = 0`` the modalities are independent given ``y``, the Bayes LLR is
  ``d_img a + d_tab b`` = the sum of the marginal LLRs, so the independent-evidence ceiling equals
  Bayes and no method should beat calibrated late fusion.  Closed forms (no shift, noise
  categoricals, rate 0): image ``Phi(d_img/sqrt2)``, tabular ``Phi(d_tab/sqrt2)``, fused
  ``Phi(D/sqrt2)`` with ``D^2 = d' Sigma^-1 d``; ceiling ``Phi((d_img^2 + d_tab^2) / sqrt(2 (d_img^2
  + d_tab^2 + 2 rho d_img d_tab)))``.
* ``interaction`` (cross-modal interaction; knob ``interaction_lambda`` = lambda in [0, 1],
  default 1): a context ``s`` in {-1, +1}, P(s = +1) = 1/2, independent of ``y``, is observed in
  the tabular record as the clean categorical column ``context`` (``s = +1`` -> level ``"A"``,
  ``s = -1`` -> ``"B"``).  ``a | y, s ~ N(g_s (2y-1) d_img/2, 1)`` with the gain ``g_s = (1 - lambda)
  + lambda s`` (``g_+ = 1``, ``g_- = 1 - 2 lambda``); ``b | y ~ N((2y-1) d_tab/2, 1)``.  Fused LLR
  (``s`` known): ``g_s d_img a + d_tab b``; image only: the two-component mixture over ``s`` (at
  lambda = 1 it is identically 0: the image alone is worthless, AUC 1/2); tabular only: ``d_tab b``
  (``s`` is independent of ``y``).  Closed forms at rate 0: lambda = 0 is ``balanced``; lambda = 1
  gives Bayes ``Phi(sqrt(d_img^2 + d_tab^2)/sqrt2)`` and ceiling = the tabular AUC
  ``Phi(d_tab/sqrt2)``; other lambda: Monte Carlo.  Late fusion is stuck at the ceiling; a model of
  the joint (cross-attention, alignment) can reach Bayes.
* ``redundant_hard`` (cross-modal transfer to a hard modality): ``rho = 0.8`` and a high pixel
  noise, its own option ``hard_sigma_pix`` (default ``REDUNDANT_HARD_SIGMA_PIX``, measured so that
  ``image_only`` stays well below the image Bayes AUC at the default budget; it replaces
  ``sigma_pix``, which the dataset config sets low for the other scenarios); evaluated with the
  image alone at test, so Bayes = the image marginal ``Phi(d_img/sqrt2)``.  No synthesis can beat the available modality's
  Bayes AUC; alignment during training may learn a better image encoder than ``image_only``.
* ``dominant`` (modality imbalance): ``d_img = 1.8``, ``d_tab = 0.5`` (the ``image_dominant``
  preset); closed forms as ``balanced``.  Tests whether jointly trained fusion under-uses the weak
  modality.
* ``informative_missing``: ``balanced`` latents; the scenario expects ``missing.mechanism: mnar``
  with strength 1.5 (set by the suite's ``missing`` section, recorded here in
  ``SCENARIO_MISSING``).  The Bayes LLR adds ``log p(pattern | y=1) / p(pattern | y=0)``; since the
  pattern is independent of ``(a, b)`` given ``y``, the ceiling adds it too (it stays = Bayes).

Precedence of the latent parameters: explicit ``d_img``/``d_tab``/``rho`` > the scenario's values >
the ``preset`` (default ``balanced``).  The pixel noise in use (``pixel_noise``) is
``hard_sigma_pix`` for ``redundant_hard``, ``sigma_pix`` otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.errors import ConfigError

C_OFFSET = 0.5
PRESETS: dict[str, dict[str, float]] = {
    "balanced": {"d_img": 1.19, "d_tab": 0.954, "rho": 0.0},
    "image_dominant": {"d_img": 1.8, "d_tab": 0.5, "rho": 0.0},
    "tabular_dominant": {"d_img": 0.5, "d_tab": 1.8, "rho": 0.0},
    "redundant": {"d_img": 1.19, "d_tab": 0.954, "rho": 0.8},
    "noise_image": {"d_img": 0.0, "d_tab": 0.954, "rho": 0.0},
}
SCENARIOS: tuple[str, ...] = ("balanced", "interaction", "redundant_hard", "dominant", "informative_missing")
# Default pixel noise of redundant_hard (option hard_sigma_pix); how it was measured:
# configs/datasets/synthetic.yaml.
REDUNDANT_HARD_SIGMA_PIX = 0.6
SCENARIO_LATENTS: dict[str, dict[str, float]] = {
    "balanced": {}, "interaction": {}, "informative_missing": {},
    "redundant_hard": {"rho": 0.8},
    "dominant": {"d_img": 1.8, "d_tab": 0.5},
}
# The missingness mechanism a scenario is meant to be run with (the suite config sets it).
SCENARIO_MISSING: dict[str, dict[str, object]] = {"informative_missing": {"mechanism": "mnar", "strength": 1.5}}
CONTEXT_COLUMN = "context"
CONTEXT_LEVELS = ("A", "B")  # s = +1 -> "A", s = -1 -> "B"


@dataclass(frozen=True)
class SyntheticOptions:
    scenario: str = "balanced"     # one of SCENARIOS (module docstring)
    interaction_lambda: float = 1.0  # scenario interaction: lambda in [0, 1] (0 = balanced)
    preset: str | None = None      # one of PRESETS; the scenario and explicit d_img/d_tab/rho override it
    d_img: float | None = None     # mean shift of the image latent (AUC_img = Phi(d_img/sqrt 2))
    d_tab: float | None = None     # mean shift of the tabular latent
    rho: float | None = None       # correlation of the latents: redundancy between modalities
    image_size: int = 32           # S in {32, 64}
    sigma_pix: float = 1.0         # pixel noise: how hard P is to learn (not the Bayes AUC)
    hard_sigma_pix: float = REDUNDANT_HARD_SIGMA_PIX  # the pixel noise of scenario redundant_hard
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
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"{where}.scenario: unknown scenario '{self.scenario}'; known: {', '.join(SCENARIOS)}")
        if not 0.0 <= self.interaction_lambda <= 1.0:
            raise ConfigError(f"{where}.interaction_lambda: must be in [0, 1], got {self.interaction_lambda}")
        if self.interaction_lambda != 1.0 and self.scenario != "interaction":
            raise ConfigError(f"{where}.interaction_lambda: only applies to scenario 'interaction' "
                              f"(scenario is '{self.scenario}')")
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
        if not self.sigma_pix > 0:
            raise ConfigError(f"{where}.sigma_pix: must be > 0, got {self.sigma_pix}")
        if not self.hard_sigma_pix > 0:
            raise ConfigError(f"{where}.hard_sigma_pix: must be > 0, got {self.hard_sigma_pix}")
        if self.hard_sigma_pix != REDUNDANT_HARD_SIGMA_PIX and self.scenario != "redundant_hard":
            raise ConfigError(f"{where}.hard_sigma_pix: only applies to scenario 'redundant_hard' "
                              f"(scenario is '{self.scenario}')")
        if not 0 < self.prevalence < 1:
            raise ConfigError(f"{where}.prevalence: must be in (0, 1), got {self.prevalence}")
        if self.mc_samples < 100:
            raise ConfigError(f"{where}.mc_samples: must be >= 100, got {self.mc_samples}")

    def resolved(self) -> tuple[float, float, float]:
        """(d_img, d_tab, rho): explicit values > the scenario's > the preset's."""
        base = dict(PRESETS[self.preset or "balanced"])
        base.update(SCENARIO_LATENTS[self.scenario])
        for key in ("d_img", "d_tab", "rho"):
            if getattr(self, key) is not None:
                base[key] = float(getattr(self, key))
        return base["d_img"], base["d_tab"], base["rho"]

    @property
    def pixel_noise(self) -> float:
        """The pixel noise in use: ``hard_sigma_pix`` for redundant_hard, else ``sigma_pix``."""
        return float(self.hard_sigma_pix if self.scenario == "redundant_hard" else self.sigma_pix)

    @property
    def has_context(self) -> bool:
        return self.scenario == "interaction"

    def gains(self) -> dict[int, float]:
        """Image-shift gain per context value: ``{+1: g_+, -1: g_-}`` (interaction), else ``{1: 1}``."""
        if not self.has_context:
            return {1: 1.0}
        lam = float(self.interaction_lambda)
        return {1: 1.0, -1: 1.0 - 2.0 * lam}


def template(size: int, dx: int = 0, dy: int = 0) -> np.ndarray:
    """Unit-L2 centred Gaussian-windowed grating (seed-independent), optionally translated."""
    coords = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(coords - dy, coords - dx, indexing="ij")
    window = np.exp(-(xx ** 2 + yy ** 2) / (2 * (size / 6) ** 2))
    grating = np.cos(2 * np.pi * (xx + yy) / (size / 2.5))
    p = window * grating
    return (p / np.linalg.norm(p)).astype(np.float64)


def category_levels(n_cat: int) -> list[int]:
    return [3 + (j % 3) for j in range(n_cat)]


def category_tables(levels: list[int], strength: float) -> list[np.ndarray]:
    """p(level | y) as (2, L) per column; uniform for y=0, tilted by ``strength`` for y=1."""
    tables = []
    for n in levels:
        p0 = np.full(n, 1.0 / n)
        logits = strength * (np.arange(n) - (n - 1) / 2) / max(n - 1, 1)
        p1 = np.exp(logits) / np.exp(logits).sum()
        tables.append(np.stack([p0, p1]))
    return tables


def draw_categoricals(rng: np.random.Generator, y: np.ndarray, options: SyntheticOptions) -> np.ndarray:
    """(N, n_cat) level indices drawn from p(level | y)."""
    levels = category_levels(options.n_cat)
    cat = np.zeros((len(y), options.n_cat), dtype=np.int64)
    for j, table in enumerate(category_tables(levels, options.informative_cat)):
        cdf = np.cumsum(table[y], axis=1)
        cat[:, j] = (rng.random(len(y))[:, None] > cdf).sum(axis=1).clip(max=levels[j] - 1)
    return cat


def tab_direction(options: SyntheticOptions) -> np.ndarray:
    """The unit tabular direction ``w``: spread evenly over the first ``n_inf`` numeric columns."""
    w = np.zeros(options.n_num)
    w[: options.n_inf] = 1.0 / np.sqrt(options.n_inf)
    return w


def draw_latents(options: SyntheticOptions, rng: np.random.Generator,
                 n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, a, b, s) of ``n`` samples; ``s`` is the context (+-1; all +1 without one).  The draws
    of ``balanced`` are those of the generator before scenarios existed (y, then z)."""
    d_img, d_tab, rho = options.resolved()
    y = (rng.random(n) < options.prevalence).astype(np.int64)
    z = rng.standard_normal((n, 2))
    a = z[:, 0]
    b = rho * z[:, 0] + np.sqrt(1 - rho ** 2) * z[:, 1]
    if options.has_context:
        s = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int64)
    else:
        s = np.ones(n, dtype=np.int64)
    gains = options.gains()
    gain = np.where(s == 1, gains[1], gains.get(-1, 1.0))
    sign = y - 0.5
    return y, a + sign * gain * d_img, b + sign * d_tab, s
