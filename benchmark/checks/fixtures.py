"""Builders of fabricated dataset folders with the *real* headers (datasets spec section 8).

The repository ships no data: every test writes tiny files into ``tmp_path``.  Images are 16x16
RGB noise from a fixed seed (PIL); volumes are 4x8x8 ``.npy``.  Plain functions, no pytest
dependency, so benchmarks and other tests can import them too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DERM_HEADER = ["case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks", "pigmentation",
               "regression_structures", "dots_and_globules", "blue_whitish_veil", "vascular_structures",
               "level_of_diagnostic_difficulty", "elevation", "location", "sex", "management", "clinic",
               "derm", "case_id", "notes"]
ODIR_HEADER = ["ID", "Patient Age", "Patient Sex", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords",
               "Right-Diagnostic Keywords", "N", "D", "G", "C", "A", "H", "M", "O"]
ODIR_FULL_DF_HEADER = ODIR_HEADER + ["filepath", "labels", "target", "filename"]
MEN_CLASSES = ("Grade_1", "Grade_2_invasion", "Grade_2_noninvasion")


def write_image(path: Path, seed: int, size: int = 16) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------------------------
# Derm7pt
# ------------------------------------------------------------------------------------------------
DERM_ROWS = [
    # diagnosis, difficulty, elevation, location, sex, management, clinic (as in meta.csv), derm, create derm
    ("clark nevus", "low", "palpable", "back", "female", "excision", "Aaa/Aaa001.JPG", "Aaa/Aaa002.JPG", True),
    ("melanoma", "medium", "nodular", "upper limbs", "male", "excision", "Aaa/Aaa003.JPG", "Aaa/Aaa004.JPG", True),
    ("basal cell carcinoma", "high", "flat", "head neck", "male", "excision", "Bbb/Bbb001.jpg", "Bbb/Bbb002.jpg",
     True),
    ("blue nevus", "low", "flat", "chest", "female", "no further examination", "Aaa/Aaa005.JPG",
     "Aaa/Aaa006.JPG", True),
    ("melanoma (in situ)", "medium", "palpable", "lower limbs", "female", "excision", "Ccc/Ccc001.jpg",
     "Ccc/Ccc002.jpg", True),
    ("seborrheic keratosis", "low", "palpable", "abdomen", "male", "clinical follow up", "Ccc/Ccc003.jpg",
     "Ccc/Ccc004.jpg", True),
    ("reed or spitz nevus", "medium", "flat", "acral", "female", "clinical follow up", "Ddd/Ddd001.JPG",
     "Ddd/Ddd002.JPG", True),
    ("melanoma", "high", "nodular", "back", "male", "excision", "Ddd/Ddd003.JPG", "Ddd/Ddd004.JPG", False),
]


def build_derm7pt(base: Path) -> Path:
    """``<base>/release_v0`` with 8 cases; row 7's derm image is never created (real missingness).

    ``meta.csv`` writes ``Aaa/Aaa001.JPG`` while the file on disk is ``Aaa/Aaa001.jpg`` for the
    upper-case rows, to exercise the case-insensitive lookup.
    """
    release = base / "release_v0"
    rows = []
    for i, (diag, diff, elev, loc, sex, man, clinic, derm, make_derm) in enumerate(DERM_ROWS):
        rows.append({"case_num": i + 1, "diagnosis": diag, "seven_point_score": i % 4,
                     "pigment_network": "typical", "streaks": "absent", "pigmentation": "absent",
                     "regression_structures": "absent", "dots_and_globules": "regular",
                     "blue_whitish_veil": "absent", "vascular_structures": "absent",
                     "level_of_diagnostic_difficulty": diff, "elevation": elev, "location": loc, "sex": sex,
                     "management": man, "clinic": clinic, "derm": derm, "case_id": f"case{i + 1}", "notes": ""})
        for rel, create in ((clinic, True), (derm, make_derm)):
            if create:
                folder, name = rel.split("/")
                on_disk = name[:-4] + ".jpg" if name.endswith(".JPG") else name  # Aaa001.JPG -> Aaa001.jpg
                write_image(release / "images" / folder / on_disk, seed=1000 + i * 2 + (rel == derm))
    meta = release / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=DERM_HEADER).to_csv(meta / "meta.csv", index=False)
    for name, idx in (("train", [0, 1, 2, 3]), ("valid", [4, 5]), ("test", [6, 7])):
        pd.DataFrame({"indexes": idx}).to_csv(meta / f"{name}_indexes.csv", index=False)
    return release


# ------------------------------------------------------------------------------------------------
# ODIR
# ------------------------------------------------------------------------------------------------
ODIR_PATIENTS = [
    # ID, age, sex, left keywords, right keywords, labels N D G C A H M O
    (0, 45, "Female", "normal fundus", "normal fundus", (1, 0, 0, 0, 0, 0, 0, 0)),
    (1, 62, "Male", "moderate non proliferative retinopathy，normal fundus", "normal fundus",
     (0, 1, 0, 0, 0, 0, 0, 0)),
    (2, 70, "Female", "glaucoma", "normal fundus", (0, 0, 1, 0, 0, 0, 0, 0)),
    (3, 55, "Male", "no fundus image", "moderate non proliferative retinopathy", (0, 1, 0, 0, 0, 0, 0, 0)),
    (4, 80, "Female", "mild nonproliferative retinopathy，hypertensive retinopathy", "hypertensive retinopathy",
     (0, 1, 0, 0, 0, 1, 0, 0)),
    (5, 40, "Male", "normal fundus", "normal fundus", (1, 0, 0, 0, 0, 0, 0, 0)),
]
ODIR_LABELS = np.asarray([p[5] for p in ODIR_PATIENTS], dtype=np.float32)


def odir_frame(patients=ODIR_PATIENTS) -> pd.DataFrame:
    rows = []
    for pid, age, sex, lk, rk, labels in patients:
        rows.append(dict(zip(ODIR_HEADER, [pid, age, sex, f"{pid}_left.jpg", f"{pid}_right.jpg", lk, rk,
                                           *labels])))
    return pd.DataFrame(rows, columns=ODIR_HEADER)


def _odir_images(folder: Path, patients=ODIR_PATIENTS, seed: int = 0) -> None:
    for pid, *_ in patients:
        for k, eye in enumerate(("left", "right")):
            write_image(folder / f"{pid}_{eye}.jpg", seed=seed + 2 * pid + k)


def build_odir_a(base: Path) -> Path:
    root = base / "odir_a"
    root.mkdir(parents=True)
    odir_frame().to_excel(root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx", index=False)
    _odir_images(root / "ODIR-5K_Training_Dataset")
    return root


def build_odir_b(base: Path, with_xlsx: bool = True) -> Path:
    """Kaggle layout: data.xlsx (optional) + full_df.csv with one row per *existing* eye."""
    root = base / ("odir_b" if with_xlsx else "odir_b_csv")
    inner = root / "ODIR-5K" / "ODIR-5K"
    inner.mkdir(parents=True)
    frame = odir_frame()
    if with_xlsx:
        frame.to_excel(inner / "data.xlsx", index=False)
    _odir_images(inner / "Training Images")
    _odir_images(root / "preprocessed_images", seed=500)
    rows = []
    for (_, row), patient in zip(frame.iterrows(), ODIR_PATIENTS):
        labels = patient[5]
        for eye, kw in (("left", patient[3]), ("right", patient[4])):
            if "no fundus image" in kw:
                continue  # the Kaggle table has no row for an unusable eye
            name = f"{patient[0]}_{eye}.jpg"
            letters = [c for c, v in zip("NDGCAHMO", labels) if v]
            rows.append({**row.to_dict(), "filepath": f"../input/ocular-disease-recognition-odir5k/ODIR-5K/"
                         f"ODIR-5K/Training Images/{name}", "labels": str(letters),
                         "target": str(list(labels)), "filename": name})
    pd.DataFrame(rows, columns=ODIR_FULL_DF_HEADER).to_csv(root / "full_df.csv", index=False)
    return root


def build_odir_c(base: Path) -> Path:
    """OIA-ODIR: all 6 patients in the training set, 3 in each test set (own images)."""
    root = base / "odir_c"
    sets = (("Training Set", "training annotation (English).xlsx", ODIR_PATIENTS, 0),
            ("Off-site Test Set", "off-site test annotation (English).xlsx", ODIR_PATIENTS[:3], 100),
            ("On-site Test Set", "on-site test annotation (English).xlsx", ODIR_PATIENTS[3:], 200))
    for folder, xlsx, patients, seed in sets:
        (root / folder / "Annotation").mkdir(parents=True)
        odir_frame(patients).to_excel(root / folder / "Annotation" / xlsx, index=False)
        _odir_images(root / folder / "Images", patients, seed)
    return root


# ------------------------------------------------------------------------------------------------
# folder_manifest (MEN-like) and csv_manifest
# ------------------------------------------------------------------------------------------------
MEN_CSV_HEADER = ["id", "c1", "c2", "c3", "location", "sex", "age", "adc", "tumor_area", "edema_area"]


def build_men(base: Path, suffix: str = ".npy", absent_from_csv: str = "P005") -> Path:
    """``1fold/{train,test}/<3 classes>/P00k/{t1,t2,adc}_bbox.npy``: 2 patients per class per split."""
    root = base / "men"
    rng = np.random.default_rng(7)
    rows = []
    k = 0
    for split in ("train", "test"):
        for label, cls in enumerate(MEN_CLASSES):
            for _ in range(2):
                pid = f"P{k:03d}"
                folder = root / "1fold" / split / cls / pid
                folder.mkdir(parents=True)
                for view in ("t1", "t2", "adc"):
                    vol = (rng.random((4, 8, 8)) * 1500 * (rng.random((4, 8, 8)) > 0.2)).astype(np.float32)
                    if suffix == ".npy":
                        np.save(folder / f"{view}_bbox.npy", vol)
                    else:
                        import nibabel as nib

                        nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0), np.eye(4)), folder / f"{view}_bbox.nii.gz")
                if pid != absent_from_csv:
                    rows.append([pid, "x", "y", "z", 1 + k % 3, k % 2, 40 + k, 0.8 + 0.01 * k, 10 + k, 5 + k])
                k += 1
    rows.append(["P999", "x", "y", "z", 1, 0, 50, 1.0, 12, 3])  # an extra CSV row without images
    pd.DataFrame(rows, columns=MEN_CSV_HEADER).to_csv(root / "clinical.csv", index=False)
    return root


def build_csv_manifest(base: Path, multilabel: bool = False) -> Path:
    """10 rows, a split column, one empty image path and one all-empty tabular row."""
    root = base / ("csv_ml" if multilabel else "csv_bin")
    (root / "images").mkdir(parents=True)
    rows = []
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    for i in range(10):
        path = f"img_{i:02d}.png"
        write_image(root / "images" / path, seed=300 + i)
        row = {"patient_id": f"c{i:02d}", "image_path": path if i != 3 else "", "age": 30 + 3 * i,
               "psa": "" if i == 5 else round(1.5 + 0.3 * i, 2), "sex": "F" if i % 2 else "M",
               "site": ["a", "b", "c"][i % 3], "split": splits[i], "comment": "unused"}
        if i == 7:
            row.update(age="", psa="", sex="", site="")  # every tabular cell empty
        if multilabel:
            row.update(y_a=int(i % 2 == 0), y_b=int(i % 3 == 0), y_c=int(i in (1, 4, 6, 8, 9)))
        else:
            row["malignant"] = int(i in (1, 2, 6, 9))
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "cases.csv", index=False)
    spec = {"manifest": "cases.csv", "image_root": "images/", "id_column": "patient_id",
            "task": "multilabel" if multilabel else "binary",
            "label_columns": ["y_a", "y_b", "y_c"] if multilabel else ["malignant"],
            "views": {"main": "image_path"}, "categorical": ["sex", "site"], "numeric": ["age", "psa"],
            "split_column": "split", "fold_column": None}
    import yaml

    (root / "manifest.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


# ------------------------------------------------------------------------------------------------
# HAM10000 and PAD-UFES-20 (as downloaded)
# ------------------------------------------------------------------------------------------------
HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"]
HAM_DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
HAM_SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "scalp")
HAM_IMAGE_DIRS = {"dataverse": ("HAM10000_images_part_1", "HAM10000_images_part_2"), "single": ("images",),
                  "isic2018": ("ISIC2018_Task3_Training_Input",)}


def ham10000_rows() -> list[dict[str, str]]:
    """42 images of 21 lesions: 3 lesions per dx with 1, 2 and 3 images; some age empty, some sex or
    localization 'unknown' (real missingness)."""
    rows, idx = [], 0
    for k, dx in enumerate(HAM_DX):
        for j in range(3):
            lesion = f"HAM_{k * 3 + j:07d}"
            for _ in range(1 + (k + j) % 3):
                rows.append({"lesion_id": lesion, "image_id": f"ISIC_{24306 + idx:07d}", "dx": dx,
                             "dx_type": ("histo", "follow_up", "consensus", "confocal")[(k + idx) % 4],
                             "age": "" if idx % 9 == 4 else f"{20 + 5 * (idx % 13)}.0",
                             "sex": "unknown" if idx % 11 == 3 else ("male", "female")[idx % 2],
                             "localization": "unknown" if idx % 10 == 7 else HAM_SITES[idx % len(HAM_SITES)],
                             "dataset": ("vidir_modern", "rosendahl", "vienna_dias", "vidir_molemax")[k % 4]})
                idx += 1
    return rows


def build_ham10000(base: Path, layout: str = "dataverse", dataset_column: bool = True) -> Path:
    """The metadata CSV + images as downloaded: ``dataverse`` = HAM10000_images_part_1/ and _2/
    (alternating), ``single`` = one images/ folder, ``isic2018`` = ISIC2018_Task3_Training_Input/
    (+ the one-hot ground truth)."""
    root = base / f"ham10000_{layout}"
    root.mkdir(parents=True)
    rows = ham10000_rows()
    folders = HAM_IMAGE_DIRS[layout]
    for i, row in enumerate(rows):
        write_image(root / folders[i % len(folders)] / f"{row['image_id']}.jpg", seed=2000 + i)
    header = HAM_HEADER if dataset_column else HAM_HEADER[:-1]
    pd.DataFrame(rows, columns=header).to_csv(root / "HAM10000_metadata.csv", index=False)
    if layout == "isic2018":
        truth = root / "ISIC2018_Task3_Training_GroundTruth"
        truth.mkdir()
        onehot = [{"image": r["image_id"], **{d.upper(): float(d == r["dx"]) for d in HAM_DX}} for r in rows]
        pd.DataFrame(onehot).to_csv(truth / "ISIC2018_Task3_Training_GroundTruth.csv", index=False)
    return root


PAD_HEADER = ["patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
              "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
              "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic", "itch", "grew",
              "hurt", "changed", "bleed", "elevation", "img_id", "biopsed"]
PAD_DIAGNOSES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
PAD_QUESTIONNAIRE = ("smoke", "drink", "background_father", "background_mother", "pesticide", "skin_cancer_history",
                     "cancer_history", "has_piped_water", "has_sewage_system", "fitspatrick", "diameter_1",
                     "diameter_2")


def pad_ufes20_rows() -> list[dict[str, str]]:
    """40 images of 27 lesions of 18 patients (1-2 lesions each, 1-2 images per lesion).  Every third
    patient has no questionnaire (empty cells, as in the release); some symptoms are 'UNK'."""
    rows, lesion_no, idx = [], 100, 0
    tf = ("False", "True")
    for p in range(18):
        for j in range(1 + p % 2):
            diagnosis = PAD_DIAGNOSES[(p + j) % 6]
            lesion_no += 1
            for _ in range(1 + (p + j) % 2):
                row = {"patient_id": f"PAT_{p + 1}", "lesion_id": str(lesion_no), "smoke": tf[p % 2],
                       "drink": tf[(p + 1) % 2], "background_father": ("POMERANIA", "GERMANY", "ITALY")[p % 3],
                       "background_mother": ("BRAZIL", "ITALY")[p % 2], "age": str(30 + 2 * p),
                       "pesticide": tf[p % 3 == 0], "gender": ("FEMALE", "MALE")[p % 2],
                       "skin_cancer_history": tf[p % 4 == 1], "cancer_history": tf[p % 5 == 2],
                       "has_piped_water": "True", "has_sewage_system": tf[p % 2], "fitspatrick": f"{1 + p % 4}.0",
                       "region": ("FACE", "ARM", "BACK", "NECK", "CHEST", "HAND")[(p + j) % 6],
                       "diameter_1": f"{5 + p % 7}.0", "diameter_2": f"{3 + p % 5}.0", "diagnostic": diagnosis,
                       "itch": ("False", "True", "UNK")[idx % 3], "grew": ("True", "UNK", "False")[idx % 3],
                       "hurt": tf[idx % 2], "changed": ("UNK", "False")[idx % 2], "bleed": tf[(idx + 1) % 2],
                       "elevation": tf[idx % 2], "img_id": f"PAT_{p + 1}_{lesion_no}_{100 + idx}.png",
                       "biopsed": "True" if diagnosis in ("BCC", "MEL", "SCC") else tf[idx % 3 == 0]}
                if p % 3 == 2:
                    row.update(dict.fromkeys(PAD_QUESTIONNAIRE, ""))
                rows.append(row)
                idx += 1
    return rows


def build_pad_ufes20(base: Path, layout: str = "mendeley") -> Path:
    """metadata.csv + images as downloaded: ``mendeley`` = images/imgs_part_{1,2,3}/ (round robin),
    ``flat`` = every image in images/."""
    root = base / f"pad_ufes20_{layout}"
    root.mkdir(parents=True)
    rows = pad_ufes20_rows()
    for i, row in enumerate(rows):
        folder = root / "images" / (f"imgs_part_{1 + i % 3}" if layout == "mendeley" else "")
        write_image(folder / row["img_id"], seed=3000 + i)
    pd.DataFrame(rows, columns=PAD_HEADER).to_csv(root / "metadata.csv", index=False)
    return root
