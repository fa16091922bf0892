"""From a config to host batches: the dataset, its buckets, and the train and eval streams.

  load_dataset(config)                      -> rnnbench.data.Dataset | a synthetic memory task
  buckets_for(config, dataset)              -> bucket lengths in samples (None for memory tasks)
  check_splits(config, dataset, buckets)    every split fits the buckets and the batch size
  train_stream(dataset, config, seed, buckets, start, encode, encode_meaning) -> host batches
  eval_stream(dataset, split, config, buckets, encode, encode_meaning)  -> one pass over a split
  stack_batches([batch] * N)                -> one batch with a leading model axis [N, ...]

Batch k of a training stream depends only on (seed, k), so a resumed run sees the same data.
Speech batches hold audio [batch, samples] float32, audio_lengths [batch], weights [batch] and
labels (see rnnbench.data.batching); memory tasks bring inputs [batch, time, F] ready made.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from rnnbench import data as data_lib
from rnnbench import tasks
from rnnbench.data import batching
from rnnbench.errors import ConfigError, DataError

Batch = dict[str, Any]
MEMORY_TASKS = tuple(tasks.TASKS.values())


def is_memory_task(dataset) -> bool:
    return isinstance(dataset, MEMORY_TASKS)


def load_dataset(config):
    """A speech `Dataset` from rnnbench.data, or a synthetic task for `dataset="task:<name>"`."""
    if config.dataset.startswith("task:"):
        return tasks.make(config.dataset[len("task:") :], **dict(config.get("task") or {}))
    d = config.get("data") or {}
    opts = dict(d.get("options") or {})
    try:
        return data_lib.load(
            config.dataset,
            data_dir=config.get("data_dir"),
            protocol=d.get("protocol", 12),
            seed=d.get("seed", 0),
            cache_dir=d.get("cache_dir"),
            **opts,
        )
    except TypeError as e:  # the loader does not take one of config.data.options
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if not bad or bad.group(1) not in opts:
            raise
        raise ConfigError(
            f"dataset {config.dataset!r} takes no option {bad.group(1)!r} "
            f"(config.data.options={opts}); set --config.data.options for this "
            "dataset (see its loader in rnnbench/data/)"
        ) from None


def num_features(config, dataset) -> int:
    """Feature size the model sees: the task's input size, or n_mels / n_mfcc."""
    if is_memory_task(dataset):
        return dataset.num_inputs
    f = config.features
    return f.get("n_mfcc", 13) if f.get("kind", "logmel") == "mfcc" else f.get("n_mels", 40)


def auto_buckets(dataset, quantiles=(0.5, 0.9, 1.0), step_s: float = 0.25) -> tuple[int, ...]:
    """A few bucket lengths (samples) from the clip-length quantiles, rounded up to `step_s`."""
    lengths = np.concatenate([[a.shape[0] for a in s.audio] for s in dataset.splits.values()])
    step = int(step_s * dataset.sample_rate)
    qs = np.quantile(lengths, quantiles)
    qs[-1] = lengths.max()
    return tuple(sorted({int(-(-q // step) * step) for q in qs}))


def buckets_for(config, dataset) -> tuple[int, ...] | None:
    """`config.buckets` if set, else `auto_buckets` over every split; None for memory tasks."""
    if is_memory_task(dataset):
        return None
    return tuple(config.get("buckets") or ()) or auto_buckets(dataset)


def check_splits(config, dataset, buckets) -> None:
    """Before any compile: every split has examples, the training split holds at least one
    batch, and every clip of every split is at least one analysis window long and fits the
    largest bucket (found at the first evaluation otherwise, after training). Errors name the
    split, the example and the flag to change."""
    if is_memory_task(dataset):
        return
    for name in ("train", "validation", "test"):
        if name not in dataset.splits or not len(dataset.splits[name]):
            raise DataError(
                f"dataset {dataset.name} has no {name} examples; check "
                "--config.data_dir and --config.data.options (split sizes)"
            )
    n_train = len(dataset.splits["train"])
    if not 0 < config.batch_size <= n_train:
        raise DataError(
            f"config.batch_size={config.batch_size} must be in [1, {n_train}], the "
            f"size of {dataset.name}'s training split"
        )
    if not buckets or min(buckets) <= 0:
        raise DataError(f"config.buckets must be positive sample counts, got {buckets!r}")
    f = config.features
    window = round(dataset.sample_rate * f.get("win_ms", 25.0) / 1000.0)
    for split_name, split in dataset.splits.items():
        lengths = np.array([a.shape[0] for a in split.audio])
        long = np.flatnonzero(lengths > max(buckets))
        if long.size:
            i = int(long[0])
            raise DataError(
                f"{dataset.name} {split_name} example {i} {_describe(dataset, split, i)} has "
                f"{lengths[i]} samples ({lengths[i] / dataset.sample_rate:.2f} s), longer than "
                f"the largest bucket {max(buckets)} in --config.buckets={tuple(buckets)} "
                f"({long.size} example(s) in {split_name} are); add a bucket >= {lengths.max()} "
                f"or leave --config.buckets empty to size them from the data"
            )
        short = np.flatnonzero(lengths < window)
        if short.size:
            i = int(short[0])
            raise DataError(
                f"{dataset.name} {split_name} example {i} {_describe(dataset, split, i)} has "
                f"{lengths[i]} samples, shorter than one analysis window of {window} samples "
                f"(--config.features.win_ms={f.get('win_ms', 25.0)}); {short.size} example(s) "
                f"in {split_name} are; remove them from the data or use a shorter window"
            )


def _describe(dataset, split, i: int) -> str:
    """'(speaker 'jackson', label 'seven')': what identifies an example without a path."""
    parts = [f"speaker {split.speakers[i]!r}"] if split.speakers else []
    if split.transcripts:
        parts.append(f"transcript {split.transcripts[i]!r}")
    elif split.labels is not None and len(split.labels):
        label = int(split.labels[i])
        parts.append(
            f"label {dataset.classes[label]!r}"
            if 0 <= label < len(dataset.classes)
            else f"label {label}"
        )
    return f"({', '.join(parts)})" if parts else ""


def train_stream(
    dataset,
    config,
    seed: int,
    buckets,
    start: int,
    encode: Callable | None = None,
    encode_meaning: Callable | None = None,
) -> Iterator[Batch]:
    """Host batches from batch `start` on; batch k depends only on (seed, k)."""
    if is_memory_task(dataset):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x7A5C)
        make = jax.jit(dataset.batch, static_argnums=1)
        return (
            jax.device_get(make(jax.random.fold_in(key, k), config.batch_size))
            for k in itertools.count(start)
        )
    return batching.train_batches(
        dataset.splits["train"],
        batch_size=config.batch_size,
        seed=seed,
        buckets=buckets,
        start_step=start,
        encode=encode,
        encode_meaning=encode_meaning,
    )


def eval_stream(
    dataset,
    split: str,
    config,
    buckets,
    encode: Callable | None = None,
    encode_meaning: Callable | None = None,
) -> Iterator[Batch]:
    """One pass over `split`; memory tasks use a fixed set of `config.task_eval_size` examples
    per split, the same for every seed."""
    if is_memory_task(dataset):
        key = jax.random.PRNGKey({"validation": 1, "test": 2}[split] + 0x5EED)
        make = jax.jit(dataset.batch, static_argnums=1)
        n = config.get("task_eval_size", 1024)
        return (
            jax.device_get(make(jax.random.fold_in(key, k), config.batch_size))
            for k in range(-(-n // config.batch_size))
        )
    return batching.eval_batches(
        dataset.splits[split],
        batch_size=config.batch_size,
        buckets=buckets,
        encode=encode,
        encode_meaning=encode_meaning,
    )


def stack_batches(batches: list[Batch]) -> Batch:
    """N host batches -> one batch with a leading model axis; audio padded to the longest."""
    width = max(b["audio"].shape[1] for b in batches) if "audio" in batches[0] else 0
    out = {}
    for k in batches[0]:
        rows = [b[k] for b in batches]
        if k == "audio":
            rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in rows]
        out[k] = np.stack(rows)
    return out
