"""Objectives: what a run asks of its model and how it is scored. One file per task.

An `Objective` owns everything task-specific in training and evaluation, so the train loop
(rnnbench/train.py) has no task branches:

  check(config, dataset)                   host, before any compile: raise ValueError naming
                                           the config field / example that cannot work
  num_classes(dataset)                     the model's output size (CTC: without the blank)
  forward(model, feats, lengths, batch, key) -> (outputs, aux)        inside jit
  loss(outputs, aux, batch) -> (per_example [batch], sums)            inside jit
  train_metrics(sums) -> {name: scalar}                               inside jit
  eval_outputs(model, outputs, aux, batch) -> {name: array}           inside jit (e.g. decoding)
  accumulate(acc, dataset, batch, out)     host: fold one eval batch of one model into `acc`
  summarize(acc, dataset) -> metrics       host: {"loss", "examples", "accuracy" | "cer", ...}
  prediction(out, row, dataset) -> str     host: what the model says for one row (inference)

`make(config, dataset)` builds the objective for the pair (config.model.kind, dataset.task); it
keeps `config` (e.g. decoding settings). Adding a task means adding one file here that subclasses
`Objective`, decorates it with `@register`, and is imported at the bottom of this file.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Batch = dict[str, Any]


class Objective:
    """Base class: a weighted mean of a per-example loss; subclasses say what the loss is."""

    name: str = ""
    model_kind: str = ""  # config.model.kind this objective trains
    data_task: str = ""  # dataset.task it needs ("classify", "ctc", "regress", "tag", ...)
    primary: str = "loss"  # the metric tables rank by, e.g. "accuracy" or "cer"
    higher_is_better: bool = False
    sum_keys: tuple[str, ...] = ()  # extra per-batch sums `loss` returns, summed over eval

    def __init__(self, config=None):
        self.config = config

    # ------------------------------------------------------------------ host, before compile
    def check(self, config, dataset) -> None:
        """Raise ValueError for a (config, dataset) pair this objective cannot train."""

    def num_classes(self, dataset) -> int:
        return getattr(dataset, "num_outputs", None) or len(dataset.classes)

    def encoder(self, dataset):
        """Transcript -> label ids for the batcher (None: the dataset has class labels)."""
        return None

    def artifacts(self) -> dict[str, str]:
        """Files (name -> text) this objective built from the training data and needs again to
        evaluate a restored run without it (e.g. a decoding LM); written into the workdir."""
        return {}

    def load_artifacts(self, workdir: str) -> None:
        """Reads back what `artifacts` wrote (inference on a restored run)."""

    def meaning_encoder(self, dataset):
        """Meaning -> (intent id, slot ids [S]) for the batcher (None: batches carry no
        meaning; see rnnbench.data.meanings)."""
        return None

    # ------------------------------------------------------------------ inside jit
    def forward(self, model, feats, lengths, batch: Batch, key):
        """feats [batch, time, F], lengths [batch] -> (outputs, aux)."""
        return model(feats, lengths, key=key)

    def per_example(self, outputs, aux, batch: Batch) -> tuple[jax.Array, dict]:
        """-> (loss per example [batch], extra sums); subclasses implement."""
        raise NotImplementedError

    def loss(self, outputs, aux, batch: Batch) -> tuple[jax.Array, dict]:
        """Weighted mean loss over the batch's real rows (`weights` is 0 on padding rows) and
        the sums evaluation adds up: loss_sum, count, and `sum_keys`."""
        per_example, sums = self.per_example(outputs, aux, batch)
        w = batch["weights"]
        loss = (per_example * w).sum() / jnp.maximum(w.sum(), 1.0)
        sums = dict(sums, loss_sum=(per_example * w).sum(), count=w.sum())
        return loss, sums

    def train_metrics(self, sums: dict) -> dict:
        return {}

    def eval_outputs(self, model, outputs, aux, batch: Batch) -> dict:
        return {}

    # ------------------------------------------------------------------ host, evaluation
    def new_accumulator(self, final: bool = False) -> dict:
        """Per-model evaluation totals; `final` marks the final evaluation (which may decode
        more thoroughly than validation during training)."""
        return {k: 0.0 for k in ("loss_sum", "count", *self.sum_keys)}

    def accumulate(self, acc: dict, dataset, batch: Batch, out: dict) -> None:
        """out: this model's eval outputs for one host batch (numpy)."""
        for k in ("loss_sum", "count", *self.sum_keys):
            acc[k] += float(out[k])

    def summarize(self, acc: dict, dataset) -> dict:
        return {"loss": acc["loss_sum"] / max(acc["count"], 1.0), "examples": int(acc["count"])}

    def prediction(self, out: dict, row: int, dataset) -> str:
        """The model's answer for one row of an eval batch, as text (class name, transcript)."""
        raise ValueError(
            f"objective {self.name!r} does not predict text; "
            f"inference needs a classifier or a recogniser"
        )


def valid_rows(batch: Batch) -> np.ndarray:
    """Indices of a host batch's real (non-padding) rows."""
    return np.flatnonzero(batch["weights"])


OBJECTIVES: dict[str, type[Objective]] = {}


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator: adds an objective under `cls.name`."""
    if cls.name in OBJECTIVES:
        raise ValueError(f"objective {cls.name!r} is registered twice")
    OBJECTIVES[cls.name] = cls
    return cls


def find(model_kind: str, data_task: str, dataset_name: str = "the dataset") -> type[Objective]:
    """The objective class that trains `config.model.kind` on a dataset of task `data_task`."""
    for cls in OBJECTIVES.values():
        if cls.model_kind == model_kind and cls.data_task == data_task:
            return cls
    kinds = sorted(c.model_kind for c in OBJECTIVES.values() if c.data_task == data_task)
    if not kinds:
        raise ValueError(
            f"{dataset_name} is a {data_task!r} task, which no objective trains; "
            f"known tasks: {sorted({c.data_task for c in OBJECTIVES.values()})}"
        )
    raise ValueError(
        f"{dataset_name} is a {data_task} task but config.model.kind={model_kind!r}; "
        f"use one of {kinds}"
    )


def make(config, dataset) -> Objective:
    """The objective for `config` on `dataset`, checked (`check`) before any compile work."""
    cls = find(config.model.get("kind", "classifier"), dataset.task, getattr(dataset, "name", ""))
    objective = cls(config)
    objective.check(config, dataset)
    return objective


from rnnbench.objectives import classify, ctc, intent, las, regress, tag, transducer, tts  # noqa: E402,F401  # noqa: E402,F401
