"""The image data path (issue 18): uint8 cached, converted to float and augmented in place in
one buffer -- values identical to the plain out-of-place formulas -- and deterministic under a seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.checks.fixtures import build_csv_manifest
from core.masks import MissingSpec
from datasets import create_dataset
from datasets.imaging.decode import IMAGENET_MEAN, IMAGENET_STD
from datasets.preparation import prepare_data


def reference_load(stored: np.ndarray, params: np.ndarray, normalize: str) -> np.ndarray:
    """The data path written out of place, step by step (what it computed before issue 18)."""
    x = torch.from_numpy(stored.astype(np.float32) / 255.0)
    p = torch.from_numpy(params).to(x.dtype)
    angle = torch.deg2rad(p[:, 2])
    sx = torch.where(p[:, 0] > 0.5, -1.0, 1.0).to(x.dtype)
    sy = torch.where(p[:, 1] > 0.5, -1.0, 1.0).to(x.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sx, -sin * sy, torch.zeros_like(cos)], 1),
                         torch.stack([sin * sx, cos * sy, torch.zeros_like(cos)], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), mode="bilinear",
                      padding_mode="zeros", align_corners=False)
    x = x * p[:, 3].view(-1, 1, 1, 1)
    gray = x.mean(dim=1, keepdim=True) if x.shape[1] != 3 else 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * p[:, 4].view(-1, 1, 1, 1) + mean).clamp(0.0, 1.0).numpy()
    if normalize == "imagenet":
        if x.shape[1] == 3:
            return (x - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
        return (x - IMAGENET_MEAN.mean()) / IMAGENET_STD.mean()
    return x


@pytest.fixture(scope="module")
def manifest_root(tmp_path_factory):
    return build_csv_manifest(tmp_path_factory.mktemp("manifest"))


@pytest.mark.parametrize("normalize, channels", [("imagenet", 3), ("unit", 3), ("imagenet", 1)])
def test_in_place_path_equals_the_reference(manifest_root, normalize, channels, monkeypatch):
    ds = create_dataset("csv_manifest", str(manifest_root), image_size=32, augment=True, normalize=normalize,
                        channels=channels)
    table = ds.load_table()
    source = table.images
    view = next(iter(source.paths))
    rows = np.flatnonzero([p is not None for p in source.paths[view]])[:6]
    stored = np.stack([source._get(source.paths[view][r]) for r in rows])
    params = np.array([[1, 0, 12.0, 1.08, 0.93], [0, 1, -7.5, 0.95, 1.1]] * 3)[:len(rows)]
    monkeypatch.setattr(source, "_params", lambda r, v: params)
    got = source.load(rows, view, train=True)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, reference_load(stored, params, normalize))


def test_batches_are_deterministic_under_a_seed(manifest_root):
    def batches() -> list[np.ndarray]:
        ds = create_dataset("csv_manifest", str(manifest_root), image_size=32, augment=True)
        data = prepare_data(ds, ds.load_table(), MissingSpec("mixed", 0.3), seed=0)
        torch.manual_seed(7)
        train = data.splits["train"]
        rng = np.random.default_rng(0)
        out = []
        for _ in range(3):
            b = train.batch(rng.permutation(len(train))[:8], train=True)
            out += [x.numpy().copy() for x in b.images.values()]
        return out

    first, second = batches(), batches()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(first[0], x) for x in first[1:])  # augmentation does vary
