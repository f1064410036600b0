"""The synthetic dataset's exact Bayes oracle and independent-evidence ceiling (scenarios spec B).

For every scenario (``datasets.synthetic_scenarios``) and availability pattern the oracle computes
``LLR = log p(observed | y=1) / p(observed | y=0)`` from the sufficient statistics: the matched
filter outputs ``t_k = <x - c, P_k>`` (one per template shift ``k``; the exact mixture over shifts
weights component ``k`` by ``exp(t_k^2 / 2 sigma_pix^2)``, the residual-density term), the tabular
projection ``<x_num, w> = b``, the informative categoricals and, for ``interaction``, the context
``s`` (observed with the tabular record; a mixture over ``s`` when the record is missing).

* ``scores`` adds the prior log-odds and, when given, the **pattern term**
  ``log p(pattern | y=1) / p(pattern | y=0)`` (``pattern_log_odds = {"both": x, "image": x,
  "tabular": x}``, ``"image"`` = only the image present): exact Bayes under a label-dependent
  (``mnar``) mask.
* ``ceiling_scores``: the sum of the *marginal* LLRs of the present modalities (the image's, the
  tabular record's) -- what perfectly calibrated late fusion can reach at best.  The pattern term,
  when given, is added too: under ``mnar`` the pattern is independent of the data given ``y``,
  i.e. independent evidence as well.  AUC(ceiling) <= AUC(Bayes) (Neyman-Pearson).
* ``population`` (``population_auc``, ``population_ceiling_auc`` and their ``_se``): the
  population values under a mask.  Closed form (SE 0) at rate 0 without shift or informative
  categoricals where ``closed_form`` has one; else Monte Carlo on ``mc_samples`` fresh samples,
  exact per-class drop counts (``mnar``: per-class rates ``core.masks.mnar_class_rates``, and the
  Bayes LLR includes the population pattern term), with DeLong standard errors.  ``mar`` has no
  exact oracle here (a dropped tabular record's pattern says something about its unobserved
  column): NaN.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
from scipy.special import expit, logsumexp
from scipy.stats import norm

from core.contract import SampleTable
from core.masks import IMAGE, TABULAR, mnar_class_rates
from core.metrics import delong
from datasets.synthetic_scenarios import (C_OFFSET, CONTEXT_COLUMN, CONTEXT_LEVELS, SyntheticOptions,
                                          category_levels, category_tables, draw_categoricals,
                                          draw_latents, tab_direction, template)

PATTERN_KEYS: tuple[str, ...] = ("both", "image", "tabular")  # "image": only the image present


class PopulationAUC(NamedTuple):
    bayes: float
    bayes_se: float
    ceiling: float
    ceiling_se: float
    gap_se: float     # SE of bayes - ceiling (paired, same MC sample)
    exact: bool       # closed form (all SEs 0)


def pattern_codes(present: np.ndarray) -> np.ndarray:
    """Index into PATTERN_KEYS per row (-1: nothing present)."""
    img, tab = present[:, IMAGE], present[:, TABULAR]
    return np.select([img & tab, img & ~tab, ~img & tab], [0, 1, 2], -1)


def log_odds_from_rates(p1: Mapping[str, float], p0: Mapping[str, float]) -> dict[str, float]:
    """``log p1 / p0`` per pattern; 0 where the pattern never occurs in either class."""
    out = {}
    with np.errstate(divide="ignore"):
        for key in PATTERN_KEYS:
            a, b = float(p1.get(key, 0.0)), float(p0.get(key, 0.0))
            out[key] = 0.0 if a == 0 and b == 0 else float(np.log(a) - np.log(b))
    return out


def realised_pattern_log_odds(present: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The pattern term of a finite split from its realised per-class pattern rates (exact counts)."""
    codes = pattern_codes(np.asarray(present, bool))
    labels = np.asarray(labels).astype(int)
    rates = []
    for k in (0, 1):
        rows = codes[labels == k]
        rates.append({key: float(np.mean(rows == i)) if len(rows) else 0.0 for i, key in enumerate(PATTERN_KEYS)})
    return log_odds_from_rates(rates[1], rates[0])


def class_drop_rates(rate: float, mechanism: str, strength: float, prevalence: float) -> np.ndarray:
    """Per-class drop rates (r_0, r_1) of the population under a mechanism."""
    if mechanism == "mcar":
        return np.array([rate, rate], dtype=np.float64)
    if mechanism == "mnar":
        return mnar_class_rates(rate, strength, [1 - prevalence, prevalence])
    raise ValueError(f"no exact synthetic oracle for missingness mechanism '{mechanism}'")


def population_pattern_log_odds(pattern: str, rates: np.ndarray, image_share: float) -> dict[str, float]:
    """The pattern term from per-class drop rates: p(both|y) = 1 - r_y, the dropped share by pattern."""
    def probs(r: float) -> dict[str, float]:
        lose_image = {"image": 1.0, "tabular": 0.0}.get(pattern, image_share)
        return {"both": 1 - r, "tabular": r * lose_image, "image": r * (1 - lose_image)}
    return log_odds_from_rates(probs(float(rates[1])), probs(float(rates[0])))


class SyntheticOracle:
    """Bayes posterior from the *available* modalities only (``oracle_llr`` of the spec)."""

    def __init__(self, options: SyntheticOptions) -> None:
        self.o = options
        self.d_img, self.d_tab, self.rho = options.resolved()
        self.cov_inv = np.linalg.inv(np.array([[1.0, self.rho], [self.rho, 1.0]]))
        self.gains = options.gains()  # {s: g_s}
        self.tables = category_tables(category_levels(options.n_cat), options.informative_cat)
        self.shifts = [(dx, dy) for dx in range(-options.shift, options.shift + 1)
                       for dy in range(-options.shift, options.shift + 1)]
        self.sig2 = options.pixel_noise ** 2
        self.cache: dict[tuple, PopulationAUC] = {}

    # -- closed form ------------------------------------------------------------------------
    def closed_form(self) -> dict[str, float]:
        """Bayes AUCs and the ceiling without masks (no shift, noise categoricals); NaN where the
        scenario has no closed form (interaction with 0 < lambda < 1, or rho != 0 at lambda = 1)."""
        d_img, d_tab, rho = self.d_img, self.d_tab, self.rho
        lam = self.o.interaction_lambda if self.o.has_context else 0.0
        nan = float("nan")
        out = {"image": nan, "tabular": float(norm.cdf(d_tab / np.sqrt(2))), "fused": nan, "ceiling": nan}
        if lam == 0.0:
            d2 = (d_img ** 2 + d_tab ** 2 - 2 * rho * d_img * d_tab) / (1 - rho ** 2)
            var = d_img ** 2 + d_tab ** 2 + 2 * rho * d_img * d_tab
            out["image"] = float(norm.cdf(d_img / np.sqrt(2)))
            out["fused"] = float(norm.cdf(np.sqrt(d2) / np.sqrt(2)))
            out["ceiling"] = float(norm.cdf((d_img ** 2 + d_tab ** 2) / np.sqrt(2 * var))) if var > 0 else 0.5
        elif lam == 1.0:  # the image marginal is the same for both classes: LLR_img = 0
            out["image"] = 0.5
            out["ceiling"] = out["tabular"]
            if rho == 0.0:  # s*a | y has the balanced law in both halves
                out["fused"] = float(norm.cdf(np.sqrt(d_img ** 2 + d_tab ** 2) / np.sqrt(2)))
        return out

    # -- LLR from sufficient statistics -------------------------------------------------------
    def _mean(self, y: int, s: int) -> tuple[float, float]:
        return (y - 0.5) * self.gains[s] * self.d_img, (y - 0.5) * self.d_tab

    def _image_loglik(self, t_img: np.ndarray, y: int) -> np.ndarray:
        """log p(image | y) up to a y-free term: mixture over the context and the shifts."""
        resid = t_img ** 2 / (2 * self.sig2)
        terms = [-0.5 * (t_img - self._mean(y, s)[0]) ** 2 + resid for s in self.gains]
        return logsumexp(np.concatenate(terms, axis=1), axis=1) - np.log(len(self.gains))

    def _fused_loglik(self, t_img: np.ndarray, t_tab: np.ndarray, context: np.ndarray, y: int) -> np.ndarray:
        """log p(image, tabular | y, s) up to a y-free term (the context is in the tabular record)."""
        resid = t_img ** 2 / (2 * self.sig2)
        ci = self.cov_inv
        terms = []
        for s in self.gains:
            ma, mb = self._mean(y, s)
            da, db = t_img - ma, (t_tab - mb)[:, None]
            term = -0.5 * (ci[0, 0] * da * da + 2 * ci[0, 1] * da * db + ci[1, 1] * db * db) + resid
            terms.append(np.where((context == s)[:, None], term, -np.inf))
        return logsumexp(np.concatenate(terms, axis=1), axis=1)

    def _cat_llr(self, cat: np.ndarray) -> np.ndarray:
        out = np.zeros(len(cat))
        if self.o.informative_cat and cat.shape[1]:
            for j, table in enumerate(self.tables):
                out += np.log(table[1][cat[:, j]]) - np.log(table[0][cat[:, j]])
        return out

    def _tab_llr(self, t_tab: np.ndarray, cat: np.ndarray) -> np.ndarray:
        """Marginal LLR of the tabular record (the context says nothing: s is independent of y)."""
        gauss = -0.5 * (t_tab - self._mean(1, 1)[1]) ** 2 + 0.5 * (t_tab - self._mean(0, 1)[1]) ** 2
        return gauss + self._cat_llr(cat)

    def llr(self, t_img: np.ndarray, t_tab: np.ndarray, cat: np.ndarray, present: np.ndarray,
            context: np.ndarray | None = None) -> np.ndarray:
        """log p(obs|y=1) - log p(obs|y=0). ``t_img`` is (N, n_shift) matched-filter outputs,
        ``context`` the interaction context (+-1; None: all +1)."""
        n = len(present)
        context = np.ones(n, np.int64) if context is None else np.asarray(context)
        out = np.zeros(n)
        both = present[:, IMAGE] & present[:, TABULAR]
        img_only = present[:, IMAGE] & ~present[:, TABULAR]
        tab_only = ~present[:, IMAGE] & present[:, TABULAR]
        if both.any():
            ta, tb, cx = t_img[both], t_tab[both], context[both]
            out[both] = (self._fused_loglik(ta, tb, cx, 1) - self._fused_loglik(ta, tb, cx, 0)
                         + self._cat_llr(cat[both]))
        if img_only.any():
            ta = t_img[img_only]
            out[img_only] = self._image_loglik(ta, 1) - self._image_loglik(ta, 0)
        if tab_only.any():
            out[tab_only] = self._tab_llr(t_tab[tab_only], cat[tab_only])
        return out

    def ceiling_llr(self, t_img: np.ndarray, t_tab: np.ndarray, cat: np.ndarray,
                    present: np.ndarray) -> np.ndarray:
        """LLR_img(a) + LLR_tab(b) over the present modalities: each modality's marginal LLR."""
        out = np.zeros(len(present))
        img, tab = present[:, IMAGE], present[:, TABULAR]
        if img.any():
            out[img] += self._image_loglik(t_img[img], 1) - self._image_loglik(t_img[img], 0)
        if tab.any():
            out[tab] += self._tab_llr(t_tab[tab], cat[tab])
        return out

    # -- from a table ---------------------------------------------------------------------------
    def matched(self, images: np.ndarray) -> np.ndarray:
        flat = images.reshape(len(images), -1).astype(np.float64) - C_OFFSET
        p = np.stack([template(self.o.image_size, dx, dy).ravel() for dx, dy in self.shifts], axis=1)
        return flat @ p

    def statistics(self, table: SampleTable, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """(t_img, t_tab, cat, context) of table rows."""
        t_img = self.matched(table.images.load(rows, "image", False))
        t_tab = table.numeric[rows] @ tab_direction(self.o)
        names = [c.name for c in table.columns if c.kind == "categorical"]
        raw = np.asarray(table.categorical[rows], dtype=object).reshape(len(rows), len(names))
        cat = raw[:, : self.o.n_cat].astype(np.int64) if self.o.n_cat else np.zeros((len(rows), 0), np.int64)
        context = np.ones(len(rows), np.int64)
        if self.o.has_context:
            context = np.where(raw[:, names.index(CONTEXT_COLUMN)] == CONTEXT_LEVELS[0], 1, -1)
        return t_img, t_tab, cat, context

    def _posterior(self, llr: np.ndarray, present: np.ndarray,
                   pattern_log_odds: Mapping[str, float] | None) -> np.ndarray:
        if pattern_log_odds is not None:
            terms = np.array([float(pattern_log_odds.get(k, 0.0)) for k in PATTERN_KEYS] + [0.0])
            llr = llr + terms[pattern_codes(present)]
        p1 = expit(llr + np.log(self.o.prevalence / (1 - self.o.prevalence)))
        return np.stack([1 - p1, p1], axis=1)

    def scores(self, table: SampleTable, rows: np.ndarray, present: np.ndarray,
               pattern_log_odds: Mapping[str, float] | None = None) -> np.ndarray:
        """Posterior (N, 2) for table rows, using only the available modalities (and, when given,
        the pattern term ``{"both": x, "image": x, "tabular": x}``)."""
        t_img, t_tab, cat, context = self.statistics(table, rows)
        return self._posterior(self.llr(t_img, t_tab, cat, present, context), present, pattern_log_odds)

    def ceiling_scores(self, table: SampleTable, rows: np.ndarray, present: np.ndarray,
                       pattern_log_odds: Mapping[str, float] | None = None) -> np.ndarray:
        """Posterior (N, 2) of the independent-evidence ceiling (sum of the marginal LLRs)."""
        t_img, t_tab, cat, _ = self.statistics(table, rows)
        return self._posterior(self.ceiling_llr(t_img, t_tab, cat, present), present, pattern_log_odds)

    @staticmethod
    def pattern_log_odds_from_mask(present: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return realised_pattern_log_odds(present, labels)

    # -- population value -------------------------------------------------------------------
    def population(self, pattern: str, rate: float, seed: int = 12345, image_share: float = 0.5,
                   mechanism: str = "mcar", strength: float = 1.0) -> PopulationAUC:
        """Bayes AUC and ceiling of the population under a mask (cached per arguments)."""
        key = (pattern, float(rate), int(seed), float(image_share), mechanism, float(strength))
        if key not in self.cache:
            self.cache[key] = self._population(*key)
        return self.cache[key]

    def _population(self, pattern: str, rate: float, seed: int, image_share: float,
                    mechanism: str, strength: float) -> PopulationAUC:
        if mechanism == "mar":
            nan = float("nan")
            return PopulationAUC(nan, nan, nan, nan, nan, False)
        closed = self.closed_form()
        if rate == 0 and self.o.shift == 0 and self.o.informative_cat == 0 and np.isfinite(closed["fused"]):
            return PopulationAUC(closed["fused"], 0.0, closed["ceiling"], 0.0, 0.0, True)
        rates = class_drop_rates(rate, mechanism, strength, self.o.prevalence)
        rng = np.random.Generator(np.random.PCG64(seed))
        n = self.o.mc_samples
        y, a, b, s = draw_latents(self.o, rng, n)
        t_img = self._mc_shift_statistics(rng, a) if self.o.shift else a[:, None]
        cat = draw_categoricals(rng, y, self.o)
        present = np.ones((n, 2), bool)
        for k in (0, 1):
            members = rng.permutation(np.flatnonzero(y == k))
            dropped = members[: int(round(rates[k] * len(members)))]
            n_img = {"image": len(dropped), "tabular": 0}.get(pattern, int(round(image_share * len(dropped))))
            present[dropped[:n_img], IMAGE] = False
            present[dropped[n_img:], TABULAR] = False
        bayes = self.llr(t_img, b, cat, present, s)
        ceiling = self.ceiling_llr(t_img, b, cat, present)
        if mechanism == "mnar":
            odds = population_pattern_log_odds(pattern, rates, image_share)
            term = np.array([odds[k] for k in PATTERN_KEYS] + [0.0])[pattern_codes(present)]
            bayes, ceiling = bayes + term, ceiling + term
        scores = np.nan_to_num(np.stack([bayes, ceiling]), nan=0.0, posinf=1e300, neginf=-1e300)
        aucs, cov = delong(y, scores)
        gap_var = max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)
        return PopulationAUC(float(aucs[0]), float(np.sqrt(cov[0, 0])), float(aucs[1]),
                             float(np.sqrt(cov[1, 1])), float(np.sqrt(gap_var)), False)

    def population_auc(self, pattern: str, rate: float, seed: int = 12345, image_share: float = 0.5,
                       mechanism: str = "mcar", strength: float = 1.0) -> float:
        """Bayes AUC of the population under a mask: closed form when exact, else Monte Carlo."""
        return self.population(pattern, rate, seed, image_share, mechanism, strength).bayes

    def population_auc_se(self, pattern: str, rate: float, seed: int = 12345, image_share: float = 0.5,
                          mechanism: str = "mcar", strength: float = 1.0) -> float:
        return self.population(pattern, rate, seed, image_share, mechanism, strength).bayes_se

    def population_ceiling_auc(self, pattern: str, rate: float, seed: int = 12345, image_share: float = 0.5,
                               mechanism: str = "mcar", strength: float = 1.0) -> float:
        """AUC of the independent-evidence ceiling in the population (same conventions)."""
        return self.population(pattern, rate, seed, image_share, mechanism, strength).ceiling

    def population_ceiling_auc_se(self, pattern: str, rate: float, seed: int = 12345, image_share: float = 0.5,
                                  mechanism: str = "mcar", strength: float = 1.0) -> float:
        return self.population(pattern, rate, seed, image_share, mechanism, strength).ceiling_se

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
            x = a[start:stop, None] * p + self.o.pixel_noise * eps
            out[start:stop] = x @ p_all
        return out
