"""Fingerprints of what a run computes with: the code, the data and the pretrained weights.

They are part of :meth:`RunSpec.identity`, so the resume key changes whenever any of them does:
editing a method's file reruns that method's cells only, editing the training loop reruns every
cell, another ``--data-root`` (or one changed label) reruns every cell, and so do other weights.

* **code**: SHA-256 over the source files a cell's result depends on -- the import closure (within
  this project's packages) of the method's module, the dataset's module and the harness modules
  that turn data into batches, train, predict and evaluate (:data:`HARNESS_ROOTS`).  Tracking,
  the CLI and the leaderboard are outside the closure: they record results, they cannot change one.
* **data**: the dataset's :meth:`~datasets.base.BenchmarkDataset.fingerprint` (options, metadata
  file bytes, a listing of every other file with size and mtime; the synthetic generator's version).
* **weights**: with ``pretrained_file``, SHA-256 of that file; with ``pretrained: true`` (by
  name), ``<timm pretrained tag>:<SHA-256 of the HF-cache file>`` when the cache holds it, else the
  tag alone (``<tag>:uncached``: the file is not known before its first download, so a run whose
  weights were downloaded on the way keys as ``uncached`` until the next grid build); "" for
  randomly initialised encoders.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import subprocess
from functools import lru_cache
from pathlib import Path

from benchmark.config.schema import DatasetSection
from core.encoders import EncoderConfig, cached_pretrained_file, pretrained_tag
from datasets import create_dataset, get_dataset_class
from methods import get_method_class

PROJECT_PACKAGES = ("core", "methods", "datasets", "benchmark")
# The harness code every cell runs through; the method's and the dataset's modules are added per cell.
HARNESS_ROOTS = ("benchmark.cells.evaluate", "benchmark.training.loop", "datasets.preparation", "datasets.base")
REPO = Path(__file__).resolve().parents[2]


def module_file(name: str) -> Path | None:
    """The source file of a project module (a package's ``__init__.py``), None outside the project."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def imported_modules(path: Path, name: str) -> set[str]:
    """Project modules imported anywhere in a file (``from a.b import c`` may name module a.b.c)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PROJECT_PACKAGES}


@lru_cache(maxsize=None)
def import_closure(roots: tuple[str, ...]) -> tuple[Path, ...]:
    """Every project source file reachable by imports from ``roots``.  A package's ``__init__``
    counts only where it is imported by name (its re-exports are conveniences, not computation)."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name)
        if path is None:
            continue
        seen[name] = path
        todo.extend(sorted(imported_modules(path, name)))
    return tuple(sorted(set(seen.values())))


def files_digest(paths: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
        digest.update(f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def code_fingerprint(method: str | None, dataset: str) -> str:
    """Hash of the sources a cell of ``method`` (None: the oracle) on ``dataset`` depends on."""
    roots = list(HARNESS_ROOTS) + [get_dataset_class(dataset).__module__]
    if method is not None:
        roots.append(get_method_class(method).__module__)
    return files_digest(import_closure(tuple(sorted(roots))))


@lru_cache(maxsize=None)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, cached per (path, size, mtime) so a grid hashes big weights once."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def weights_digest(path: str) -> str:
    st = Path(path).stat()
    return file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def weights_fingerprint(encoders: EncoderConfig) -> str:
    """Hash of the pretrained image weights ("" for a randomly initialised encoder)."""
    image = encoders.image
    if image.pretrained_file:
        return weights_digest(image.pretrained_file)
    if not image.pretrained:
        return ""
    cached = cached_pretrained_file(image.model)
    return f"{pretrained_tag(image.model)}:{weights_digest(cached) if cached else 'uncached'}"


@lru_cache(maxsize=None)
def cached_data_fingerprint(section_json: str) -> str:
    section = json.loads(section_json)
    dataset = create_dataset(section["name"], section["root"], **section["options"])
    return hashlib.sha256(json.dumps(dataset.fingerprint(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(section: DatasetSection) -> str:
    """Hash of the dataset's content (computed once per process and dataset section)."""
    payload = {"name": section.name, "root": section.root, "options": section.options}
    return cached_data_fingerprint(json.dumps(payload, sort_keys=True, default=str))


def run_fingerprint(method: str | None, section: DatasetSection, encoders: EncoderConfig) -> dict[str, str]:
    """The code, data and weights fingerprints of one cell (the oracle has no weights)."""
    return {"code": code_fingerprint(method, section.name), "data": data_fingerprint(section),
            "weights": weights_fingerprint(encoders) if method is not None else ""}


@lru_cache(maxsize=None)
def git_commit() -> str:
    """The commit of this checkout ("unknown" outside a git work tree or without git).  Logged on
    every run explicitly: MLflow's own source tags are missing when a Ray worker starts the run."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    head = out.stdout.strip()
    return head if out.returncode == 0 and head else "unknown"
