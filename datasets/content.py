"""A dataset folder's content digest: what makes two data roots the same data for a run's identity."""
from __future__ import annotations

import hashlib
from pathlib import Path

METADATA_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".yaml", ".yml", ".xlsx", ".xls")


def folder_digest(root: Path) -> str:
    """SHA-256 over a folder: metadata files by content, every other file by (path, size, mtime).

    Reading every image would cost minutes on a real dataset; its size and mtime change whenever a
    file is replaced, which is what a re-download or an edit does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.name.lower().endswith(METADATA_SUFFIXES):
            digest.update(f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
        else:
            st = path.stat()
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
