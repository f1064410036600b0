"""HAM10000 and PAD-UFES-20 as downloaded, grouped splits, manifest path templates, fail-fast layout.

Every folder is fabricated in ``tmp_path`` by ``benchmark.checks.fixtures`` in the official
layouts (both HAM10000 image folders, PAD-UFES-20's three); nothing is downloaded.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from benchmark.checks.fixtures import (build_csv_manifest, build_ham10000, build_odir_a, build_pad_ufes20,
                                       ham10000_rows, pad_ufes20_rows)
from core.contract import SPLITS
from core.errors import ConfigError, DatasetLayoutError
from core.masks import MissingSpec, id_uniforms, stratum_labels
from datasets import create_dataset
from datasets.splitting import grouped_split, seeded_split, stratified_split

torch.set_num_threads(1)
SMALL = {"image_size": 32, "cache": "memory"}


def owners(groups: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, set[str]]:
    """group -> the splits its rows are in."""
    out: dict[str, set[str]] = {}
    for split, rows in parts.items():
        for g in groups[rows].tolist():
            out.setdefault(g, set()).add(split)
    return out


# ================================================================================================
# HAM10000
# ================================================================================================
@pytest.mark.parametrize("layout", ["dataverse", "single", "isic2018"])
def test_ham10000_loads_each_layout_as_downloaded(tmp_path, layout):
    root = build_ham10000(tmp_path, layout, dataset_column=layout != "single")
    ds = create_dataset("ham10000", str(root), **SMALL)
    expected_dirs = {"dataverse": ["HAM10000_images_part_1", "HAM10000_images_part_2"], "single": ["images"],
                     "isic2018": ["ISIC2018_Task3_Training_Input"]}[layout]
    assert [p.name for p in ds.image_roots] == expected_dirs
    table = ds.load_table()
    rows = ham10000_rows()
    assert table.ids.tolist() == [r["image_id"] for r in rows] and len(rows) == 42
    assert ds.task == "multiclass" and ds.class_names == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert ds.views == ("derm",) and table.view_available.all()  # both part folders are searched
    assert [ds.class_names[k] for k in table.labels] == [r["dx"] for r in rows]
    assert table.groups.tolist() == [r["lesion_id"] for r in rows] and len(set(table.groups)) == 21
    assert [c.name for c in table.columns] == ["age", "sex", "localization"]  # no dx_type, no dataset


def test_ham10000_real_missingness_and_leaking_columns(tmp_path, caplog):
    root = build_ham10000(tmp_path)
    rows = ham10000_rows()
    table = create_dataset("ham10000", str(root), **SMALL).load_table()
    age_empty = [i for i, r in enumerate(rows) if r["age"] == ""]
    assert age_empty and np.isnan(table.numeric[age_empty, 0]).all() and not np.isnan(np.delete(
        table.numeric[:, 0], age_empty)).any()
    sex_unknown = [i for i, r in enumerate(rows) if r["sex"] == "unknown"]
    site_unknown = [i for i, r in enumerate(rows) if r["localization"] == "unknown"]
    assert sex_unknown and all(table.categorical[i, 0] is None for i in sex_unknown)  # 'unknown' = missing
    assert site_unknown and all(table.categorical[i, 1] is None for i in site_unknown)
    assert "unknown" not in set(table.categorical.ravel().tolist())
    caplog.set_level(logging.WARNING)
    leaky = create_dataset("ham10000", str(root), leaking_columns=["dx_type"], **SMALL)
    table = leaky.load_table()
    assert [c.name for c in table.columns] == ["age", "sex", "localization", "dx_type"]
    assert "LEAKAGE DEMONSTRATION" in caplog.text
    with pytest.raises(ConfigError, match=r"leaking_columns: 'biopsed' is not a known leaking column of this "
                                          r"release \(dx_type, dataset\)"):
        create_dataset("ham10000", str(root), leaking_columns=["biopsed"], **SMALL)


def test_ham10000_missing_files_name_what_and_where(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetLayoutError) as exc:
        create_dataset("ham10000", str(empty))
    msg = str(exc.value)
    assert msg.startswith(f"dataset 'ham10000': file HAM10000_metadata.csv missing, expected at "
                          f"{empty / 'HAM10000_metadata.csv'}. Accepted layouts: HAM10000_metadata.csv (or .tab) + "
                          "HAM10000_images_part_1/ and HAM10000_images_part_2/")
    assert "https://doi.org/10.7910/DVN/DBW86T" in msg
    isic = build_ham10000(tmp_path, "isic2018")
    (isic / "HAM10000_metadata.csv").unlink()  # the ISIC 2018 archive alone: no clinical data
    with pytest.raises(DatasetLayoutError, match="the ISIC 2018 task 3 files are here, but they carry no age, sex "
                                                 "or site: add HAM10000_metadata.csv"):
        create_dataset("ham10000", str(isic))
    no_images = tmp_path / "meta_only"
    no_images.mkdir()
    pd.DataFrame(ham10000_rows()).to_csv(no_images / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"dataset 'ham10000': no image folder under {no_images}: expected one of HAM10000_images_part_1/, "
            "HAM10000_images_part_2/")):
        create_dataset("ham10000", str(no_images))


def test_ham10000_folder_names_in_other_case_and_dataverse_tab(tmp_path):
    root = build_ham10000(tmp_path)
    (root / "HAM10000_images_part_2").rename(root / "ham10000_images_part_2")
    frame = pd.read_csv(root / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    (root / "HAM10000_metadata.csv").unlink()
    frame.to_csv(root / "HAM10000_metadata.tab", sep="\t", index=False)  # Dataverse's archival format
    ds = create_dataset("ham10000", str(root), **SMALL)
    assert ds.metadata.name == "HAM10000_metadata.tab"
    assert sorted(p.name for p in ds.image_roots) == ["HAM10000_images_part_1", "ham10000_images_part_2"]
    assert ds.load_table().view_available.all()


# ================================================================================================
# PAD-UFES-20
# ================================================================================================
PAD_INPUTS = ["age", "diameter_1", "diameter_2", "smoke", "drink", "background_father", "background_mother",
              "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water", "has_sewage_system",
              "fitspatrick", "region", "itch", "grew", "hurt", "changed", "bleed", "elevation"]


@pytest.mark.parametrize("layout", ["mendeley", "flat"])
def test_pad_ufes20_loads_as_downloaded(tmp_path, layout):
    root = build_pad_ufes20(tmp_path, layout)
    ds = create_dataset("pad_ufes20", str(root), **SMALL)
    expected = ["imgs_part_1", "imgs_part_2", "imgs_part_3"] if layout == "mendeley" else ["images"]
    assert [p.name for p in ds.image_roots] == expected
    table = ds.load_table()
    rows = pad_ufes20_rows()
    assert table.ids.tolist() == [r["img_id"] for r in rows] and table.view_available.all()
    assert ds.task == "multiclass" and ds.class_names == ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
    assert [ds.class_names[k] for k in table.labels] == [r["diagnostic"] for r in rows]
    assert table.groups.tolist() == [r["patient_id"] for r in rows]  # patient, stricter than lesion
    assert [c.name for c in table.columns] == PAD_INPUTS  # 21 clinical fields, biopsed is not one
    # Real missingness: empty questionnaire cells and 'UNK' are NaN / unknown, never a category.
    names = [c.name for c in table.columns]
    no_questionnaire = [i for i, r in enumerate(rows) if r["smoke"] == ""]
    assert no_questionnaire and np.isnan(table.numeric[no_questionnaire, 1]).all()
    assert all(table.categorical[i, names.index("smoke") - 3] is None for i in no_questionnaire)
    unk = [i for i, r in enumerate(rows) if r["itch"] == "UNK"]
    assert unk and all(table.categorical[i, names.index("itch") - 3] is None for i in unk)
    assert "UNK" not in set(table.categorical.ravel().tolist())
    assert table.tabular_available.all()  # age, region and the symptoms are always there
    assert table.categorical[0, names.index("fitspatrick") - 3] == "1"  # '1.0' as a category


def test_pad_ufes20_cancer_task_biopsed_opt_in_and_lesion_groups(tmp_path, caplog):
    root = build_pad_ufes20(tmp_path)
    rows = pad_ufes20_rows()
    ds = create_dataset("pad_ufes20", str(root), task="cancer", **SMALL)
    table = ds.load_table()
    assert ds.task == "binary" and ds.class_names == ("non_cancer", "cancer")
    assert table.labels.tolist() == [int(r["diagnostic"] in ("BCC", "MEL", "SCC")) for r in rows]
    caplog.set_level(logging.WARNING)
    leaky = create_dataset("pad_ufes20", str(root), leaking_columns=["biopsed"], **SMALL).load_table()
    assert [c.name for c in leaky.columns][-1] == "biopsed" and "LEAKAGE DEMONSTRATION" in caplog.text
    by_lesion = create_dataset("pad_ufes20", str(root), group_by="lesion_id", **SMALL).load_table()
    assert by_lesion.groups.tolist() == [r["lesion_id"] for r in rows]
    assert create_dataset("pad_ufes20", str(root), group_by="none", **SMALL).load_table().groups is None
    with pytest.raises(ConfigError, match="group_by"):
        create_dataset("pad_ufes20", str(root), group_by="region", **SMALL)


def test_pad_ufes20_missing_metadata(tmp_path):
    root = build_pad_ufes20(tmp_path)
    (root / "metadata.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=re.escape(
            f"dataset 'pad_ufes20': file metadata.csv missing, expected at {root / 'metadata.csv'}. Accepted layouts: "
            "metadata.csv + images/imgs_part_{1,2,3}/ (the Mendeley zip)")):
        create_dataset("pad_ufes20", str(root))


# ================================================================================================
# grouped splits
# ================================================================================================
@pytest.mark.parametrize("name,builder,options", [
    ("ham10000", build_ham10000, {}), ("pad_ufes20", build_pad_ufes20, {}),
    ("pad_ufes20", build_pad_ufes20, {"group_by": "lesion_id"})], ids=["ham-lesion", "pad-patient", "pad-lesion"])
def test_grouped_split_never_puts_a_group_in_two_splits(tmp_path, name, builder, options):
    ds = create_dataset(name, str(builder(tmp_path)), **options, **SMALL)
    table = ds.load_table()
    for seed in range(10):
        parts = ds.split_indices(table, seed)
        assert all(len(s) == 1 for s in owners(table.groups, parts).values()), seed
        assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(table.ids)))
        sizes = np.asarray([len(parts[s]) for s in SPLITS]) / len(table.ids)
        assert np.abs(sizes - (0.7, 0.1, 0.2)).max() < 0.12, (seed, sizes)  # whole groups of 1-3 images
        assert len(parts["val"]) > 0
    data = ds.prepare(table, MissingSpec("mixed", 0.3), seed=0)  # masks stay per sample and id-keyed
    assert sum(len(s) for s in data.splits.values()) <= len(table.ids)


def test_grouped_split_properties_at_scale():
    rng = np.random.default_rng(0)
    sizes = rng.choice([1, 1, 1, 2, 2, 3, 5], size=3000)
    groups = np.repeat([f"L{i:05d}" for i in range(3000)], sizes)
    strata = np.repeat(rng.choice(4, size=3000, p=[0.6, 0.25, 0.1, 0.05]), sizes).astype(str)
    parts = grouped_split(groups, strata, seed=3, fractions=(0.7, 0.1, 0.2))
    assert all(len(s) == 1 for s in owners(groups, parts).values())
    for k in "0123":  # stratified: every class close to 70/10/20 in samples
        rows = np.flatnonzero(strata == k)
        share = [np.isin(parts[s], rows).sum() / len(rows) for s in SPLITS]
        assert np.allclose(share, (0.7, 0.1, 0.2), atol=0.03), (k, share)
    # id-keyed: a row permutation gives the same assignment per group; another seed another split.
    perm = rng.permutation(len(groups))
    again = grouped_split(groups[perm], strata[perm], seed=3, fractions=(0.7, 0.1, 0.2))
    for s in SPLITS:
        assert sorted(set(groups[perm][again[s]])) == sorted(set(groups[parts[s]]))
    other = grouped_split(groups, strata, seed=4, fractions=(0.7, 0.1, 0.2))
    assert set(groups[other["test"]]) != set(groups[parts["test"]])
    # Groups of one sample each: the per-sample split, exactly.
    ids = np.asarray([f"s{i}" for i in range(200)])
    labels = (np.arange(200) % 3).astype(str)
    single = seeded_split(ids, labels, 0, (0.7, 0.1, 0.2), groups=ids)
    assert all(np.array_equal(single[s], stratified_split(ids, labels, 0, (0.7, 0.1, 0.2))[s]) for s in SPLITS)


def legacy_stratified_split(ids, strata, seed, fractions):
    """The split before groups existed, copied verbatim: ungrouped datasets must still give it."""
    u = id_uniforms(ids, seed=seed, namespace="split", split="all")[:, 0]
    out = {s: [] for s in SPLITS}
    for stratum in sorted(set(strata.tolist())):
        rows = np.flatnonzero(strata == stratum)
        rows = rows[np.argsort(u[rows], kind="stable")]
        n = len(rows)
        n_train = int(round(fractions[0] * n))
        n_val = int(round(fractions[1] * n))
        out["train"] += rows[:n_train].tolist()
        out["val"] += rows[n_train:n_train + n_val].tolist()
        out["test"] += rows[n_train + n_val:].tolist()
    return {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in out.items()}


def test_ungrouped_and_single_patient_splits_are_unchanged(tmp_path):
    root = build_csv_manifest(tmp_path)
    spec = yaml.safe_load((root / "manifest.yaml").read_text())
    spec.pop("split_column")
    ds = create_dataset("csv_manifest", str(root), spec=spec, **SMALL)
    table = ds.load_table()
    assert table.groups is None
    odir = create_dataset("odir", str(build_odir_a(tmp_path)), splits_dir=None, **SMALL)
    odir_table = odir.load_table()
    assert odir_table.groups.tolist() == odir_table.ids.tolist()  # ODIR declares its patient (= the row)
    for seed in range(5):
        new, old = ds.split_indices(table, seed), legacy_stratified_split(
            table.ids, stratum_labels(table.labels, "binary"), seed, (0.7, 0.1, 0.2))
        assert all(np.array_equal(new[s], old[s]) for s in SPLITS), seed
        new = odir.split_indices(odir_table, seed)
        old = legacy_stratified_split(odir_table.ids, odir.powerset_strata(odir_table.labels), seed, (0.7, 0.1, 0.2))
        assert all(np.array_equal(new[s], old[s]) for s in SPLITS), seed


def _grouped_manifest(tmp_path: Path, split_column: bool, per_patient: int = 2) -> tuple[Path, dict]:
    root = build_csv_manifest(tmp_path)
    frame = pd.read_csv(root / "cases.csv", dtype=str, keep_default_na=False)
    frame["patient"] = [f"p{i // per_patient}" for i in range(10)]
    frame.to_csv(root / "cases.csv", index=False)
    spec = yaml.safe_load((root / "manifest.yaml").read_text())
    spec["group_column"] = "patient"
    if not split_column:
        spec.pop("split_column")
    return root, spec


def test_csv_manifest_group_column(tmp_path):
    root, spec = _grouped_manifest(tmp_path, split_column=False)
    ds = create_dataset("csv_manifest", str(root), spec=spec, **SMALL)
    table = ds.load_table()
    assert table.groups.tolist() == [f"p{i // 2}" for i in range(10)]
    for seed in range(6):
        assert all(len(s) == 1 for s in owners(table.groups, ds.split_indices(table, seed)).values())
    # Three rows per patient: p2 = rows 6, 7 (val) and 8 (test) in the split column: an error.
    root2, spec2 = _grouped_manifest(tmp_path / "b", split_column=True, per_patient=3)
    ds2 = create_dataset("csv_manifest", str(root2), spec=spec2, **SMALL)
    table2 = ds2.load_table()
    with pytest.raises(DatasetLayoutError, match=re.escape(
            "dataset 'csv_manifest': the split column (or folds) puts group 'p2' in both 'val' and 'test'")):
        ds2.split_indices(table2, 0)
    with pytest.raises(DatasetLayoutError, match="puts group 'p2' in both"):  # prepare checks it too
        ds2.prepare(table2, MissingSpec("mixed", 0.0), seed=0)
    frame = pd.read_csv(root2 / "cases.csv", dtype=str, keep_default_na=False)
    frame.loc[3, "patient"] = ""
    frame.to_csv(root2 / "cases.csv", index=False)
    with pytest.raises(DatasetLayoutError, match="row 3: group column 'patient' is empty"):
        create_dataset("csv_manifest", str(root2), spec=spec2, **SMALL)


# ================================================================================================
# manifests as downloaded: path templates, several image roots, NA texts, label maps
# ================================================================================================
def _as_downloaded(tmp_path: Path) -> tuple[Path, dict]:
    """cases.csv names each image by an id column only; the files are split over part_a/ and part_b/."""
    root = build_csv_manifest(tmp_path)
    frame = pd.read_csv(root / "cases.csv", dtype=str, keep_default_na=False)
    frame["image_id"] = [f"img_{i:02d}" for i in range(10)]
    frame.loc[3, "image_id"] = ""  # no image for row 3
    frame["site"] = ["UNK" if i == 4 else s for i, s in enumerate(frame["site"])]
    frame["malignant"] = ["yes" if v == "1" else "no" for v in frame["malignant"]]
    frame.drop(columns=["image_path"]).to_csv(root / "cases.csv", index=False)
    for i in range(10):
        target = root / ("part_a" if i % 2 else "part_b")
        target.mkdir(exist_ok=True)
        (root / "images" / f"img_{i:02d}.png").rename(target / f"img_{i:02d}.png")
    spec = {"manifest": "cases.csv", "image_root": ["part_a", "part_b"], "id_column": "patient_id",
            "task": "binary", "label_columns": "malignant", "views": {"main": "{image_id}.png"},
            "categorical": ["sex", "site"], "numeric": ["age", "psa"], "split_column": "split",
            "class_names": ["benign", "malignant"], "label_map": {"no": "benign", "yes": "malignant"},
            "na_values": ["UNK"]}
    return root, spec


def test_csv_manifest_path_template_over_two_image_roots(tmp_path):
    root, spec = _as_downloaded(tmp_path)
    ds = create_dataset("csv_manifest", str(root), spec=spec, **SMALL)
    table = ds.load_table()
    assert table.view_available[:, 0].tolist() == [True] * 3 + [False] + [True] * 6
    assert table.extras["real_missing"]["main"]["no_path"] == 1
    assert table.labels.tolist() == [0, 1, 1, 0, 0, 0, 1, 0, 0, 1] and ds.class_names == ("benign", "malignant")
    assert table.categorical[4, 1] is None  # 'UNK' is an empty cell
    data = ds.prepare(table, MissingSpec("mixed", 0.0), seed=0)
    assert data.info.image_shape == (32, 32)
    with pytest.raises(ConfigError, match=r"label_map: 'cancer' is not one of class_names"):
        create_dataset("csv_manifest", str(root), spec={**spec, "label_map": {"yes": "cancer"}}, **SMALL)


# ================================================================================================
# fail fast: a broken image root stops before the grid
# ================================================================================================
def test_broken_image_root_fails_at_create_dataset_naming_column_roots_and_paths(tmp_path):
    root = build_csv_manifest(tmp_path)
    spec = yaml.safe_load((root / "manifest.yaml").read_text())
    spec["image_root"] = "imgs/"  # the folder is images/
    with pytest.raises(DatasetLayoutError) as exc:
        create_dataset("csv_manifest", str(root), spec=spec, **SMALL)
    assert str(exc.value) == (
        f"dataset 'csv_manifest': view 'main' (column 'image_path') resolves to a file for 0 of 9 rows (0%, below "
        f"min_image_share 50%): a layout mistake, not missing images. Searched {root / 'imgs'}; tried e.g. "
        f"{root / 'imgs' / 'img_00.png'}; {root / 'imgs' / 'img_01.png'}. Check the image folder(s) and the path "
        "column or template, or set the dataset option min_image_share (0 turns this check off)")
    # A template with the wrong extension over two roots: both roots and both tried paths are named.
    root2, spec2 = _as_downloaded(tmp_path / "t")
    spec2["views"] = {"main": "{image_id}.jpg"}
    with pytest.raises(DatasetLayoutError) as exc:
        create_dataset("csv_manifest", str(root2), spec=spec2, **SMALL)
    msg = str(exc.value)
    assert "view 'main' (path template '{image_id}.jpg') resolves to a file for 0 of 9 rows" in msg
    assert f"Searched {root2 / 'part_a'}, {root2 / 'part_b'}; tried e.g. {root2 / 'part_a' / 'img_00.jpg'} or " \
           f"{root2 / 'part_b' / 'img_00.jpg'}; {root2 / 'part_a' / 'img_01.jpg'} or" in msg


def test_min_image_share_threshold(tmp_path):
    root = build_csv_manifest(tmp_path)
    for i in range(5):  # 4 of 9 named files remain: 44% < 50%
        if i != 3:
            (root / "images" / f"img_{i:02d}.png").unlink()
    (root / "images" / "img_05.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"resolves to a file for 4 of 9 rows \(44%, below min_image_share "
                                                 r"50%\)"):
        create_dataset("csv_manifest", str(root), **SMALL)
    table = create_dataset("csv_manifest", str(root), min_image_share=0.4, **SMALL).load_table()
    assert table.view_available.sum() == 4 and table.extras["real_missing"]["main"]["file_not_found"] == 5
    assert create_dataset("csv_manifest", str(root), min_image_share=0, **SMALL).load_table() is not None
    with pytest.raises(ConfigError, match=r"min_image_share: must be in \[0, 1\]"):
        create_dataset("csv_manifest", str(root), min_image_share=1.5)


def _cfg(tmp_path: Path, name: str, options: dict | None = None) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({
        "dataset": {"name": name, "options": {**SMALL, **(options or {})}},
        "encoders": {"image": {"model": "test_efficientnet"}, "tabular": {"hidden": [16], "dim": 16}},
        "training": {"batch_size": 64, "device": "cpu"}}))
    return cfg


def test_cli_exits_2_with_the_layout_message_before_the_grid(tmp_path, capsys):
    from benchmark.run import main

    root = build_csv_manifest(tmp_path)
    spec_path = root / "manifest.yaml"
    spec_path.write_text(spec_path.read_text().replace("image_root: images/", "image_root: imgs/"))
    results = tmp_path / "results"
    code = main(["--config", str(_cfg(tmp_path, "csv_manifest")), "--dataset", "csv_manifest", "--data-root",
                 str(root), "--methods", "late_fusion", "--epochs", "1", "--seeds", "0", "--missing-rate", "0.3",
                 "--results-dir", str(results), "--no-leaderboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"error: dataset 'csv_manifest': view 'main' (column 'image_path') resolves to a file for 0 of 9 "
                   f"rows (0%, below min_image_share 50%): a layout mistake, not missing images. Searched "
                   f"{root / 'imgs'}; tried e.g. {root / 'imgs' / 'img_00.png'}; {root / 'imgs' / 'img_01.png'}. "
                   "Check the image folder(s) and the path column or template, or set the dataset option "
                   "min_image_share (0 turns this check off)"]
    assert not (results / "mlflow.db").exists() and not (results / "masks").exists()  # no grid was started


# ================================================================================================
# end to end: python -m benchmark.run on the folders as downloaded
# ================================================================================================
@pytest.mark.parametrize("name,builder,group", [("ham10000", build_ham10000, "lesion_id"),
                                                ("pad_ufes20", build_pad_ufes20, "patient_id")])
def test_benchmark_run_end_to_end_as_downloaded(tmp_path, name, builder, group):
    import mlflow

    from benchmark.run import main

    root = builder(tmp_path)
    results = tmp_path / "results"
    code = main(["--config", str(_cfg(tmp_path, name)), "--dataset", name, "--data-root", str(root),
                 "--methods", "late_fusion", "--epochs", "1", "--seeds", "0", "--missing-rate", "0.3",
                 "--results-dir", str(results), "--no-leaderboard"])
    assert code == 0
    metadata = next(p for p in root.iterdir() if p.suffix == ".csv")
    frame = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    group_of = dict(zip(frame[ham10000_id(name)], frame[group]))
    seen: dict[str, str] = {}
    for split in SPLITS:  # the persisted masks list every sample of each split: no group in two
        mask = pd.read_csv(results / "masks" / f"{name}_{split}_mixed_0.3_seed0.csv", dtype=str)
        for sid in mask["id"]:
            assert seen.setdefault(group_of[sid], split) == split, (sid, group_of[sid])
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name(f"medfusion-{name}")
    runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.runspec_key != ''")
    assert (runs.status == "FINISHED").all() and set(runs["tags.method"]) == {"late_fusion"}


def ham10000_id(name: str) -> str:
    return "image_id" if name == "ham10000" else "img_id"
