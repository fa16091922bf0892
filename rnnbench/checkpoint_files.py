"""A checksum manifest for each checkpoint directory, checked before orbax reads it.

A checkpoint damaged after it was written (truncated or overwritten files, `_METADATA`
emptied, an item directory deleted) is found by comparing its files with the manifest
written beside them when the save finished, without handing the damaged files to orbax,
whose failed reads leave tasks that print tracebacks from its event loop threads. A
checkpoint without a manifest (written by an older version, or killed between the save and
the manifest) is left to orbax to judge, as before.
"""

from __future__ import annotations

import hashlib
import json
import os

from rnnbench import atomic

MANIFEST = "rnnbench_files.json"


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(step_dir: str) -> list[str]:
    """Paths of the files under `step_dir` relative to it, sorted, the manifest excluded."""
    out = []
    for root, _, names in os.walk(step_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def write_manifest(step_dir: str) -> None:
    """Records the size and SHA-256 of every file under `step_dir` in `step_dir/MANIFEST`."""
    files = {
        rel: {
            "bytes": os.path.getsize(os.path.join(step_dir, rel)),
            "sha256": _digest(os.path.join(step_dir, rel)),
        }
        for rel in _files(step_dir)
    }
    atomic.write_json(os.path.join(step_dir, MANIFEST), {"files": files}, indent=1)


def damage(step_dir: str) -> str | None:
    """What differs between `step_dir` and its manifest (one line naming the first file that
    is missing, has another size or other contents), or None if nothing does or there is no
    manifest to compare with."""
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its file manifest {path} cannot be read ({type(e).__name__})"
    for rel, want in sorted(files.items()):
        p = os.path.join(step_dir, rel)
        if not os.path.isfile(p):
            return f"{rel} is missing"
        size = os.path.getsize(p)
        if size != want["bytes"]:
            return f"{rel} has {size} bytes, {want['bytes']} when it was written"
        if _digest(p) != want["sha256"]:
            return f"{rel} has other contents than when it was written (SHA-256 differs)"
    return None
