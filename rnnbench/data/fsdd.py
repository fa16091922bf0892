"""Free Spoken Digit Dataset (FSDD): isolated digits and connected digit strings.

Expected layout: ``DIR/recordings/{digit}_{speaker}_{index}.wav`` (8 kHz mono,
resampled to 16 kHz); ``DIR`` may also be the ``recordings`` folder itself. If
``data_dir`` is None, ``$RNNBENCH_FSDD_DIR`` is used. WAVs whose names do not
match the pattern are skipped with one warning counting them.

``fsdd`` (classify, classes "zero".."nine" = ids 0..9):
- split="official": takes (index) 0-4 test (the official FSDD test set), 5-9
  validation (carved out of the official train set), 10-49 train.
- split="speakers": leave speakers out, all takes. ``test_speakers`` /
  ``validation_speakers`` (lists) default to one speaker each, drawn from the sorted
  speaker list with ``seed``; the rest train.

``fsdd_digits`` (ctc): connected digit strings of 1-7 digits (uniform), each made
by concatenating FSDD recordings of ONE speaker (chosen uniformly) with gaps of
50-250 ms, plus 100-300 ms of leading/trailing gap; gaps are filled with white
noise at -70..-55 dBFS so they are not digital silence. Recordings come from the
official takes of the split (test 0-4, validation 5-9, train 10-49), so takes are
disjoint across splits. Transcripts: "three one four" (character alphabet).
Utterance i is a pure function of (seed, split, i). Default sizes: train 3000,
validation 300, test 300.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

from rnnbench.data import CTC_ALPHABET, DIGIT_WORDS, SAMPLE_RATE, Dataset, Split
from rnnbench.data.audio import read_many, to_int16, with_skipped

PATTERN = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")
LAYOUT = "DIR/recordings/{digit}_{speaker}_{index}.wav (e.g. recordings/7_jackson_32.wav)"
SPLITS = ("train", "validation", "test")
OFFICIAL_TAKES = {"test": range(5), "validation": range(5, 10), "train": range(10, 10**9)}


def scan(data_dir) -> list[tuple[str, int, str, int]]:
    """-> sorted [(path, digit, speaker, take)] of the matching WAVs in the FSDD layout."""
    data_dir = data_dir if data_dir is not None else os.environ.get("RNNBENCH_FSDD_DIR")
    if data_dir is None or not os.path.isdir(data_dir):
        raise ValueError(
            f"fsdd: data_dir {data_dir!r} is not a directory (set data_dir or "
            f"$RNNBENCH_FSDD_DIR); expected {LAYOUT}"
        )
    rec = os.path.join(data_dir, "recordings")
    rec = rec if os.path.isdir(rec) else data_dir
    entries, unmatched = [], []
    for f in sorted(os.listdir(rec)):
        if not f.lower().endswith(".wav"):
            continue
        m = PATTERN.match(f)
        if m is None:
            unmatched.append(f)
            continue
        entries.append((os.path.join(rec, f), int(m.group(1)), m.group(2), int(m.group(3))))
    if unmatched:
        warnings.warn(
            f"fsdd: skipped {len(unmatched)} WAV file(s) in {rec} not named "
            f"{{digit}}_{{speaker}}_{{index}}.wav (first: {unmatched[0]})",
            stacklevel=3,
        )
    if not entries:
        raise ValueError(f"fsdd: no recordings found in {rec}; expected {LAYOUT}")
    return entries


def _assign(entries, split: str, seed: int, test_speakers, validation_speakers) -> dict[str, list]:
    out = {s: [] for s in SPLITS}
    if split == "official":
        for e in entries:
            out[next(s for s in SPLITS if e[3] in OFFICIAL_TAKES[s])].append(e)
        return out
    if split != "speakers":
        raise ValueError(f"fsdd: split must be 'official' or 'speakers', got {split!r}")
    speakers = sorted({e[2] for e in entries})
    if test_speakers is None or validation_speakers is None:
        if len(speakers) < 3:
            raise ValueError(f"fsdd: split='speakers' needs >= 3 speakers, found {speakers}")
        perm = np.random.default_rng([seed, 2]).permutation(speakers).tolist()
        test_speakers = [perm[0]] if test_speakers is None else test_speakers
        validation_speakers = (
            [s for s in perm if s not in test_speakers][0:1]
            if validation_speakers is None
            else validation_speakers
        )
    test_speakers, validation_speakers = set(test_speakers), set(validation_speakers)
    unknown = (test_speakers | validation_speakers) - set(speakers)
    if unknown or test_speakers & validation_speakers:
        raise ValueError(
            f"fsdd: test/validation speakers must be disjoint members of {speakers}; "
            f"got test={sorted(test_speakers)}, "
            f"validation={sorted(validation_speakers)}"
        )
    for e in entries:
        s = (
            "test"
            if e[2] in test_speakers
            else "validation"
            if e[2] in validation_speakers
            else "train"
        )
        out[s].append(e)
    return out


def load_fsdd(
    *,
    data_dir=None,
    protocol: int = 12,
    seed: int = 0,
    cache_dir=None,
    split: str = "official",
    test_speakers=None,
    validation_speakers=None,
    on_error: str = "raise",
) -> Dataset:
    """FSDD isolated digits -> Dataset (task "classify"); ``protocol`` is ignored."""
    parts = _assign(scan(data_dir), split, seed, test_speakers, validation_speakers)
    splits, skipped = {}, []
    for s in SPLITS:
        audio, kept, bad = read_many([e[0] for e in parts[s]], on_error=on_error)
        skipped += bad
        splits[s] = Split(
            audio=audio,
            labels=np.array([parts[s][i][1] for i in kept], np.int32),
            transcripts=None,
            speakers=[parts[s][i][2] for i in kept],
        )
    return with_skipped(Dataset("fsdd", "classify", list(DIGIT_WORDS), splits), skipped)


def _string(rng, pool: dict, speakers: list[str]) -> tuple[np.ndarray, str, str]:
    digits = rng.integers(0, 10, size=int(rng.integers(1, 8)))
    ok = [sp for sp in speakers if all(pool[sp].get(int(d)) for d in digits)]
    if not ok:
        raise ValueError(f"fsdd_digits: no speaker has recordings of all digits {digits.tolist()}")
    sp = ok[rng.integers(len(ok))]
    floor = 10 ** (rng.uniform(-70, -55) / 20)

    def gap(lo, hi):
        n = int(rng.uniform(lo, hi) * SAMPLE_RATE)
        return (rng.standard_normal(n) * floor).astype(np.float32)

    pieces = [gap(0.1, 0.3)]
    for d in digits:
        takes = pool[sp][int(d)]
        pieces.append(takes[rng.integers(len(takes))].astype(np.float32) / 32768.0)
        pieces.append(gap(0.05, 0.25))
    pieces[-1] = gap(0.1, 0.3)
    return to_int16(np.concatenate(pieces)), " ".join(DIGIT_WORDS[int(d)] for d in digits), sp


def load_fsdd_digits(
    *,
    data_dir=None,
    protocol: int = 12,
    seed: int = 0,
    cache_dir=None,
    train_size: int = 3000,
    validation_size: int = 300,
    test_size: int = 300,
    on_error: str = "raise",
) -> Dataset:
    """Connected FSDD digit strings -> Dataset (task "ctc"); see module docstring."""
    parts = _assign(scan(data_dir), "official", seed, None, None)
    sizes = {"train": train_size, "validation": validation_size, "test": test_size}
    splits, skipped = {}, []
    for split_id, s in enumerate(SPLITS):
        if not isinstance(sizes[s], (int, np.integer)) or sizes[s] < 0:
            raise ValueError(f"fsdd_digits: {s}_size must be a non-negative int, got {sizes[s]!r}")
        audio, kept, bad = (
            read_many([e[0] for e in parts[s]], on_error=on_error) if sizes[s] else ([], [], [])
        )
        skipped += bad
        pool: dict[str, dict[int, list]] = {}
        for a, i in zip(audio, kept):
            _, digit, sp, _ = parts[s][i]
            pool.setdefault(sp, {}).setdefault(digit, []).append(a)
        if sizes[s] and not pool:
            raise ValueError(
                f"fsdd_digits: no recordings for the {s} split (takes "
                f"{OFFICIAL_TAKES[s].start}-{min(OFFICIAL_TAKES[s].stop, 49) - 1})"
            )
        speakers = sorted(pool)
        items = [
            _string(np.random.default_rng([seed, split_id, i]), pool, speakers)
            for i in range(sizes[s])
        ]
        splits[s] = Split(
            audio=[x[0] for x in items],
            labels=None,
            transcripts=[x[1] for x in items],
            speakers=[x[2] for x in items],
        )
    return with_skipped(Dataset("fsdd_digits", "ctc", list(CTC_ALPHABET), splits), skipped)
