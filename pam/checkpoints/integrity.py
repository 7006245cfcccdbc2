"""Checksums for checkpoint folders: a ``manifest.json`` of sha256 and size per file.

``write_manifest(folder)`` is called last inside the atomic directory, so a folder that carries a
manifest was written to the end. A sub-folder that has its own manifest (a PAM model folder inside
a training checkpoint) is covered through that manifest's own hash and verified recursively, so
large weight files are hashed once. ``verify_manifest(folder)`` raises
:class:`CheckpointCorruptError` naming the folder, the file and what is wrong. Files added after
the manifest (DeepSpeed's sharded state, written after the rename) are not checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT = "pam-manifest-v1"
_CHUNK = 1 << 22


class CheckpointCorruptError(ValueError):
    """A checkpoint folder is incomplete or its files differ from their recorded checksums."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _covered_files(folder: Path) -> list[str]:
    """Relative paths of the files this folder's manifest lists (nested manifests stand for their folder)."""
    out = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if here != folder and MANIFEST in files:
            out.append((here / MANIFEST).relative_to(folder).as_posix())
            dirs[:] = []  # covered by that manifest
            continue
        dirs.sort()
        out.extend(
            (here / f).relative_to(folder).as_posix() for f in sorted(files) if not (here == folder and f == MANIFEST)
        )
    return sorted(out)


def write_manifest(folder: str | Path) -> Path:
    """Hash every file of ``folder`` into ``folder/manifest.json``; call it after the last file is written."""
    folder = Path(folder)
    files = {
        rel: {"sha256": sha256_file(folder / rel), "size": (folder / rel).stat().st_size}
        for rel in _covered_files(folder)
    }
    path = folder / MANIFEST
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"format": FORMAT, "files": files}, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def verify_manifest(folder: str | Path) -> None:
    """Check every listed file's size and sha256, recursing into nested manifests; raise naming the file."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointCorruptError(f"{folder}: no {MANIFEST} (the checkpoint was not written to the end)")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(files, dict):
            raise ValueError(f"unknown format {manifest.get('format')!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointCorruptError(f"{path}: unreadable manifest ({e})") from e
    for rel, entry in sorted(files.items()):
        target = folder / rel
        if not target.is_file():
            raise CheckpointCorruptError(f"{folder}: file {rel} is missing")
        size = target.stat().st_size
        if size != entry["size"]:
            raise CheckpointCorruptError(f"{folder}: file {rel} has {size} bytes, the manifest says {entry['size']}")
        if sha256_file(target) != entry["sha256"]:
            raise CheckpointCorruptError(f"{folder}: file {rel} does not match its sha256 checksum")
        if Path(rel).name == MANIFEST:
            verify_manifest(target.parent)


def has_manifest(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()
