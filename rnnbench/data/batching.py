"""Padded, bucketed numpy batches for jitted training and evaluation.

Audio rows are zero padded to the smallest bucket (in samples) that holds the
longest clip of the batch, so jit sees a few shapes. CTC labels are padded with 0
(the blank) to one fixed length per stream: ``max_label_length`` or the longest
encoded transcript of the split rounded up to a multiple of 8.

Training stream: epoch e visits ``default_rng([seed, e]).permutation(N)`` in
batches of ``batch_size`` (the last incomplete batch of an epoch is dropped), so
batch k is a pure function of (seed, k) and ``start_step=k`` resumes without
touching the audio of earlier batches.

Spoken-language-understanding splits (``Split.meanings``) add the meaning when an
``encode_meaning`` is passed (e.g. ``meanings.synth_phrases_codec().encode``): ``intent``
[B] int32 and ``slots`` [B, S] int32, one value id per slot name (0 = none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from rnnbench.data import Split


def _check_buckets(split: Split, buckets) -> tuple[int, ...]:
    buckets = tuple(sorted(int(b) for b in buckets))
    if not buckets or buckets[0] <= 0:
        raise ValueError(
            f"buckets must be a non-empty tuple of positive sample counts, got {buckets!r}"
        )
    for i, a in enumerate(split.audio):
        if a.shape[0] > buckets[-1]:
            raise ValueError(
                f"example {i} has {a.shape[0]} samples, longer than the largest "
                f"bucket ({buckets[-1]}); add a larger bucket"
            )
    return buckets


def _encoded(split: Split, encode, max_label_length):
    if split.transcripts is None:
        return None, None
    if encode is None:
        raise ValueError("split has transcripts (CTC); pass encode=dataset.encode")
    enc = [np.asarray(encode(t), np.int32) for t in split.transcripts]
    longest = max((e.shape[0] for e in enc), default=1)
    L = max_label_length or max(8, -(-longest // 8) * 8)
    if longest > L:
        raise ValueError(f"a transcript encodes to {longest} labels > max_label_length={L}")
    return enc, L


def _encoded_meanings(split: Split, encode_meaning):
    """(intent ids int32 [N], slot ids int32 [N, S]), or None without ``encode_meaning``."""
    if encode_meaning is None:
        return None
    if split.meanings is None:
        raise ValueError(
            "encode_meaning was given but the split has no meanings (an "
            "intent/slots corpus such as synth_phrases has them)"
        )
    if len(split.meanings) != len(split.audio):
        raise ValueError(
            f"the split has {len(split.audio)} clips but {len(split.meanings)} "
            "meanings; it needs one meaning per clip"
        )
    intents, slots = [], []
    for i, m in enumerate(split.meanings):
        try:
            intent, ids = encode_meaning(m)
        except ValueError as e:
            said = f" ({split.transcripts[i]!r})" if split.transcripts else ""
            raise ValueError(f"example {i}{said}: {e}") from None
        intents.append(intent)
        slots.append(ids)
    return np.asarray(intents, np.int32), np.asarray(slots, np.int32)


def _make_batch(
    split: Split, idx: np.ndarray, buckets, enc, L, weights: np.ndarray, meaning=None
) -> dict:
    lengths = np.array([split.audio[i].shape[0] for i in idx], np.int32)
    S = next(b for b in buckets if b >= lengths.max())
    audio = np.zeros((len(idx), S), np.float32)
    for r, i in enumerate(idx):
        audio[r, : lengths[r]] = split.audio[i].astype(np.float32) / 32768.0
    batch = {"audio": audio, "audio_lengths": lengths, "weights": weights.astype(np.float32)}
    if enc is not None:
        labels = np.zeros((len(idx), L), np.int32)
        label_lengths = np.array([enc[i].shape[0] for i in idx], np.int32)
        for r, i in enumerate(idx):
            labels[r, : label_lengths[r]] = enc[i]
        batch["labels"], batch["label_lengths"] = labels, label_lengths
    elif split.labels is not None:
        batch["labels"] = np.asarray(split.labels, np.int32)[idx]
    if meaning is not None:
        batch["intent"], batch["slots"] = meaning[0][idx], meaning[1][idx]
    return batch


def train_batches(
    split: Split,
    *,
    batch_size: int,
    seed: int,
    buckets,
    start_step: int = 0,
    encode: Callable[[str], np.ndarray] | None = None,
    max_label_length: int | None = None,
    encode_meaning: Callable[[dict], tuple] | None = None,
) -> Iterator[dict]:
    """Infinite shuffled stream of batches starting at batch ``start_step``.

    Batch: audio [B, S] float32, audio_lengths [B] int32, weights [B] (ones), and labels [B]
    (classify) or labels [B, L] + label_lengths [B] (ctc); with ``encode_meaning`` (meaning ->
    (intent id, slot ids [S])) also intent [B] and slots [B, S] int32.
    """
    n = len(split.audio)
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] (split size), got {batch_size}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    buckets = _check_buckets(split, buckets)
    enc, L = _encoded(split, encode, max_label_length)
    meaning = _encoded_meanings(split, encode_meaning)
    per_epoch = n // batch_size
    ones = np.ones(batch_size, np.float32)

    def gen():
        step = start_step
        epoch, perm = -1, None
        while True:
            e, pos = divmod(step, per_epoch)
            if e != epoch:
                epoch, perm = e, np.random.default_rng([seed, e]).permutation(n)
            idx = perm[pos * batch_size : (pos + 1) * batch_size]
            yield _make_batch(split, idx, buckets, enc, L, ones, meaning)
            step += 1

    return gen()


def eval_batches(
    split: Split,
    *,
    batch_size: int,
    buckets,
    encode: Callable[[str], np.ndarray] | None = None,
    max_label_length: int | None = None,
    encode_meaning: Callable[[dict], tuple] | None = None,
) -> Iterator[dict]:
    """One in-order pass over every example. The last batch is filled up to ``batch_size``
    by repeating its last valid example with weight 0 (so padding rows hold real, finite data)."""
    n = len(split.audio)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    buckets = _check_buckets(split, buckets)
    enc, L = _encoded(split, encode, max_label_length)
    meaning = _encoded_meanings(split, encode_meaning)

    def gen():
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(start + batch_size, n))
            weights = np.zeros(batch_size, np.float32)
            weights[: idx.size] = 1.0
            idx = np.concatenate([idx, np.full(batch_size - idx.size, idx[-1])])
            yield _make_batch(split, idx, buckets, enc, L, weights, meaning)

    return gen()
