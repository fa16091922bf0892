"""``tfds:speech_commands`` through tensorflow-datasets (optional extra ``rnnbench[tfds]``).

TFDS's ``speech_commands`` is the 12-class protocol with its own official splits;
its labels are remapped by name to this package's class order (``_silence_,
_unknown_, yes, no, up, down, left, right, on, off, stop, go``). TFDS does not expose
speaker ids, so ``speakers`` is "unknown". ``data_dir`` is passed to ``tfds.load``.
"""

from __future__ import annotations

import numpy as np

from rnnbench.data import Dataset, Split
from rnnbench.data.speech_commands import CLASSES_12

_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


def _import_tfds():
    try:
        import tensorflow  # noqa: F401  (tfds.builder exists only with tensorflow present)
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "tfds:speech_commands needs tensorflow-datasets and tensorflow "
            "(tensorflow-cpu); install them with pip install 'rnnbench[tfds]'"
        ) from e
    return tfds


def load_tfds_speech_commands(
    *, data_dir=None, protocol: int = 12, seed: int = 0, cache_dir=None, download: bool = True
) -> Dataset:
    """TFDS speech_commands -> Dataset (task "classify", 12 classes)."""
    if protocol != 12:
        raise ValueError(f"tfds:speech_commands only provides protocol 12, got {protocol!r}")
    tfds = _import_tfds()
    builder = tfds.builder("speech_commands", data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    names = builder.info.features["label"].names
    remap = np.array([CLASSES_12.index(n) for n in names], np.int32)
    splits = {}
    for ours, theirs in _SPLITS.items():
        audio, labels = [], []
        for ex in tfds.as_numpy(builder.as_dataset(split=theirs)):
            audio.append(np.asarray(ex["audio"], np.int16).reshape(-1))
            labels.append(remap[int(ex["label"])])
        splits[ours] = Split(
            audio=audio,
            labels=np.array(labels, np.int32),
            transcripts=None,
            speakers=["unknown"] * len(audio),
        )
    return Dataset("tfds:speech_commands", "classify", list(CLASSES_12), splits)
