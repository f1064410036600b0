"""Real-dataset loaders on fabricated fixtures with the official headers (datasets spec section 8).

Every folder is written into ``tmp_path`` by ``benchmark.checks.fixtures``; nothing is downloaded.  The
tests pin the official layouts, real missingness (kept, counted, never dropped), case-insensitive
paths, the full-width comma, exact error messages, mask properties through ``prepare_data`` and
a one-epoch ``late_fusion`` training on every fixture.
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.checks.datasets import DATASET_CHECKS, DATASET_FIXTURES, check_trains_one_epoch
from benchmark.checks.fixtures import (ODIR_LABELS, build_csv_manifest, build_derm7pt, build_men, build_odir_a,
                                       build_odir_b, build_odir_c, write_image)
from benchmark.training import seed_everything
from core.encoders import EncoderConfig, ImageEncoderConfig, TabularEncoderConfig
from core.errors import ConfigError, DatasetLayoutError
from core.masks import MissingSpec
from core.metrics import compute_metrics
from datasets import create_dataset, list_datasets
from datasets.imaging import FileImageSource, ImageCache, Preprocessing
from datasets.imaging.decode import IMAGENET_MEAN, IMAGENET_STD, preprocess_array
from datasets.odir import split_keywords
from datasets.preparation import prepare_data
from methods import create_method

torch.set_num_threads(1)
SMALL = {"image_size": 32, "cache": "memory"}
NPY_VIEWS = {"t1": "t1_bbox.npy", "t2": "t2_bbox.npy", "adc": "adc_bbox.npy"}
ENC = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"), TabularEncoderConfig(hidden=(16,), dim=16))


def _features(info, row_vector) -> dict[str, float]:
    return dict(zip(info.tabular_features, row_vector.tolist()))


# ================================================================================================
# Derm7pt
# ================================================================================================
@pytest.fixture
def derm_root(tmp_path):
    build_derm7pt(tmp_path)
    return tmp_path  # the folder that contains release_v0/


def test_derm7pt_nev_mel_rows_labels_split_and_real_missingness(derm_root, caplog):
    caplog.set_level(logging.WARNING)
    ds = create_dataset("derm7pt", str(derm_root), **SMALL)
    table = ds.load_table()
    # 2 NEV + reed/spitz (NEV) + 3 MEL kept; BCC and SK dropped.
    assert table.ids.tolist() == ["1", "2", "4", "5", "7", "8"]
    assert table.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert table.split.tolist() == ["train", "train", "train", "val", "test", "test"]
    assert ds.class_names == ("NEV", "MEL") and ds.task == "binary" and ds.views == ("clinic", "derm")
    # meta.csv says Aaa/Aaa001.JPG, the disk has Aaa/Aaa001.jpg: found anyway.
    assert table.view_available[:, 0].all()
    # case 8's derm file was never written: the view is missing, the case is kept.
    assert table.view_available[:, 1].tolist() == [True, True, True, True, True, False]
    assert table.extras["real_missing"]["derm"]["file_not_found"] == 1
    assert "derm: file_not_found 1" in caplog.text and "Ddd004.JPG not found" in caplog.text
    assert table.view_available.any(axis=1).all()  # the clinic view still carries the image modality


def test_derm7pt_root_may_be_release_v0_itself(derm_root):
    a = create_dataset("derm7pt", str(derm_root), **SMALL)
    b = create_dataset("derm7pt", str(derm_root / "release_v0"), **SMALL)
    assert a.release == b.release == derm_root / "release_v0"


def test_derm7pt_tabular_one_hot_positions(derm_root):
    ds = create_dataset("derm7pt", str(derm_root), **SMALL)
    table = ds.load_table()
    data = prepare_data(ds, table, MissingSpec("mixed", 0.0), seed=0)
    info = data.info
    assert info.tabular_dim == 20 and info.image_channels == 3 and info.image_shape == (32, 32)
    assert info.tabular_features[:3] == ("level_of_diagnostic_difficulty=low", "level_of_diagnostic_difficulty=medium",
                                         "level_of_diagnostic_difficulty=high")
    assert info.tabular_column_slices == ((0, 3), (3, 6), (6, 15), (15, 17), (17, 20))
    test = data.splits["test"]
    row = test.tabular[test.ids.tolist().index("7")]  # reed or spitz nevus: medium, flat, acral, female, follow up
    hot = [name for name, v in _features(info, row).items() if v == 1.0]
    assert hot == ["level_of_diagnostic_difficulty=medium", "elevation=flat", "location=acral", "sex=female",
                   "management=clinical follow up"]
    assert np.flatnonzero(row).tolist() == [1, 5, 13, 15, 18]
    # The 7-point criteria are never inputs.
    assert not any(n.startswith(("pigment", "streaks", "seven_point")) for n in info.tabular_features)


def test_derm7pt_no_management_and_diag5(derm_root):
    ds = create_dataset("derm7pt", str(derm_root), tabular_columns="no_management", **SMALL)
    data = prepare_data(ds, ds.load_table(), MissingSpec("mixed", 0.0), seed=0)
    assert data.info.tabular_dim == 17 and not any("management" in f for f in data.info.tabular_features)
    ds5 = create_dataset("derm7pt", str(derm_root), task="diag5", **SMALL)
    table = ds5.load_table()
    assert ds5.task == "multiclass" and ds5.class_names == ("BCC", "NEV", "MEL", "MISC", "SK")
    assert table.labels.tolist() == [1, 2, 0, 1, 2, 4, 1, 2] and len(table.ids) == 8


def test_derm7pt_unknown_category_warns_and_encodes_all_zero(derm_root, caplog):
    meta = derm_root / "release_v0" / "meta" / "meta.csv"
    frame = pd.read_csv(meta, dtype=str, keep_default_na=False)
    frame.loc[0, "location"] = "moon"
    frame.to_csv(meta, index=False)
    caplog.set_level(logging.WARNING)
    ds = create_dataset("derm7pt", str(derm_root), **SMALL)
    table = ds.load_table()
    assert ("dataset 'derm7pt': column 'location' has 1 value(s) outside the declared categories (upper limbs, "
            "head neck, back, lower limbs, chest, abdomen, buttocks, acral, genital areas): 'moon'; they encode as "
            "the all-zero one-hot") in caplog.text
    data = prepare_data(ds, table, MissingSpec("mixed", 0.0), seed=0)
    train = data.splits["train"]
    row = train.tabular[train.ids.tolist().index("1")]
    assert row[6:15].sum() == 0 and row[0] == 1.0  # location all-zero, the other fields intact
    assert data.counts["train_unseen_categories"] == 1


def test_derm7pt_missing_split_file_names_it(derm_root):
    (derm_root / "release_v0" / "meta" / "valid_indexes.csv").unlink()
    path = derm_root / "release_v0" / "meta" / "valid_indexes.csv"
    with pytest.raises(DatasetLayoutError) as exc:  # at create_dataset already: before any grid cell
        create_dataset("derm7pt", str(derm_root), **SMALL)
    assert str(exc.value) == (
        f"dataset 'derm7pt': missing {path}; expected meta/valid_indexes.csv with column 'indexes' (official "
        "release_v0 layout: images/<subdir>/<file>, meta/meta.csv, meta/{train,valid,test}_indexes.csv (column "
        "'indexes'))")


def test_derm7pt_split_file_without_indexes_column(derm_root):
    path = derm_root / "release_v0" / "meta" / "test_indexes.csv"
    path.write_text("index\n6\n7\n")
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"{path} has no column 'indexes' (columns: index); expected meta/test_indexes.csv with column 'indexes'")):
        create_dataset("derm7pt", str(derm_root), **SMALL).load_table()


def test_derm7pt_missing_root_and_missing_column(tmp_path, derm_root):
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"dataset 'derm7pt': data root {tmp_path / 'nope'} does not exist. Expected: release_v0/")) as exc:
        create_dataset("derm7pt", str(tmp_path / "nope"))
    assert "https://derm.cs.sfu.ca" in str(exc.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"dataset 'derm7pt': expected meta/meta.csv under {empty} or {empty / 'release_v0'}")):
        create_dataset("derm7pt", str(empty))
    meta = derm_root / "release_v0" / "meta" / "meta.csv"
    pd.read_csv(meta, dtype=str).drop(columns=["management"]).to_csv(meta, index=False)
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{meta} has no column 'management'")):
        create_dataset("derm7pt", str(derm_root), **SMALL).load_table()
    # Without the management field the same file is fine: columns are selected by name.
    assert create_dataset("derm7pt", str(derm_root), tabular_columns="no_management", **SMALL).load_table()


def test_derm7pt_corrupt_and_absent_images_are_real_missingness(derm_root, caplog):
    images = derm_root / "release_v0" / "images"
    (images / "Aaa" / "Aaa001.jpg").write_bytes(b"not a jpeg at all")   # case 1 clinic: unreadable
    (images / "Aaa" / "Aaa006.jpg").unlink()                            # case 4 derm
    (images / "Aaa" / "Aaa005.jpg").unlink()                            # case 4 clinic -> no image at all
    caplog.set_level(logging.WARNING)
    ds = create_dataset("derm7pt", str(derm_root), **SMALL)
    table = ds.load_table()
    assert table.ids.tolist() == ["1", "2", "4", "5", "7", "8"]  # nothing dropped
    avail = dict(zip(table.ids.tolist(), table.view_available.tolist()))
    assert avail["1"] == [False, True] and avail["4"] == [False, False] and avail["8"] == [True, False]
    counts = table.extras["real_missing"]
    assert counts["clinic"]["unreadable"] == 1 and counts["clinic"]["file_not_found"] == 1
    assert counts["derm"]["file_not_found"] == 2
    assert "clinic: file_not_found 1, unreadable 1" in caplog.text
    data = prepare_data(ds, table, MissingSpec("mixed", 0.0), seed=0)
    assert data.counts["train_real_image_missing"] == 1  # case 4: avail.image = False
    train = data.splits["train"]
    assert train.present[train.ids.tolist().index("4")].tolist() == [False, True]


def test_derm7pt_empty_diagnosis_is_an_error(derm_root):
    meta = derm_root / "release_v0" / "meta" / "meta.csv"
    frame = pd.read_csv(meta, dtype=str, keep_default_na=False)
    frame.loc[2, "diagnosis"] = ""
    frame.to_csv(meta, index=False)
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{meta} row 2 (line 4): column 'diagnosis' is empty")):
        create_dataset("derm7pt", str(derm_root), **SMALL).load_table()


# ================================================================================================
# ODIR
# ================================================================================================
ODIR_BUILDERS = {"A": build_odir_a, "B": build_odir_b, "B-csv": lambda p: build_odir_b(p, with_xlsx=False),
                 "C": build_odir_c}


@pytest.mark.parametrize("variant", list(ODIR_BUILDERS))
def test_odir_layouts_labels_tabular_and_unusable_eye(tmp_path, variant):
    root = ODIR_BUILDERS[variant](tmp_path)
    ds = create_dataset("odir", str(root), splits_dir=str(tmp_path / "splits"), **SMALL)
    assert ds.layout == variant[0]
    table = ds.load_table()
    rows = np.flatnonzero(table.split == "train") if variant == "C" else np.arange(len(table.ids))
    assert table.labels.dtype == np.float32 and table.labels[rows].shape == (6, 8)
    np.testing.assert_array_equal(table.labels[rows], ODIR_LABELS)
    assert table.labels[rows][4].tolist() == [0, 1, 0, 0, 0, 1, 0, 0]  # the D+H row
    # Patient 3's left eye says "no fundus image": that view is missing, the right eye carries the image.
    left, right = table.view_available[rows].T
    assert left.tolist() == [True, True, True, False, True, True] and right.all()
    data = prepare_data(ds, table, MissingSpec("mixed", 0.0), seed=0)
    assert data.info.task == "multilabel" and data.info.num_classes == 8
    assert data.info.tabular_features == ("Patient Age", "Patient Sex=Female", "Patient Sex=Male")
    assert not any("keyword" in f.lower() for f in data.info.tabular_features)
    if variant == "C":
        assert table.split.tolist() == ["train"] * 6 + ["val"] * 3 + ["test"] * 3
        assert table.ids[:2].tolist() == ["train-0", "train-1"]
    else:
        assert table.split is None and (tmp_path / "splits" / f"odir_{variant[0]}_seed0.csv").is_file()


def test_odir_full_width_comma_and_keyword_leakage_demo(tmp_path, caplog):
    cell = "moderate non proliferative retinopathy，normal fundus"
    assert split_keywords(cell) == ["moderate non proliferative retinopathy", "normal fundus"]
    assert split_keywords("a, b，c") == ["a", "b", "c"]
    caplog.set_level(logging.WARNING)
    root = build_odir_a(tmp_path)
    ds = create_dataset("odir", str(root), use_keywords=True, splits_dir=str(tmp_path / "s"), **SMALL)
    table = ds.load_table()
    assert "LEAKAGE DEMONSTRATION" in caplog.text
    names = [c.name for c in table.columns]
    assert "keyword=normal fundus" in names and "keyword=moderate non proliferative retinopathy" in names
    j = names.index("keyword=normal fundus")
    assert table.numeric[1, j] == 2.0  # patient 1: "...，normal fundus" (left) + "normal fundus" (right)


def test_odir_official_micro_auc_matches_hand_computation():
    rng = np.random.default_rng(3)
    probs = rng.random(ODIR_LABELS.shape)
    y, s = ODIR_LABELS.ravel(), probs.ravel()
    pos, neg = s[y == 1], s[y == 0]
    hand = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    metrics = compute_metrics("multilabel", ODIR_LABELS, probs)
    assert metrics["auc_micro"] == pytest.approx(hand, abs=1e-12)
    per_class = [k for k in range(8) if 0 < ODIR_LABELS[:, k].sum() < 6]  # N, D, G, H
    assert per_class == [0, 1, 2, 5]


def test_odir_no_layout_lists_all_three(tmp_path):
    with pytest.raises(DatasetLayoutError) as exc:
        create_dataset("odir", str(tmp_path))
    msg = str(exc.value)
    assert msg.startswith(f"dataset 'odir': no known layout under {tmp_path}; expected one of A (grand-challenge): "
                          "ODIR-5K_Training_Annotations(Updated)_V2.xlsx + ODIR-5K_Training_Dataset/; B (Kaggle")
    assert "C (OIA-ODIR): Training Set/Annotation/training annotation (English).xlsx" in msg
    assert "https://github.com/nkicsl/OIA-ODIR" in msg


def test_odir_split_file_is_reused_and_checked(tmp_path):
    root = build_odir_a(tmp_path)
    splits = tmp_path / "splits"
    ds = create_dataset("odir", str(root), splits_dir=str(splits), min_stratum_size=10, **SMALL)
    table = ds.load_table()
    first = ds.split_indices(table, seed=1)
    path = splits / "odir_A_seed1.csv"
    saved = pd.read_csv(path, dtype=str)
    assert saved.columns.tolist() == ["id", "split"] and sorted(saved["id"]) == sorted(table.ids.tolist())
    assert sum(len(v) for v in first.values()) == 6
    saved["split"] = ["train", "train", "train", "val", "test", "test"]
    saved.to_csv(path, index=False)
    reused = ds.split_indices(table, seed=1)
    assert [len(reused[s]) for s in ("train", "val", "test")] == [3, 1, 2]  # the edited file wins
    saved.iloc[:5].to_csv(path, index=False)
    with pytest.raises(DatasetLayoutError, match=re.escape(f"split file {path} lists other patients")):
        ds.split_indices(table, seed=1)


def test_odir_bad_inputs(tmp_path):
    root = build_odir_a(tmp_path)
    xlsx = root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"
    frame = pd.read_excel(xlsx)
    frame.columns = [f" {c} " for c in frame.columns]  # headers with spaces are stripped
    frame.loc[2, " H "] = None
    frame.to_excel(xlsx, index=False)
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"dataset 'odir': {xlsx} row 2 (ID 2): label column 'H' is empty")):
        create_dataset("odir", str(root), **SMALL).load_table()
    frame.drop(columns=[" Patient Sex "]).to_excel(xlsx, index=False)
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{xlsx} has no column 'Patient Sex'")):
        create_dataset("odir", str(root), **SMALL).load_table()
    with pytest.raises(ConfigError, match="use_preprocessed: only layout B"):
        create_dataset("odir", str(root), use_preprocessed=True)


def test_odir_image_modality_missing_only_when_both_eyes_are(tmp_path):
    root = build_odir_a(tmp_path)
    for eye in ("left", "right"):
        (root / "ODIR-5K_Training_Dataset" / f"5_{eye}.jpg").unlink()
    ds = create_dataset("odir", str(root), splits_dir=str(tmp_path / "s"), **SMALL)
    table = ds.load_table()
    modality = table.view_available.any(axis=1)
    assert modality.tolist() == [True, True, True, True, True, False]  # patient 3 keeps its right eye
    assert table.extras["real_missing"]["left"] == {"no_path": 0, "file_not_found": 1, "unreadable": 0, "unusable": 1}


def test_odir_kaggle_preprocessed_images(tmp_path):
    root = build_odir_b(tmp_path)
    plain = create_dataset("odir", str(root), splits_dir=str(tmp_path / "s"), **SMALL).load_table()
    pre = create_dataset("odir", str(root), splits_dir=str(tmp_path / "s"), use_preprocessed=True,
                         **SMALL).load_table()
    a, b = plain.images.load(np.array([0]), "left", False), pre.images.load(np.array([0]), "left", False)
    assert a.shape == b.shape and not np.allclose(a, b)  # different files were read


# ================================================================================================
# folder_manifest (MEN-like) and csv_manifest
# ================================================================================================
def test_folder_manifest_men_scan(tmp_path, caplog):
    root = build_men(tmp_path)
    caplog.set_level(logging.INFO)
    ds = create_dataset("men", str(root), views=NPY_VIEWS, resize=[4, 16, 16], **SMALL)
    table = ds.load_table()
    assert ds.class_names == ("Grade_1", "Grade_2_invasion", "Grade_2_noninvasion") and ds.task == "multiclass"
    assert len(table.ids) == 12 and table.labels.tolist() == [0, 0, 1, 1, 2, 2] * 2
    assert table.split.tolist() == ["train"] * 6 + ["test"] * 6
    assert table.tabular_available.tolist() == [True] * 5 + [False] + [True] * 6  # P005 has no CSV row
    assert "1 sample(s) have no row in clinical.csv (no tabular record): P005" in caplog.text
    assert "1 rows of clinical.csv match no image folder and are ignored" in caplog.text
    assert [c.name for c in table.columns] == ["age", "adc", "tumor_area", "edema_area", "location", "sex"]
    assert table.numeric[0].tolist() == [40.0, 0.8, 10.0, 5.0] and table.categorical[1].tolist() == ["2", "1"]
    vol = table.images.load(np.array([0]), "t1", False)
    assert vol.shape == (1, 4, 16, 16)  # slices as channels
    # clip [0, 1200] then z-score over voxels > 0: the background stays exactly 0.
    raw = np.load(root / "1fold" / "train" / "Grade_1" / "P000" / "t1_bbox.npy")
    prep = Preprocessing(clip=(0.0, 1200.0), zscore="nonzero", resize=None)
    z = preprocess_array(raw, prep, Path("x"))
    inside = np.clip(raw, 0, 1200)[raw > 0]
    assert np.all(z[raw == 0] == 0) and z[raw > 0].mean() == pytest.approx(0, abs=1e-5)
    assert z[raw > 0].std() == pytest.approx(1, abs=1e-4) and inside.max() == 1200
    data = prepare_data(ds, table, MissingSpec("mixed", 0.0), seed=0)
    assert data.info.image_channels == 4 and data.info.image_shape == (16, 16)
    # Validation is carved from train (never test): seeded and stratified.
    ds_val = create_dataset("men", str(root), views=NPY_VIEWS, resize=[4, 16, 16], val_fraction=0.5, **SMALL)
    parts = ds_val.split_indices(table, seed=0)
    assert len(parts["val"]) == 3 and len(parts["train"]) == 3 and parts["test"].tolist() == list(range(6, 12))
    assert sorted(table.labels[parts["val"]].tolist()) == [0, 1, 2]


def test_folder_manifest_generic_name_and_errors(tmp_path):
    root = build_men(tmp_path)
    opts = dict(views=NPY_VIEWS, fold=1, clinical_csv="clinical.csv", id_column="id",
                numeric=["age", "adc"], categorical=["location", "sex"], resize=[4, 16, 16], **SMALL)
    ds = create_dataset("folder_manifest", str(root), **opts)
    table = ds.load_table()
    assert ds.class_names == ("Grade_1", "Grade_2_invasion", "Grade_2_noninvasion") and len(table.ids) == 12
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"dataset 'folder_manifest': fold folder {root / '2fold'} does not exist")):
        create_dataset("folder_manifest", str(root), **{**opts, "fold": 2})
    bad = {**opts, "numeric": ["age", "weight"]}
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"{root / 'clinical.csv'} has no column 'weight' (numeric 'weight'; columns: id, c1, c2, c3,")):
        create_dataset("folder_manifest", str(root), **bad).load_table()
    with pytest.raises(ConfigError, match=r"clinical_csv: scan mode needs the clinical CSV"):
        create_dataset("folder_manifest", str(root), **{**opts, "clinical_csv": None})
    (root / "1fold" / "train" / "Grade_1" / "P000" / "t1_bbox.npy").unlink()
    table = create_dataset("folder_manifest", str(root), **opts).load_table()
    assert table.view_available[0].tolist() == [False, True, True]
    assert table.extras["real_missing"]["t1"]["file_not_found"] == 1


def test_folder_manifest_nifti_needs_the_extra(tmp_path, monkeypatch):
    root = build_men(tmp_path)
    path = root / "1fold" / "train" / "Grade_1" / "P000" / "t1_bbox.nii.gz"
    path.write_bytes(b"\x1f\x8b fake")
    monkeypatch.setitem(sys.modules, "nibabel", None)  # as if nibabel were not installed
    views = {**NPY_VIEWS, "t1": "t1_bbox.nii.gz"}
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"{path}: reading NIfTI needs the optional extra medfusion-bench[nifti] (pip install nibabel)")):
        # one t1 file of 12 exists: min_image_share 0 lets the read reach the decoder (else a layout error)
        create_dataset("men", str(root), views=views, resize=[4, 16, 16], min_image_share=0, **SMALL).load_table()


def test_folder_manifest_nifti_volumes(tmp_path):
    pytest.importorskip("nibabel")
    root = build_men(tmp_path, suffix=".nii.gz")
    ds = create_dataset("men", str(root), resize=[4, 16, 16], **SMALL)
    table = ds.load_table()
    assert table.view_available.all()
    assert table.images.load(np.array([0, 1]), "adc", False).shape == (2, 4, 16, 16)


def test_csv_manifest_binary(tmp_path, caplog):
    root = build_csv_manifest(tmp_path)
    caplog.set_level(logging.INFO)
    ds = create_dataset("csv_manifest", str(root), **SMALL)
    table = ds.load_table()
    assert ds.task == "binary" and ds.class_names == ("0", "1") and ds.views == ("main",)
    assert table.labels.tolist() == [0, 1, 1, 0, 0, 0, 1, 0, 0, 1]
    assert table.view_available[:, 0].tolist() == [True] * 3 + [False] + [True] * 6  # empty path
    assert table.tabular_available.tolist() == [True] * 7 + [False] + [True] * 2      # all cells empty
    assert np.isnan(table.numeric[5, 1]) and table.categorical[7].tolist() == [None, None]
    assert table.extras["real_missing"]["main"]["no_path"] == 1
    assert "cases.csv columns not declared in the manifest spec are ignored: comment" in caplog.text
    parts = ds.split_indices(table, seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    data = prepare_data(ds, table, MissingSpec("mixed", 0.0), seed=0)
    assert data.info.tabular_features == ("age", "psa", "psa__isnan", "sex=F", "sex=M", "site=a", "site=b", "site=c")


def test_csv_manifest_multilabel(tmp_path):
    root = build_csv_manifest(tmp_path, multilabel=True)
    ds = create_dataset("csv_manifest", str(root), **SMALL)
    table = ds.load_table()
    assert ds.task == "multilabel" and ds.class_names == ("y_a", "y_b", "y_c")
    assert table.labels.dtype == np.float32 and table.labels.shape == (10, 3)
    assert table.labels[:, 0].tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


def _edit_csv(root: Path, **changes) -> Path:
    path = root / "cases.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for (row, col), value in changes.get("cells", {}).items():
        frame.loc[row, col] = value
    if "drop" in changes:
        frame = frame.drop(columns=changes["drop"])
    frame.to_csv(path, index=False)
    return path


def test_csv_manifest_bad_inputs(tmp_path):
    root = build_csv_manifest(tmp_path)
    path = _edit_csv(root, cells={(4, "split"): "holdout"})
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"dataset 'csv_manifest': {path} row 4: split column 'split' is 'holdout', expected one of train, val, "
            "test")):
        create_dataset("csv_manifest", str(root), **SMALL).load_table()
    _edit_csv(root, cells={(4, "split"): "train", (2, "malignant"): ""})
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{path} row 2: label column 'malignant' is empty")):
        create_dataset("csv_manifest", str(root), **SMALL).load_table()
    _edit_csv(root, cells={(2, "malignant"): "1", (1, "age"): "old"})
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{path} row 1 column 'age': 'old' is not a number")):
        create_dataset("csv_manifest", str(root), **SMALL).load_table()
    _edit_csv(root, cells={(1, "age"): "33"}, drop=["site"])
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{path} has no column 'site' (columns: patient_id,")):
        create_dataset("csv_manifest", str(root), **SMALL).load_table()
    spec = root / "manifest.yaml"
    spec.write_text(spec.read_text() + "lable_columns: [x]\n")
    with pytest.raises(ConfigError, match=re.escape(f"{spec}: unknown key 'lable_columns'; known: categorical,")):
        create_dataset("csv_manifest", str(root), **SMALL)
    spec.unlink()
    with pytest.raises(DatasetLayoutError, match=re.escape(f"dataset 'csv_manifest': missing {spec}; expected a "
                                                           "manifest YAML")):
        create_dataset("csv_manifest", str(root), **SMALL)


def test_csv_manifest_folds_and_inline_spec(tmp_path):
    root = build_csv_manifest(tmp_path)
    frame = pd.read_csv(root / "cases.csv", dtype=str, keep_default_na=False)
    frame["fold"] = [i % 2 for i in range(10)]
    frame.to_csv(root / "cases.csv", index=False)
    spec = {"manifest": "cases.csv", "image_root": "images", "id_column": "patient_id", "task": "binary",
            "label_columns": "malignant", "views": {"main": "image_path"}, "numeric": ["age"],
            "categorical": ["sex"], "fold_column": "fold", "class_names": [0, 1]}
    with pytest.raises(ConfigError, match=r"fold_column 'fold'; set the dataset option fold"):
        create_dataset("csv_manifest", str(root), spec=spec, **SMALL)
    ds = create_dataset("csv_manifest", str(root), spec=spec, fold=1, val_fraction=0.25, **SMALL)
    table = ds.load_table()
    assert table.split.tolist() == ["train", "test"] * 5
    parts = ds.split_indices(table, seed=0)
    assert parts["test"].tolist() == [1, 3, 5, 7, 9] and len(parts["val"]) >= 1
    assert not set(parts["val"]) & set(parts["test"]) and not set(parts["val"]) & set(parts["train"])


def test_precomputed_embeddings_skip_the_image_encoder(tmp_path):
    """1-D ``.npy`` views: DatasetInfo.image_channels = E, image_shape = ()."""
    root = build_csv_manifest(tmp_path)
    frame = pd.read_csv(root / "cases.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(0)
    for i in range(10):
        np.save(root / "images" / f"emb_{i}.npy", rng.standard_normal(12).astype(np.float32))
    frame["image_path"] = [f"emb_{i}.npy" if i != 3 else "" for i in range(10)]
    frame.to_csv(root / "cases.csv", index=False)
    ds = create_dataset("csv_manifest", str(root), **SMALL)
    table = ds.load_table()
    data = prepare_data(ds, table, MissingSpec("mixed", 0.3), seed=0)
    assert data.info.image_channels == 12 and data.info.image_shape == ()
    batch = data.splits["train"].batch(np.arange(len(data.splits["train"])), train=True)
    assert batch.images["main"].shape == (len(data.splits["train"]), 12)
    method = create_method("late_fusion", data.info, ENC)
    assert not any(isinstance(m, torch.nn.Conv2d) for m in method.modules())  # no timm backbone
    probs = method.predict_proba(batch)
    assert probs.shape == (len(batch), 2)
    check_trains_one_epoch("embeddings", ds, tmp_path)


# ================================================================================================
# image pipeline: cache, normalisation, augmentation
# ================================================================================================
def test_cache_decodes_each_file_once_and_disk_cache_is_shared(tmp_path):
    paths = [write_image(tmp_path / f"{i}.jpg", seed=i, size=40) for i in range(4)]
    prep = Preprocessing(image_size=16)
    cache = ImageCache()
    for _ in range(3):
        for p in paths:
            cache.get(p, prep, "disk", tmp_path / "cache")
    assert cache.misses == 4 and cache.hits == 8
    fresh = ImageCache()  # another process: reads the .npy files, decodes nothing
    arr = fresh.get(paths[0], prep, "disk", tmp_path / "cache")
    assert fresh.disk_hits == 1 and fresh.misses == 0 and arr.shape == (3, 16, 16) and arr.dtype == np.uint8
    other = fresh.get(paths[0], Preprocessing(image_size=8), "disk", tmp_path / "cache")  # size is in the key
    assert other.shape == (3, 8, 8) and fresh.misses == 1


def test_imagenet_normalisation_and_crop(tmp_path):
    from PIL import Image

    white = tmp_path / "w.png"
    Image.new("RGB", (20, 20), (255, 255, 255)).save(white)
    src = FileImageSource({"v": [white]}, np.array(["a"]), Preprocessing(image_size=8), augment=False,
                          cache="none")
    x = src.load(np.array([0]), "v", train=False)[0]
    np.testing.assert_allclose(x[:, 0, 0], (1 - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6)
    framed = tmp_path / "f.png"
    img = Image.new("RGB", (40, 40), (0, 0, 0))
    img.paste((255, 255, 255), (5, 5, 35, 35))
    img.save(framed)
    src = FileImageSource({"v": [framed]}, np.array(["a"]), Preprocessing(image_size=10, crop_border=5,
                                                                            normalize="unit"), False, "none")
    assert src.load(np.array([0]), "v", False).min() == pytest.approx(1.0)  # the black border is gone


def test_train_augmentation_same_transform_for_every_view(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i, size=24) for i in range(3)]
    ids = np.array(["a", "b", "c"])
    src = FileImageSource({"clinic": paths, "derm": list(paths)}, ids, Preprocessing(image_size=24), augment=True,
                          cache="memory")
    rows = np.array([0, 1, 2, 0])
    seed_everything(5)
    c1, d1 = src.load(rows, "clinic", True), src.load(rows, "derm", True)
    np.testing.assert_array_equal(c1, d1)  # both views of a sample: one transform
    c2 = src.load(rows, "clinic", True)
    src.load(rows, "derm", True)
    assert not np.allclose(c1, c2)  # a new draw next time
    assert not np.allclose(c1[0], c1[3])  # a duplicate in the batch gets its own draw
    seed_everything(5)  # a new run with the same seed reproduces the stream
    np.testing.assert_array_equal(src.load(rows, "clinic", True), c1)
    plain = src.load(rows, "clinic", False)
    np.testing.assert_array_equal(plain, FileImageSource({"clinic": paths}, ids, Preprocessing(image_size=24),
                                                         False).load(rows, "clinic", False))


# ================================================================================================
# masks through prepare_data, and a one-epoch training on every fixture
# ================================================================================================
@pytest.mark.parametrize("name", list_datasets())
def test_every_registered_dataset_has_a_contract_fixture(name):
    assert name in DATASET_FIXTURES, (f"dataset '{name}' has no fabricated fixture in "
                                      "benchmark.checks.datasets.DATASET_FIXTURES: the contract checks cannot run")


@pytest.mark.parametrize("check", DATASET_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", sorted(DATASET_FIXTURES))
def test_dataset_contract(name, check, tmp_path):
    """Masks exact/nested/shared, the table contract and one epoch of late fusion, on every fixture."""
    for label, ds in DATASET_FIXTURES[name](tmp_path).items():
        check(label, ds, tmp_path)


def test_benchmark_run_on_every_fixture_with_late_fusion_and_a_published_method(tmp_path):
    """``python -m benchmark.run`` end to end on each layout, one shared MLflow store."""
    import mlflow
    import yaml

    from benchmark.run import main

    build_derm7pt(tmp_path / "derm")
    fixtures = {
        "derm7pt": ("derm7pt", tmp_path / "derm", {}),
        "odir-A": ("odir", build_odir_a(tmp_path), {"splits_dir": str(tmp_path / "s")}),
        "odir-C": ("odir", build_odir_c(tmp_path), {}),
        "men": ("men", build_men(tmp_path), {"views": NPY_VIEWS, "resize": [4, 32, 32]}),
        "csv": ("csv_manifest", build_csv_manifest(tmp_path), {}),
    }
    results = tmp_path / "results"
    for label, (name, root, options) in fixtures.items():
        cfg = tmp_path / f"{label}.yaml"
        cfg.write_text(yaml.safe_dump({
            "dataset": {"name": name, "options": {**SMALL, **options}},
            "encoders": {"image": {"model": "test_efficientnet"}, "tabular": {"hidden": [16], "dim": 16}},
            "training": {"batch_size": 64, "device": "cpu"}}))
        code = main(["--config", str(cfg), "--data-root", str(root), "--methods", "late_fusion,mdc",
                     "--epochs", "2", "--seeds", "0", "--missing-rate", "0.3", "--results-dir", str(results),
                     "--no-leaderboard"])
        assert code == 0, label
        assert list((results / "masks").glob(f"{name}_test_mixed_0.3_seed0.csv")), label
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    for name in {v[0] for v in fixtures.values()}:
        exp = mlflow.get_experiment_by_name(f"medfusion-{name}")
        runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.runspec_key != ''")
        assert (runs.status == "FINISHED").all() and {"late_fusion", "mdc"} <= set(runs["tags.method"]), name
        assert runs["metrics.test_acc"].notna().all(), name  # AUC can be undefined on 2 test patients
