"""PAD-UFES-20 (Pacheco et al., Data in Brief 2020), read as downloaded from Mendeley Data.

2,298 smartphone clinical images (PNG, sizes vary) of 1,641 lesions of 1,373 patients, with
``metadata.csv``: ``patient_id, lesion_id, smoke, drink, background_father, background_mother,
age, pesticide, gender, skin_cancer_history, cancer_history, has_piped_water, has_sewage_system,
fitspatrick, region, diameter_1, diameter_2, diagnostic, itch, grew, hurt, changed, bleed,
elevation, img_id, biopsed``; ``img_id`` is the file name (``PAT_1234_123_000.png``).  Layouts
accepted, detected automatically under ``--data-root`` (folder names in any case; every image
folder found is searched)::

    metadata.csv + images/imgs_part_1/, images/imgs_part_2/, images/imgs_part_3/   # the Mendeley zip
    metadata.csv + imgs_part_{1,2,3}/ (in the root, or nested imgs_part_k/imgs_part_k/)
    metadata.csv + images/<img_id>  (all images in one folder)

Labels: ``task: diagnostic`` (default) = the 6 diagnoses ``ACK, BCC, MEL, NEV, SCC, SEK``
(Bowen's disease ``BOD`` is SCC in situ and already merged into SCC by the release; a stray BOD
maps to SCC), macro AUC; ``task: cancer`` = the usual binary task, cancer = BCC, MEL, SCC vs
non_cancer = ACK, NEV, SEK, AUC.
Tabular inputs (what a clinician has at diagnosis time, 21 fields): numeric ``age, diameter_1,
diameter_2``; categorical ``smoke, drink, background_father, background_mother, pesticide,
gender, skin_cancer_history, cancer_history, has_piped_water, has_sewage_system, fitspatrick,
region, itch, grew, hurt, changed, bleed, elevation``.  Many cells are empty (patients without
the full questionnaire) or ``UNK``: both are real missingness (NaN + indicator, or an all-zero
one-hot).  Leaking column, **never** an input by default: ``biopsed`` -- every cancer is
biopsy-proven and the other lesions mostly are not, so it is decided by the diagnosis;
``leaking_columns: [biopsed]`` adds it as a leakage demonstration.
Split: seeded, stratified 70/10/20 **grouped by patient_id** (stricter than lesion_id: a patient's
lesions share the patient-level fields), so no patient spans two splits; ``group_by: lesion_id``
or ``none`` are options.

Licence: CC BY 4.0 (Mendeley Data, doi:10.17632/zr7vgbcyr2.1).  Cite: Pacheco AGC, Lima GR,
Salomao AS, et al. PAD-UFES-20: a skin lesion dataset composed of patient data and clinical
images collected from smartphones. Data in Brief 32, 106221 (2020), doi:10.1016/j.dib.2020.106221.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from datasets import register_dataset
from datasets.csv_release import CsvReleaseDataset, CsvReleaseOptions

DIAGNOSES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
CANCER = ("BCC", "MEL", "SCC")
PARTS = ("imgs_part_1", "imgs_part_2", "imgs_part_3")


@dataclass(frozen=True)
class PadUfes20Options(CsvReleaseOptions):
    task: Literal["diagnostic", "cancer"] = "diagnostic"
    group_by: Literal["patient_id", "lesion_id", "none"] = "patient_id"


@register_dataset("pad_ufes20")
class PadUfes20Dataset(CsvReleaseDataset):
    display_name = "PAD-UFES-20"
    views = ("clinic",)
    primary_metric = "auc"
    source_url = "https://data.mendeley.com/datasets/zr7vgbcyr2/1 (Mendeley Data; unzip, then the imgs_part_k zips)"
    expected_files = ("metadata.csv", "images/imgs_part_{1,2,3}/<img_id>")
    metadata_files = ("metadata.csv",)
    image_dirs = ("images", *(f"images/{p}" for p in PARTS), *PARTS, *(f"images/{p}/{p}" for p in PARTS), ".")
    image_suffix = ".png"
    layouts = ("metadata.csv + images/imgs_part_{1,2,3}/ (the Mendeley zip); metadata.csv + imgs_part_{1,2,3}/; "
               "metadata.csv + images/ with every <img_id>.png")
    id_column = "img_id"
    label_column = "diagnostic"
    path_template = "{img_id}"
    numeric = ("age", "diameter_1", "diameter_2")
    categorical = ("smoke", "drink", "background_father", "background_mother", "pesticide", "gender",
                   "skin_cancer_history", "cancer_history", "has_piped_water", "has_sewage_system", "fitspatrick",
                   "region", "itch", "grew", "hurt", "changed", "bleed", "elevation")
    leaking = {"biopsed": "categorical"}
    na_values = ("UNK",)
    tasks = {"diagnostic": ("multiclass", DIAGNOSES, {"BOD": "SCC"}),
             "cancer": ("binary", ("non_cancer", "cancer"),
                        {d: "cancer" if d in (*CANCER, "BOD") else "non_cancer" for d in (*DIAGNOSES, "BOD")})}
    licence = "CC BY 4.0"
    citation = "Pacheco et al., Data in Brief 32, 106221 (2020), doi:10.1016/j.dib.2020.106221"
    Options = PadUfes20Options
