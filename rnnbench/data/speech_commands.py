"""Google Speech Commands (v0.01 / v0.02) from an extracted directory.

Expected layout::

    DIR/<word>/<speaker>_nohash_<n>.wav   one folder per word
    DIR/validation_list.txt                official validation files ("word/file.wav" per line)
    DIR/testing_list.txt                   official test files
    DIR/_background_noise_/*.wav           long noise recordings (needed for protocol 12)

Splits are the official ones: files in validation_list.txt / testing_list.txt,
everything else is train. Files named in a list but absent (a partial copy) are
skipped with one warning counting them.

Protocol 12 (TensorFlow ``input_data.py`` recipe): classes ``_silence_, _unknown_,
yes, no, up, down, left, right, on, off, stop, go``. Per split, with
``n`` = number of the 10 command-word clips, ``ceil(n * unknown_percentage / 100)``
clips of the other words (shuffled with ``seed``) become ``_unknown_`` and
``ceil(n * silence_percentage / 100)`` ``_silence_`` clips are 1-second segments
cut at random offsets from random ``_background_noise_`` files, scaled by a volume
uniform in [0, 1] (both percentages default to 10). Protocol 35: one class per word
folder found (35 for v0.02, 30 for v0.01), sorted alphabetically; no silence/unknown.

Unreadable, empty or non-finite WAVs raise an error naming the file (``on_error="skip"``
skips them with one counting warning instead, listed in the dataset's ``skipped_files``).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from rnnbench.data import SAMPLE_RATE, Dataset, Split
from rnnbench.data.audio import read_many, read_wav, to_int16, with_skipped

COMMANDS_10 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
CLASSES_12 = ["_silence_", "_unknown_"] + COMMANDS_10
LAYOUT = (
    "DIR/<word>/*.wav (one folder per word), DIR/validation_list.txt, "
    "DIR/testing_list.txt and DIR/_background_noise_/*.wav"
)
SPLITS = ("train", "validation", "test")


def _speaker(rel: str) -> str:
    base = os.path.basename(rel)
    return base.split("_nohash_")[0] if "_nohash_" in base else os.path.splitext(base)[0]


def _read_list(path: str) -> set[str]:
    with open(path) as f:
        return {line.strip().replace("\\", "/") for line in f if line.strip()}


def scan(data_dir: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """-> ({split: [relative wav paths]}, {relative path: word}) for the files present."""
    if data_dir is None or not os.path.isdir(data_dir):
        raise ValueError(
            f"speech_commands: data_dir {data_dir!r} is not a directory; expected {LAYOUT}"
        )
    lists = {}
    for split, fname in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        p = os.path.join(data_dir, fname)
        if not os.path.isfile(p):
            raise ValueError(f"speech_commands: missing {p}; expected {LAYOUT}")
        lists[split] = _read_list(p)
    words = sorted(
        d
        for d in os.listdir(data_dir)
        if not d.startswith("_")
        and not d.startswith(".")
        and os.path.isdir(os.path.join(data_dir, d))
    )
    present: dict[str, str] = {}
    for w in words:
        for f in sorted(os.listdir(os.path.join(data_dir, w))):
            if f.lower().endswith(".wav"):
                present[f"{w}/{f}"] = w
    if not present:
        raise ValueError(
            f"speech_commands: no word folders with .wav files in {data_dir}; expected {LAYOUT}"
        )
    missing = sum(1 for rel in lists["validation"] | lists["test"] if rel not in present)
    if missing:
        warnings.warn(
            f"speech_commands: {missing} file(s) named in validation_list.txt/"
            f"testing_list.txt are absent from {data_dir} (partial copy); skipped",
            stacklevel=3,
        )
    files = {s: [] for s in SPLITS}
    for rel in present:
        s = (
            "test"
            if rel in lists["test"]
            else "validation"
            if rel in lists["validation"]
            else "train"
        )
        files[s].append(rel)
    return files, present


def _background(data_dir: str) -> list[np.ndarray]:
    bg_dir = os.path.join(data_dir, "_background_noise_")
    names = os.listdir(bg_dir) if os.path.isdir(bg_dir) else []
    paths = sorted(os.path.join(bg_dir, f) for f in names)
    paths = [p for p in paths if p.lower().endswith(".wav")]
    if not paths:
        raise ValueError(
            f"speech_commands: protocol 12 needs background noise WAVs in {bg_dir} "
            f"to cut _silence_ clips; expected {LAYOUT}"
        )
    noise = [read_wav(p) for p in paths]
    short = [p for p, x in zip(paths, noise) if x.shape[0] < SAMPLE_RATE]
    if short:
        raise ValueError(f"speech_commands: background noise file {short[0]} is shorter than 1 s")
    return noise


def _silence(rng: np.random.Generator, noise: list[np.ndarray], n: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        x = noise[rng.integers(len(noise))]
        off = int(rng.integers(0, x.shape[0] - SAMPLE_RATE + 1))
        seg = x[off : off + SAMPLE_RATE].astype(np.float32) / 32768.0
        out.append(to_int16(seg * rng.uniform(0.0, 1.0)))
    return out


def load_speech_commands(
    *,
    data_dir=None,
    protocol: int = 12,
    seed: int = 0,
    cache_dir=None,
    silence_percentage: float = 10.0,
    unknown_percentage: float = 10.0,
    on_error: str = "raise",
) -> Dataset:
    """Speech Commands directory -> Dataset (task "classify"); see module docstring."""
    if protocol not in (12, 35):
        raise ValueError(f"speech_commands: protocol must be 12 or 35, got {protocol!r}")
    files, word_of = scan(data_dir)
    if protocol == 35:
        classes = sorted(set(word_of.values()))
    else:
        classes = list(CLASSES_12)
        noise = _background(data_dir)
    splits, skipped = {}, []
    for split_id, s in enumerate(SPLITS):
        rng = np.random.default_rng([seed, split_id])
        if protocol == 35:
            chosen = files[s]
            labels = [classes.index(word_of[r]) for r in chosen]
        else:
            known = [r for r in files[s] if word_of[r] in COMMANDS_10]
            unknown = [r for r in files[s] if word_of[r] not in COMMANDS_10]
            unknown = [unknown[i] for i in rng.permutation(len(unknown))]
            n_unknown = min(len(unknown), math.ceil(len(known) * unknown_percentage / 100))
            chosen = known + unknown[:n_unknown]
            labels = [classes.index(word_of[r]) for r in known] + [1] * n_unknown
        audio, kept, bad = read_many([os.path.join(data_dir, r) for r in chosen], on_error=on_error)
        skipped += bad
        labels = [labels[i] for i in kept]
        speakers = [_speaker(chosen[i]) for i in kept]
        if protocol == 12:
            n_known = sum(1 for i in kept if word_of[chosen[i]] in COMMANDS_10)
            n_sil = math.ceil(n_known * silence_percentage / 100)
            audio += _silence(rng, noise, n_sil)
            labels += [0] * n_sil
            speakers += ["_silence_"] * n_sil
        splits[s] = Split(
            audio=audio, labels=np.array(labels, np.int32), transcripts=None, speakers=speakers
        )
    return with_skipped(Dataset("speech_commands", "classify", classes, splits), skipped)
