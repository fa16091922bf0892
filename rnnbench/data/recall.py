"""Delayed keyword recall: a spoken command word, then `delay_s` seconds of distractors.

  load("synth_recall", delay_s=1.0) -> Dataset (task "classify", 10 classes: the command words)

Every example is the 1-s `synth_commands` clip of one of the 10 command words (yes, no, up, down,
left, right, on, off, stop, go: the label), followed by exactly `delay_s` seconds of distractor
audio: 1-s `synth_commands` clips of the other 25 words (`_unknown_`) and noise-only clips
(`_silence_`), drawn uniformly, concatenated and cut to round(delay_s * 16000) samples (so the
last distractor may be cut mid-word). With `distractors="any"` the distractors may also be
command words too (the label stays the FIRST word), which punishes a model that reports the
most recent keyword. Every clip is 1 + delay_s seconds long; the label must
be read out from the last state, 100 * delay_s log-mel frames after the keyword clip ends.

Splits draw from the matching `synth_commands` split (train / validation / test voices are
disjoint, so test measures unseen voices). Examples are mixed lazily on access, deterministically
from (seed, split, index): nothing is stored but the base corpus. The training split is large by
default (100,000 virtual examples, ~1,560 batches of 64 per epoch) so that a run of the usual
step budgets never sees the same keyword + distractor mix twice: with a fixed 5,000-example set
a tanh-RNN was measured to memorise the training set. (Each keyword clip still recurs, with fresh
distractors, ~20 times per epoch.)

Base corpus: `synth_commands` at its default sizes (6000/1200/1200 clips, cached after the first
build; see rnnbench/data/synth.py), i.e. 5,000 train keyword clips and 1,000 train distractors.
"""

from __future__ import annotations

import functools

import numpy as np

from rnnbench.data import SAMPLE_RATE, Dataset, Split

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
DISTRACTORS = ("other", "any")


class MixedAudio:
    """A read-only list of int16 clips, example i mixed on access from (seed, split, i)."""

    def __init__(
        self,
        keywords: list[np.ndarray],
        keyword_labels: np.ndarray,
        distractors: list[np.ndarray],
        n: int,
        delay_samples: int,
        seed: int,
        split_id: int,
    ):
        self.keywords, self.distractors = keywords, distractors
        self.n, self.delay, self.seed, self.split_id = n, delay_samples, seed, split_id
        rng = np.random.default_rng([seed, split_id, 7919])
        self.keyword_index = rng.integers(0, len(keywords), size=n)
        self.labels = np.asarray(keyword_labels, np.int32)[self.keyword_index]
        self.length = SAMPLE_RATE + delay_samples

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return (self[i] for i in range(self.n))

    @functools.lru_cache(maxsize=512)
    def _mix(self, i: int) -> np.ndarray:
        out = np.zeros(self.length, np.int16)
        kw = self.keywords[self.keyword_index[i]][:SAMPLE_RATE]
        out[: kw.shape[0]] = kw
        pos = SAMPLE_RATE
        if self.delay:
            rng = np.random.default_rng([self.seed, self.split_id, i])
            while pos < self.length:
                d = self.distractors[int(rng.integers(len(self.distractors)))]
                take = min(d.shape[0], self.length - pos)
                out[pos : pos + take] = d[:take]
                pos += max(take, 1)
        return out

    def __getitem__(self, i):
        i = int(i)
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self._mix(i)


def synth_recall(
    *,
    data_dir=None,
    protocol: int = 12,
    seed: int = 0,
    cache_dir=None,
    delay_s: float = 1.0,
    train_size: int = 100_000,
    validation_size: int = 600,
    test_size: int = 600,
    distractors: str = "other",
    base_options: dict | None = None,
) -> Dataset:
    """Delayed keyword recall built from `synth_commands` (see module docstring). `data_dir` is
    ignored; `protocol` must be 12 (the 10 command words); `base_options` go to synth_commands."""
    from rnnbench import data as data_lib
    from rnnbench.data.synth import COMMANDS_10

    if protocol != 12:
        raise ValueError(
            f"synth_recall: protocol must be 12 (the 10 command words), got {protocol!r}"
        )
    if not isinstance(delay_s, (int, float)) or delay_s < 0:
        raise ValueError(f"synth_recall: delay_s must be a number >= 0 (seconds), got {delay_s!r}")
    if distractors not in DISTRACTORS:
        raise ValueError(
            f"synth_recall: distractors must be one of {DISTRACTORS}, got {distractors!r}"
        )
    sizes = {"train": train_size, "validation": validation_size, "test": test_size}
    for k, v in sizes.items():
        if not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"synth_recall: {k}_size must be a positive int, got {v!r}")
    base = data_lib.load(
        "synth_commands", protocol=12, seed=seed, cache_dir=cache_dir, **(base_options or {})
    )
    first_word = base.classes.index(COMMANDS_10[0])
    delay = int(round(delay_s * SAMPLE_RATE))
    splits = {}
    for name, n in sizes.items():
        src = base.splits[name]
        is_kw = src.labels >= first_word
        kw_idx = np.flatnonzero(is_kw)
        pool = range(len(src.audio)) if distractors == "any" else np.flatnonzero(~is_kw)
        audio = MixedAudio(
            [src.audio[i] for i in kw_idx],
            src.labels[kw_idx] - first_word,
            [src.audio[i] for i in pool],
            int(n),
            delay,
            seed,
            SPLIT_IDS[name],
        )
        speakers = [src.speakers[kw_idx[j]] for j in audio.keyword_index]
        splits[name] = Split(audio=audio, labels=audio.labels, transcripts=None, speakers=speakers)
    return Dataset("synth_recall", "classify", list(COMMANDS_10), splits)
