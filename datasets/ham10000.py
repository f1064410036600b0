"""HAM10000 (Tschandl et al., Sci. Data 2018; the ISIC 2018 task 3 training set), read as downloaded.

10,015 dermatoscopic images (600 x 450 JPEG) of pigmented lesions, several images per lesion,
with ``HAM10000_metadata.csv``: ``lesion_id, image_id, dx, dx_type, age, sex, localization``
(recent Dataverse versions add ``dataset``, the acquisition source).  Layouts accepted, detected
automatically under ``--data-root`` (folder names in any case; every image folder found is
searched)::

    HAM10000_metadata.csv (or .tab, as the Harvard Dataverse serves it)
    + HAM10000_images_part_1/ and HAM10000_images_part_2/   # Dataverse / Kaggle: <image_id>.jpg
      (or HAM10000_images_part1/, part2/ named after the zips, one HAM10000_images/ or images/
       folder, the images directly in the root, or ISIC2018_Task3_Training_Input/)

The ISIC 2018 archive alone (``ISIC2018_Task3_Training_GroundTruth.csv``, one-hot labels) has no
age, sex or site, so it cannot be a fusion benchmark: put ``HAM10000_metadata.csv`` next to it.

Labels: the 7 ``dx`` classes ``akiec, bcc, bkl, df, mel, nv, vasc`` (multiclass, macro AUC).
Tabular inputs (known at diagnosis time): ``age`` (numeric; empty in some rows = NaN + indicator),
``sex`` and ``localization`` (categorical; ``unknown`` = real missingness, all-zero one-hot).
Leaking columns, **never** inputs by default: ``dx_type`` (how the diagnosis was confirmed:
histo / follow_up / consensus / confocal -- decided by the diagnosis itself, e.g. follow-up is
almost only for nevi) and ``dataset`` (the acquisition source, strongly tied to the class mix).
``leaking_columns: [dx_type]`` adds one as a leakage demonstration.  Split: seeded, stratified
70/10/20 **grouped by lesion_id**, so the images of one lesion never span two splits.

Licence: CC BY-NC 4.0 (Harvard Dataverse, doi:10.7910/DVN/DBW86T).  Cite: Tschandl P, Rosendahl
C, Kittler H. The HAM10000 dataset, a large collection of multi-source dermatoscopic images of
common pigmented skin lesions. Sci. Data 5, 180161 (2018), doi:10.1038/sdata.2018.161.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from datasets import register_dataset
from datasets.csv_release import CsvReleaseDataset, CsvReleaseOptions

DX_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


@dataclass(frozen=True)
class Ham10000Options(CsvReleaseOptions):
    task: Literal["dx7"] = "dx7"
    group_by: Literal["lesion_id", "none"] = "lesion_id"


@register_dataset("ham10000")
class Ham10000Dataset(CsvReleaseDataset):
    display_name = "HAM10000"
    views = ("derm",)
    primary_metric = "auc"
    source_url = ("https://doi.org/10.7910/DVN/DBW86T (Harvard Dataverse) or "
                  "https://www.kaggle.com/datasets/kmader/skin-cancer-mnist-ham10000")
    expected_files = ("HAM10000_metadata.csv", "HAM10000_images_part_1/", "HAM10000_images_part_2/")
    metadata_files = ("HAM10000_metadata.csv", "HAM10000_metadata.tab")
    image_dirs = ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images_part1",
                  "HAM10000_images_part2", "HAM10000_images", "images", "ISIC2018_Task3_Training_Input", ".")
    image_suffix = ".jpg"
    layouts = ("HAM10000_metadata.csv (or .tab) + HAM10000_images_part_1/ and HAM10000_images_part_2/ "
               "(Dataverse, Kaggle); the same with one HAM10000_images/ or images/ folder, or the images in the "
               "root; HAM10000_metadata.csv + ISIC2018_Task3_Training_Input/ (ISIC 2018 task 3)")
    layout_hints = dict.fromkeys(
        ("ISIC2018_Task3_Training_GroundTruth", "ISIC2018_Task3_Training_GroundTruth.csv"),
        "the ISIC 2018 task 3 files are here, but they carry no age, sex or site: add HAM10000_metadata.csv from "
        "the Dataverse next to them")
    id_column = "image_id"
    label_column = "dx"
    path_template = "{image_id}.jpg"
    numeric = ("age",)
    categorical = ("sex", "localization")
    leaking = {"dx_type": "categorical", "dataset": "categorical"}
    na_values = ("unknown", "NA")  # NA: how a Dataverse .tab may write an empty cell
    tasks = {"dx7": ("multiclass", DX_CLASSES, {})}
    licence = "CC BY-NC 4.0"
    citation = "Tschandl, Rosendahl & Kittler, Sci. Data 5, 180161 (2018), doi:10.1038/sdata.2018.161"
    Options = Ham10000Options
