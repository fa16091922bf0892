"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

Each writer fills a temp file in the target's directory (so the rename stays on one file
system) and `os.replace`s it over the target; on any error the temp file is removed and the
target is left as it was. Used for every result a run, sweep, report or benchmark writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temp path beside `path`; renames it over `path` if the block succeeds.

    The temp file is created empty with mode 0644 (mkstemp's 0600 would make results
    unreadable to other users) and keeps `path`'s extension, so writers that look at it
    (matplotlib, numpy) pick the right format.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.fchmod(fd, 0o644)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, *, strict: bool = False, **dump_kwargs) -> None:
    """Writes `obj` as indented JSON (non-JSON values via `str`) to `path` atomically.

    `strict=True` refuses NaN/inf (plain JSON readers reject them); `dump_kwargs` go to
    `json.dumps` (e.g. `sort_keys=True`).
    """
    dump_kwargs = {"indent": 2, "default": str, **dump_kwargs}
    write_text(path, json.dumps(obj, allow_nan=not strict, **dump_kwargs) + "\n")


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Saves a matplotlib figure to `path` (format from its extension) atomically."""
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=dpi)


def save_npz(path: str | os.PathLike, **arrays) -> None:
    """`np.savez(path, **arrays)`, atomically (an interrupted cache write leaves no stub)."""
    import numpy as np

    with replacing(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
