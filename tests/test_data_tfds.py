"""`tfds:speech_commands` (rnnbench/data/tfds.py) against tensorflow-datasets' mock data.

tfds.testing.mock_data replaces the download and the stored examples with random ones built
from the dataset's real features (int16 audio, the 12 TFDS label names), so nothing is fetched.
"""

import numpy as np
import pytest

from rnnbench import data
from rnnbench.data.speech_commands import CLASSES_12


def test_rejects_protocol_35():  # checked before tensorflow-datasets is imported
    with pytest.raises(ValueError, match="tfds:speech_commands only provides protocol 12, got 35"):
        data.load("tfds:speech_commands", protocol=35)


@pytest.fixture(scope="module")
def tfds():
    tfds = pytest.importorskip(
        "tensorflow_datasets", reason="tensorflow-datasets is not installed (the tfds extra)"
    )
    pytest.importorskip(
        "tensorflow",
        reason="tensorflow is not installed: tfds.testing.mock_data and as_dataset "
        "need it (tensorflow-cpu, in the tfds extra)",
    )
    return tfds


def test_speech_commands_from_mock_data(tfds, tmp_path):
    n = 7
    with tfds.testing.mock_data(num_examples=n):
        ds = data.load("tfds:speech_commands", data_dir=str(tmp_path))
        builder = tfds.builder("speech_commands", data_dir=str(tmp_path))
        names = builder.info.features["label"].names
        raw = {
            s: list(tfds.as_numpy(builder.as_dataset(split=s)))
            for s in ("train", "validation", "test")
        }
    assert ds.name == "tfds:speech_commands" and ds.task == "classify"
    assert ds.classes == CLASSES_12
    assert sorted(names) == sorted(CLASSES_12) and names != CLASSES_12  # TFDS orders differently
    assert set(ds.splits) == {"train", "validation", "test"}
    for split, sp in ds.splits.items():
        assert len(sp) == n and sp.speakers == ["unknown"] * n
        assert sp.labels.dtype == np.int32 and sp.labels.shape == (n,)
        for a, label, ex in zip(sp.audio, sp.labels, raw[split]):
            assert a.dtype == np.int16 and a.ndim == 1
            np.testing.assert_array_equal(a, ex["audio"])
            # remapped by name: the same word in this package's class order
            assert ds.classes[label] == names[int(ex["label"])]
    assert len({a.shape[0] for sp in ds.splits.values() for a in sp.audio}) > 1  # variable length
