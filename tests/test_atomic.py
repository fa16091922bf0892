"""rnnbench.atomic: a failed write leaves the old file and no temp file behind."""

import json
import math
import os
import stat

import numpy as np
import pytest

from rnnbench import atomic


def test_write_text_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "table.md"  # the directory is created
    atomic.write_text(path, "old\n")
    atomic.write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert sorted(os.listdir(path.parent)) == ["table.md"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "final.json"
    atomic.write_json(path, {"test_accuracy": 0.9})

    class Unserialisable:
        def __str__(self):
            raise RuntimeError("boom while writing")

    with pytest.raises(RuntimeError, match="boom"):
        atomic.write_json(path, {"test_accuracy": Unserialisable()})
    assert json.loads(path.read_text()) == {"test_accuracy": 0.9}
    assert os.listdir(tmp_path) == ["final.json"]


def test_strict_json_refuses_nan(tmp_path):
    path = tmp_path / "report.json"
    with pytest.raises(ValueError):
        atomic.write_json(path, {"x": math.nan}, strict=True)
    assert not path.exists() and os.listdir(tmp_path) == []
    atomic.write_json(path, {"x": math.nan, "b": 1, "a": 2}, sort_keys=True)
    text = path.read_text()
    assert "NaN" in text and text.index('"a"') < text.index('"b"')


def test_save_npz_and_figure_round_trip(tmp_path):
    atomic.save_npz(tmp_path / "cache.npz", audio=np.arange(5, dtype=np.int16))
    with np.load(tmp_path / "cache.npz") as z:
        np.testing.assert_array_equal(z["audio"], np.arange(5))
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    atomic.save_figure(fig, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["cache.npz", "curves.png"]
