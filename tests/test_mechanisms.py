"""Missingness mechanisms (scenarios spec A): mnar / mar masks stay exact, nested and id-keyed,
mnar realises ``mnar_class_rates``, mar drops high values first, the mechanism-shift protocol
draws train and test masks with different mechanisms, and the run key / file name cover them."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import build_parser, overrides_from_args
from benchmark.config import load_config
from benchmark.grid import build_grid
from benchmark.run import main
from benchmark.summary.load import normalise
from benchmark.summary.model import Section
from core.errors import ConfigError
from core.masks import (DEFAULT_RATES, MissingSpec, drop_mask, mask_mechanism, mnar_class_rates, mnar_targets,
                        persist_mask)
from core.mechanisms import centred_ranks, weighted_quota_sequence
from datasets.preparation import prepare_data

N = 1000
IDS = np.asarray([f"p{i:05d}" for i in range(N)])
RNG = np.random.default_rng(3)
BINARY = RNG.choice(["0", "1"], size=N, p=[0.7, 0.3])
THREE = RNG.choice(["0", "1", "2"], size=N, p=[0.5, 0.3, 0.2])
VALUES = RNG.normal(size=N)
MECHS = ("mcar", "mar", "mnar")


def _dropped(keep: np.ndarray) -> np.ndarray:
    return ~keep.all(axis=1)


def _mask(strata, rate, mechanism, strength=1.5, pattern="mixed", ids=IDS, values=VALUES, seed=0, split="train"):
    return drop_mask(ids, strata, rate, pattern, seed, "d", split, mechanism=mechanism, strength=strength,
                     mar_values=values if mechanism == "mar" else None)


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(centred_ranks(a), centred_ranks(b))[0, 1])


# -- mnar ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strata", [BINARY, THREE], ids=["binary", "three"])
@pytest.mark.parametrize("strength", [0.5, 1.5, 4.0])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_mnar_counts_are_exact_and_realise_the_class_rates(strata, strength, rate):
    dropped = _dropped(_mask(strata, rate, "mnar", strength))
    total = math.floor(rate * N + 0.5)
    assert dropped.sum() == total
    names = sorted(set(strata.tolist()))
    sizes = np.asarray([(strata == s).sum() for s in names])
    at_total = mnar_class_rates(total / N, strength, sizes) * sizes  # the target at this exact total
    at_rate = mnar_class_rates(rate, strength, sizes) * sizes
    for k, s in enumerate(names):
        count = int(dropped[strata == s].sum())
        assert math.floor(at_total[k] + 1e-9) <= count <= math.ceil(at_total[k] - 1e-9), (s, count, at_total)
        assert abs(count - at_rate[k]) <= 1.5  # within rounding of the population rate (+-1, +-1/2 from T)


def test_mnar_positives_lose_more_for_positive_strength_and_rates_grow_with_it():
    previous = None
    for strength in (0.5, 1.5, 3.0):
        dropped = _dropped(_mask(BINARY, 0.3, "mnar", strength))
        pos, neg = dropped[BINARY == "1"].mean(), dropped[BINARY == "0"].mean()
        assert pos > neg
        if previous is not None:
            assert pos > previous
        previous = pos


@pytest.mark.parametrize("strata", [BINARY, THREE], ids=["binary", "three"])
@pytest.mark.parametrize("pattern", ["image", "tabular", "mixed"])
def test_strength_zero_is_mcar(strata, pattern):
    for rate in DEFAULT_RATES:
        mcar = _mask(strata, rate, "mcar", pattern=pattern)
        np.testing.assert_array_equal(_mask(strata, rate, "mnar", 0.0, pattern=pattern), mcar)
        np.testing.assert_array_equal(_mask(strata, rate, "mar", 0.0, pattern=pattern), mcar)


def test_multilabel_mnar_is_mcar():
    labels = (np.random.default_rng(0).random((20, 3)) < 0.3).astype(np.float32)
    assert mask_mechanism("mnar", labels) == "mcar"
    assert mask_mechanism("mnar", labels[:, 0].astype(np.int64)) == "mnar"
    assert mask_mechanism("mar", labels) == "mar"
    with pytest.raises(ValueError, match="class strata"):
        drop_mask(IDS[:3], np.asarray(["none", "0", "1"]), 0.5, "image", 0, "d", "train", mechanism="mnar")


def test_weighted_quota_stays_within_targets_at_every_total():
    rng = np.random.default_rng(17)
    for _ in range(150):
        k = int(rng.integers(2, 6))
        sizes = [int(n) for n in rng.integers(1, 61, size=k)]
        strength = float(rng.choice([0.3, 1.5, 4.0, 10.0]))
        targets = mnar_targets(sizes, list(range(k)), k, strength)
        weights = np.exp(strength * (np.arange(k) / (k - 1) - 0.5))
        seq = weighted_quota_sequence(sizes, weights, targets)
        assert np.bincount(seq, minlength=k).tolist() == sizes
        counts = np.zeros(k)
        for t, s in enumerate(seq, start=1):
            counts[s] += 1
            assert (np.floor(targets[t] + 1e-9) <= counts).all() and (counts <= np.ceil(targets[t] - 1e-9)).all()


# -- mar -------------------------------------------------------------------------------------------
def test_mar_drops_high_values_first_with_mcar_class_counts():
    for strength, floor in ((1.0, 0.05), (3.0, 0.3), (8.0, 0.5)):
        dropped = _dropped(_mask(THREE, 0.3, "mar", strength))
        assert _rank_corr(VALUES, dropped.astype(float)) > floor, strength
        mcar = _dropped(_mask(THREE, 0.3, "mcar"))
        for s in ("0", "1", "2"):  # per-class counts exactly as mcar
            assert dropped[THREE == s].sum() == mcar[THREE == s].sum()
    strong = _dropped(_mask(THREE, 0.3, "mar", 8.0))
    assert VALUES[strong].mean() > VALUES[~strong].mean() + 0.5


def test_mar_missing_values_rank_in_the_middle():
    values = VALUES.copy()
    values[:100] = np.nan
    q = centred_ranks(values)
    assert (q[:100] == 0).all() and q[100:].min() == -0.5 and q[100:].max() == 0.5
    assert (centred_ranks(np.asarray([np.nan, 2.0])) == 0).all()
    assert centred_ranks(np.asarray([1.0, 1.0, 3.0])).tolist() == [-0.25, -0.25, 0.5]  # ties share a rank


def test_mar_needs_values():
    with pytest.raises(ValueError, match="mar_values"):
        drop_mask(IDS, THREE, 0.3, "image", 0, "d", "train", mechanism="mar")


# -- all mechanisms: nested, exact, id-keyed ------------------------------------------------------
def _strata_of(sizes: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, str(i)) for i, n in enumerate(sizes)])


@pytest.mark.parametrize("mechanism", MECHS)
@pytest.mark.parametrize("pattern", ["image", "mixed"])
def test_random_strata_nested_for_every_pair_of_default_rates(mechanism, pattern):
    rng = np.random.default_rng(23)
    rates = DEFAULT_RATES + (0.9,)
    for trial in range(25):
        sizes = [int(n) for n in rng.integers(1, 61, size=rng.integers(1, 5))]
        strata = _strata_of(sizes)
        ids = np.asarray([f"t{trial}-{i}" for i in range(len(strata))])
        values = rng.normal(size=len(ids))
        strength = float(rng.choice([0.5, 1.5, 5.0]))
        masks = {r: _mask(strata, r, mechanism, strength, pattern, ids, values, trial, "val") for r in rates}
        for a in rates:
            for b in rates:
                if a < b:
                    assert not (~masks[a] & masks[b]).any(), (mechanism, sizes, strength, a, b)
        for r, keep in masks.items():
            assert keep.any(axis=1).all()
            assert _dropped(keep).sum() == math.floor(r * len(ids) + 0.5)


@pytest.mark.parametrize("mechanism", MECHS)
def test_masks_are_id_keyed_and_order_free(mechanism):
    perm = np.random.default_rng(1).permutation(N)
    keep = _mask(THREE, 0.5, mechanism)
    again = _mask(THREE[perm], 0.5, mechanism, ids=IDS[perm], values=VALUES[perm])
    np.testing.assert_array_equal(again, keep[perm])
    other_seed = _mask(THREE, 0.5, mechanism, seed=1)
    assert (other_seed != keep).any()


def test_mixed_modality_split_stays_exact_under_mechanisms():
    for mechanism in ("mar", "mnar"):
        keep = _mask(THREE, 0.5, mechanism, 2.0)
        for s in ("0", "1", "2"):
            rows = THREE == s
            assert abs(int((~keep[rows, 0]).sum()) - int((~keep[rows, 1]).sum())) <= 1


# -- spec, preparation, file names ----------------------------------------------------------------
def test_spec_validation_names_the_option():
    with pytest.raises(ConfigError, match="--mechanism"):
        MissingSpec(mechanism="mnra")
    with pytest.raises(ConfigError, match="--test-mechanism"):
        MissingSpec(test_mechanism="bogus")
    with pytest.raises(ConfigError, match="--strength"):
        MissingSpec(mechanism="mnar", strength=-1.0)
    with pytest.raises(ConfigError, match="--strength"):
        MissingSpec(strength=float("nan"))
    with pytest.raises(ConfigError, match="--mar-column"):
        MissingSpec(mechanism="mar")
    with pytest.raises(ConfigError, match="--mar-column"):
        MissingSpec(test_mechanism="mar")


def test_spec_labels_and_mechanism_for():
    assert MissingSpec("mixed", 0.3).label == "mixed/both/0.3"
    assert MissingSpec("mixed", 0.3, mechanism="mnar", strength=1.5).label == "mixed/both/0.3 mnar(s=1.5)"
    shift = MissingSpec("mixed", 0.3, mechanism="mnar", strength=1.5, test_mechanism="mcar")
    assert shift.label == "mixed/both/0.3 train mnar(s=1.5) -> test mcar"
    assert [shift.mechanism_for(s) for s in ("train", "val", "test")] == ["mnar", "mnar", "mcar"]
    mar = MissingSpec("image", 0.5, mechanism="mar", mar_column="num0")
    assert mar.label == "image/both/0.5 mar(num0, s=1)"
    assert MissingSpec("mixed", 0.3).identity() == {"pattern": "mixed", "rate": 0.3, "protocol": "both",
                                                    "image_share": 0.5}  # mcar keys as before


def test_mask_file_names_include_mechanism_and_strength(tmp_path):
    keep = _mask(BINARY[:10], 0.3, "mcar", ids=IDS[:10])
    mcar, _ = persist_mask(tmp_path, "ds", "train", MissingSpec("mixed", 0.3), 0, IDS[:10], keep)
    assert mcar.name == "ds_train_mixed_0.3_seed0.csv"
    shift = MissingSpec("mixed", 0.3, mechanism="mnar", strength=1.5, test_mechanism="mcar")
    train, _ = persist_mask(tmp_path, "ds", "train", shift, 0, IDS[:10], keep)
    test, _ = persist_mask(tmp_path, "ds", "test", shift, 0, IDS[:10], keep)
    assert train.name == "ds_train_mixed_0.3_mnar1.5_seed0.csv" and test.name == "ds_test_mixed_0.3_seed0.csv"
    mar, _ = persist_mask(tmp_path, "ds", "val", MissingSpec("mixed", 0.3, mechanism="mar", mar_column="a b"),
                          0, IDS[:10], keep)
    assert mar.name == "ds_val_mixed_0.3_mar1-a-b_seed0.csv"
    assert train.with_suffix(".csv.sha256").read_text().endswith(f"  {train.name}\n")


def test_mechanism_shift_in_one_prepared_data(tiny_dataset, tiny_table, tmp_path):
    shift = MissingSpec("image", 0.5, mechanism="mnar", strength=3.0, test_mechanism="mcar")
    data = prepare_data(tiny_dataset, tiny_table, shift, seed=0, mask_dir=tmp_path)
    plain = prepare_data(tiny_dataset, tiny_table, MissingSpec("image", 0.5), seed=0)
    mnar = prepare_data(tiny_dataset, tiny_table, MissingSpec("image", 0.5, mechanism="mnar", strength=3.0), seed=0)
    assert data.mask_hashes["test"] == plain.mask_hashes["test"]   # test: mcar
    assert data.mask_hashes["train"] == mnar.mask_hashes["train"]  # train / val: mnar
    assert data.mask_hashes["val"] == mnar.mask_hashes["val"]
    assert data.mask_hashes["train"] != plain.mask_hashes["train"]
    train = data.splits["train"]
    lost = ~train.present[:, 0] & train.real_present[:, 0]
    assert lost[train.labels == 1].mean() > lost[train.labels == 0].mean()  # positives lose the image more often
    assert {p.name for p in data.mask_files.values()} == {
        "synthetic_train_image_0.5_mnar3_seed0.csv", "synthetic_val_image_0.5_mnar3_seed0.csv",
        "synthetic_test_image_0.5_seed0.csv"}


def test_mar_column_from_the_table(tiny_dataset, tiny_table):
    spec = MissingSpec("tabular", 0.5, mechanism="mar", strength=6.0, mar_column="num0")
    data = prepare_data(tiny_dataset, tiny_table, spec, seed=0)
    test = data.splits["test"]
    values = tiny_table.numeric[test.rows, 0]
    lost = ~test.present[:, 1]
    assert values[lost].mean() > values[~lost].mean()
    with pytest.raises(ConfigError, match=r"--mar-column.*'nope'.*num0"):
        prepare_data(tiny_dataset, tiny_table, MissingSpec("tabular", 0.5, mechanism="mar", mar_column="nope"), 0)
    with pytest.raises(ConfigError, match=r"--mar-column.*'cat0'"):
        prepare_data(tiny_dataset, tiny_table, MissingSpec("tabular", 0.5, mechanism="mar", mar_column="cat0"), 0)


# -- config, CLI, run identity --------------------------------------------------------------------
def _keys(missing: dict) -> dict[str, str]:
    cfg = load_config(None, {"methods": ["late_fusion"], "missing": {"rates": [0.3], **missing}})
    return {s.method: s.key() for s in build_grid(cfg, with_oracle=False)}


def test_run_key_covers_mechanism_strength_and_test_mechanism():
    base = _keys({})
    assert _keys({"strength": 3.0}) == base  # strength changes nothing under mcar
    variants = [{"mechanism": "mnar"}, {"mechanism": "mnar", "strength": 2.0},
                {"mechanism": "mnar", "test_mechanism": "mcar"}, {"test_mechanism": "mnar"},
                {"mechanism": "mar", "mar_column": "num0"}, {"mechanism": "mar", "mar_column": "num1"}]
    keys = [_keys(v)["late_fusion"] for v in variants]
    assert len(set(keys + [base["late_fusion"]])) == len(variants) + 1
    assert _keys({"train_mechanism": "mnar"}) == _keys({"mechanism": "mnar"})


def test_params_name_the_mechanisms():
    cfg = load_config(None, {"methods": ["late_fusion"], "missing": {"rates": [0.3], "mechanism": "mnar",
                                                                     "strength": 1.5, "test_mechanism": "mcar"}})
    spec = build_grid(cfg, with_oracle=False)[0]
    params = spec.params()
    assert (params["mechanism"], params["test_mechanism"], params["strength"]) == ("mnar", "mcar", 1.5)
    assert "train mnar(s=1.5) -> test mcar" in spec.label()


@pytest.mark.parametrize("missing,option", [({"mechanism": "mnra"}, "--mechanism"),
                                            ({"test_mechanism": "x"}, "--test-mechanism"),
                                            ({"strength": -2.0}, "--strength"),
                                            ({"mechanism": "mar"}, "--mar-column"),
                                            ({"mechanism": "mnar", "train_mechanism": "mar", "mar_column": "a"},
                                             "train_mechanism")])
def test_config_errors_name_the_option(missing, option):
    with pytest.raises(ConfigError, match=option):
        load_config(None, {"missing": missing})


def test_cli_flags_reach_the_config():
    args = build_parser().parse_args(["--mechanism", "mar", "--strength", "2", "--mar-column", "num0",
                                      "--test-mechanism", "mcar"])
    missing = load_config(None, overrides_from_args(args)).missing.specs()[0]
    assert (missing.mechanism, missing.strength, missing.mar_column, missing.test_mechanism) == \
        ("mar", 2.0, "num0", "mcar")
    with pytest.raises(ConfigError, match="--strength"):
        overrides_from_args(build_parser().parse_args(["--strength", "abc"]))


@pytest.mark.parametrize("argv,option", [(["--mechanism", "nope"], "--mechanism"),
                                         (["--strength", "-1"], "--strength"),
                                         (["--mechanism", "mar"], "--mar-column"),
                                         (["--test-mechanism", "zz"], "--test-mechanism")])
def test_cli_bad_values_exit_2_naming_the_option(capsys, tmp_path, argv, option):
    results = tmp_path / "results"
    code = main(argv + ["--results-dir", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and option in err and err.count("\n") == 1
    assert not results.exists()


def test_leaderboard_sections_name_non_mcar_mechanisms():
    runs = pd.DataFrame({"status": ["FINISHED"] * 3, "params.pattern": ["mixed"] * 3,
                         "params.protocol": ["both", "both", "test_only"],
                         "params.mechanism": [None, "mnar", "mar"], "params.test_mechanism": [None, "mcar", "mar"],
                         "params.strength": [None, "1.5", "2.0"], "params.mar_column": [None, None, "age"]})
    protocols = normalise(runs)["protocol"].tolist()
    assert protocols == ["both", "both, train mnar(s=1.5) -> test mcar", "test_only, mar(age, s=2)"]
    assert Section("mixed", protocols[0], [], [], [], {}).slug == "mixed_both"  # mcar file names as before
    assert Section("mixed", protocols[1], [], [], [], {}).slug == "mixed_both-train-mnar-s=1.5-test-mcar"
