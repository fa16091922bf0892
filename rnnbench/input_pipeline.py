"""From a config to host batches: the dataset, its buckets, and the train and eval streams.

  load_dataset(config)                      -> rnnbench.data.Dataset | a synthetic memory task
  buckets_for(config, dataset)              -> bucket lengths in samples (None for memory tasks)
  check_splits(config, dataset, buckets)    every split fits the buckets and the batch size
  train_stream(dataset, config, seed, buckets, start, encode) -> iterator of host batches
  eval_stream(dataset, split, config, buckets, encode)        -> one pass over a split
  stack_batches([batch] * N)                -> one batch with a leading model axis [N, ...]

Batch k of a training stream depends only on (seed, k), so a resumed run sees the same data.
Speech batches hold audio [batch, samples] float32, audio_lengths [batch], weights [batch] and
labels (see rnnbench.data.batching); memory tasks bring inputs [batch, time, F] ready made.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import jax
import numpy as np

from rnnbench import data as data_lib
from rnnbench import tasks
from rnnbench.data import batching

Batch = dict[str, Any]
MEMORY_TASKS = tuple(tasks.TASKS.values())


def is_memory_task(dataset) -> bool:
    return isinstance(dataset, MEMORY_TASKS)


def load_dataset(config):
    """A speech `Dataset` from rnnbench.data, or a synthetic task for `dataset="task:<name>"`."""
    if config.dataset.startswith("task:"):
        return tasks.make(config.dataset[len("task:"):], **dict(config.get("task") or {}))
    d = config.get("data") or {}
    opts = dict(d.get("options") or {})
    return data_lib.load(config.dataset, data_dir=config.get("data_dir"),
                         protocol=d.get("protocol", 12), seed=d.get("seed", 0),
                         cache_dir=d.get("cache_dir"), **opts)


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
    """Before any compile: the training split holds at least one batch and every clip of every
    split fits the largest bucket (found at the first evaluation otherwise, after training)."""
    if is_memory_task(dataset):
        return
    n_train = len(dataset.splits["train"])
    if not 0 < config.batch_size <= n_train:
        raise ValueError(f"config.batch_size={config.batch_size} must be in [1, {n_train}], the "
                         f"size of {dataset.name}'s training split")
    if not buckets or min(buckets) <= 0:
        raise ValueError(f"config.buckets must be positive sample counts, got {buckets!r}")
    for split_name, split in dataset.splits.items():
        for i, a in enumerate(split.audio):
            if a.shape[0] > max(buckets):
                where = f" ({split.transcripts[i]!r})" if split.transcripts else ""
                raise ValueError(
                    f"{dataset.name} {split_name} example {i}{where} has {a.shape[0]} samples "
                    f"({a.shape[0] / dataset.sample_rate:.2f} s), longer than the largest bucket "
                    f"{max(buckets)} in config.buckets={tuple(buckets)}; add a larger bucket or "
                    f"leave config.buckets empty to size them from the data")


def train_stream(dataset, config, seed: int, buckets, start: int,
                 encode: Callable | None = None) -> Iterator[Batch]:
    """Host batches from batch `start` on; batch k depends only on (seed, k)."""
    if is_memory_task(dataset):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x7A5C)
        make = jax.jit(dataset.batch, static_argnums=1)
        return (jax.device_get(make(jax.random.fold_in(key, k), config.batch_size))
                for k in itertools.count(start))
    return batching.train_batches(dataset.splits["train"], batch_size=config.batch_size,
                                  seed=seed, buckets=buckets, start_step=start, encode=encode)


def eval_stream(dataset, split: str, config, buckets,
                encode: Callable | None = None) -> Iterator[Batch]:
    """One pass over `split`; memory tasks use a fixed set of `config.task_eval_size` examples
    per split, the same for every seed."""
    if is_memory_task(dataset):
        key = jax.random.PRNGKey({"validation": 1, "test": 2}[split] + 0x5EED)
        make = jax.jit(dataset.batch, static_argnums=1)
        n = config.get("task_eval_size", 1024)
        return (jax.device_get(make(jax.random.fold_in(key, k), config.batch_size))
                for k in range(-(-n // config.batch_size)))
    return batching.eval_batches(dataset.splits[split], batch_size=config.batch_size,
                                 buckets=buckets, encode=encode)


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
