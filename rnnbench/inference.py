"""A trained run restored for inference: transcribe (or classify) audio, score any dataset.

  run = load_run(workdir)                      # config.json + newest checkpoint
  texts = predict(run, clips)                  # clips: int16 [n] arrays at 16 kHz
  metrics, records = score(run, dataset, split)

The model, features and decoding are the ones training used (`config.decode`), unless
`load_run(workdir, decode={...})` replaces decoding fields (beam, ctc_weight, ...); `predict`
returns transcripts for recognisers and class names for classifiers.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from rnnbench import data as data_lib
from rnnbench import input_pipeline, objectives, train


@dataclasses.dataclass
class TrainedRun:
    workdir: str
    config: ml_collections.ConfigDict
    objective: objectives.Objective
    classes: list[str]
    step: int
    eval_step: Any  # jitted (params, batch) -> outputs
    params: Any
    graphdef: Any = None  # nnx.merge(graphdef, params) is the model


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config.json of the run in `workdir` (ValueError if it is not a run directory)."""
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except FileNotFoundError:
        raise ValueError(
            f"--workdir {workdir} has no config.json: not a training run directory"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable ({e})") from None


def _classes(workdir: str, config) -> tuple[str, list[str]]:
    """(dataset task, class names or alphabet) without loading audio where possible."""
    path = os.path.join(workdir, "classes.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        return saved["task"], saved["classes"]
    if config.model.get("kind", "classifier") != "classifier":
        return "ctc", list(data_lib.CTC_ALPHABET)
    ds = input_pipeline.load_dataset(config)  # class names live with the dataset
    return ds.task, list(ds.classes)


def parse_decode(items: list[str]) -> dict:
    """['beam=10', 'ctc_weight=0.3'] (a --decode flag) -> {'beam': 10, 'ctc_weight': 0.3}; each
    value a Python literal (a bare word stays a string). ValueError naming a malformed item."""
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--decode item {item!r}: expected key=value, e.g. beam=10")
        try:
            out[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key.strip()] = text
    return out


def with_decode(config: ml_collections.ConfigDict, decode: dict) -> ml_collections.ConfigDict:
    """A copy of `config` whose config.decode has `decode`'s fields replaced or added (the
    objective then checks them: an unknown field or a bad value is a ValueError naming it)."""
    c = copy.deepcopy(config)
    with c.unlocked():
        merged = dict(c.get("decode") or {})
        merged.update(decode)
        c.decode = merged
    return c


def load_run(workdir: str, step: int | None = None, decode: dict | None = None) -> TrainedRun:
    """Restores the checkpoint of `step` (None: the newest) of the run in `workdir`
    (ValueError if it has none, or none of that step). `decode` replaces fields of the run's
    config.decode (e.g. {"beam": 10, "ctc_weight": 0.3}): it decodes as a run trained with them
    would in its final evaluation."""
    config = read_config(workdir)
    if decode:
        config = with_decode(config, decode)
    task, classes = _classes(workdir, config)
    stub = data_lib.Dataset(config.get("dataset", "?"), task, classes, {})
    objective = objectives.find(config.model.get("kind", "classifier"), task)(config)
    objective.load_artifacts(workdir)  # e.g. the decoding LM fitted on the training text
    graphdef, state, _, _ = train.init_state(config, stub, objective)
    mngr = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"))
    try:
        if mngr.latest_step() is None:
            raise ValueError(f"--workdir {workdir} has no checkpoint to restore; train it first")
        if step is None:
            step = mngr.latest_step()
        elif step not in mngr.all_steps():
            raise ValueError(
                f"--workdir {workdir} has no checkpoint of step {step}; it has steps "
                f"{sorted(mngr.all_steps())}"
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        state = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    finally:
        mngr.close()
    _, eval_step = train.make_steps(config, graphdef, None, objective)
    return TrainedRun(
        workdir,
        config,
        objective,
        classes,
        int(step),
        jax.jit(eval_step),
        state["params"],
        graphdef,
    )


def _bucket(n: int, step: int = 4000) -> int:
    return -(-n // step) * step


def _batch(
    clips: list[np.ndarray],
    labels: list[np.ndarray] | None,
    task: str,
    size: int,
    meanings: list[tuple] | None = None,
    num_slots: int = 0,
):
    """Pads `clips` (and label ids, and encoded meanings (intent, slots [S]) for the intent
    task: zeros without references) into one eval batch of `size` rows (weights 0 on filler)."""
    n = len(clips)
    rows = list(range(n)) + [n - 1] * (size - n)
    lengths = np.array([clips[i].shape[0] for i in rows], np.int32)
    audio = np.zeros((size, _bucket(int(lengths.max()))), np.float32)
    for r, i in enumerate(rows):
        audio[r, : lengths[r]] = clips[i].astype(np.float32) / 32768.0
    batch = {
        "audio": audio,
        "audio_lengths": lengths,
        "weights": (np.arange(size) < n).astype(np.float32),
    }
    if task == "classify":
        batch["labels"] = np.array([labels[i][0] if labels else 0 for i in rows], np.int32)
    else:
        # without references, room for ~25 characters a second (decoders size their output by it)
        dummy = np.ones(max(8, int(lengths.max()) * 25 // data_lib.SAMPLE_RATE), np.int32)
        ids = [labels[i] if labels else dummy for i in rows]
        width = _bucket(max(len(x) for x in ids), 8)
        batch["labels"] = np.zeros((size, width), np.int32)
        for r, x in enumerate(ids):
            batch["labels"][r, : len(x)] = x
        batch["label_lengths"] = np.array([len(x) for x in ids], np.int32)
    if num_slots:
        batch["intent"] = np.array([meanings[i][0] if meanings else 0 for i in rows], np.int32)
        batch["slots"] = np.stack(
            [meanings[i][1] if meanings else np.zeros(num_slots, np.int32) for i in rows]
        ).astype(np.int32)
    return batch


def _num_slots(run: TrainedRun) -> int:
    """Slot heads of a meaning-predicting objective (0 for the others)."""
    codec = getattr(run.objective, "codec", None)
    return len(codec.slot_names) if codec is not None else 0


def _dataset_like(run: TrainedRun) -> data_lib.Dataset:
    task = "classify" if run.config.model.get("kind", "classifier") == "classifier" else "ctc"
    return data_lib.Dataset("inference", task, run.classes, {})


def _split(dataset, split: str):
    """dataset.splits[split], or a ValueError naming the splits it has."""
    if split not in dataset.splits:
        raise ValueError(
            f"dataset {dataset.name} has no split {split!r}; it has {sorted(dataset.splits)}"
        )
    return dataset.splits[split]


def predict(run: TrainedRun, clips: list[np.ndarray], batch_size: int = 16) -> list[str]:
    """int16 [n] clips at 16 kHz -> one transcript (or class name) per clip."""
    ds = _dataset_like(run)
    out_texts: list[str] = []
    for s in range(0, len(clips), batch_size):
        chunk = clips[s : s + batch_size]
        batch = _batch(chunk, None, ds.task, batch_size, num_slots=_num_slots(run))
        out = jax.device_get(run.eval_step(run.params, batch))
        out_texts += [run.objective.prediction(out, r, ds) for r in range(len(chunk))]
    return out_texts


def score(run: TrainedRun, dataset, split: str = "test", batch_size: int = 16):
    """-> (the objective's metrics on `split`, one record per utterance: reference and
    hypothesis)."""
    sp = _split(dataset, split)
    if dataset.task == "classify":
        refs = [dataset.classes[int(label)] for label in sp.labels]
        labels = [np.array([int(label)]) for label in sp.labels]
    else:
        refs = list(sp.transcripts)
        labels = [dataset.encode(t) for t in refs]
    encode_meaning = run.objective.meaning_encoder(dataset)
    meanings = None
    if encode_meaning is not None:
        if not sp.meanings:
            raise ValueError(
                f"run {run.workdir} predicts meanings but {dataset.name} {split} "
                f"has none to score against"
            )
        meanings = [encode_meaning(m) for m in sp.meanings]
        refs = [run.objective.codec.format(m) for m in sp.meanings]
    acc = run.objective.new_accumulator(final=True)
    records = []
    for s in range(0, len(sp.audio), batch_size):
        chunk = sp.audio[s : s + batch_size]
        batch = _batch(
            chunk,
            labels[s : s + batch_size],
            dataset.task,
            batch_size,
            meanings[s : s + batch_size] if meanings else None,
            _num_slots(run),
        )
        out = jax.device_get(run.eval_step(run.params, batch))
        run.objective.accumulate(acc, dataset, batch, out)
        for r in range(len(chunk)):
            records.append(
                {
                    "index": s + r,
                    "speaker": sp.speakers[s + r],
                    "reference": refs[s + r],
                    "hypothesis": run.objective.prediction(out, r, dataset),
                }
            )
    return run.objective.summarize(acc, dataset), records


def alignments(run: TrainedRun, dataset, split: str = "test", count: int = 4):
    """Teacher-forced attention weights of an attention encoder-decoder (model.kind 'las') on
    the first `count` utterances of `split`: a list of (alignment [U_b + 1, T'_b] (the
    transcript's characters then eos, by valid encoder frames), tokens [U_b + 1], reference)."""
    from flax import nnx

    if run.config.model.get("kind") != "las":
        raise ValueError(
            f"run {run.workdir} is model.kind {run.config.model.get('kind')!r}; attention "
            f"alignments exist for model.kind 'las' only"
        )
    sp = _split(dataset, split)
    refs = list(sp.transcripts[:count])
    labels = [dataset.encode(t) for t in refs]
    batch = _batch(list(sp.audio[: len(refs)]), labels, dataset.task, max(len(refs), 1))

    @jax.jit
    def forward(params, batch):
        model = nnx.merge(run.graphdef, params)
        feats, flen = train.compute_features(run.config, batch, None)
        _, aux = run.objective.forward(model, feats, flen, batch, None)
        return aux["alignments"], aux["lengths"]

    weights, frames = jax.device_get(forward(run.params, batch))
    out = []
    for r, ref in enumerate(refs):  # one id per character (Dataset.encode)
        out.append((weights[r, : len(ref) + 1, : int(frames[r])], [*ref, "<eos>"], ref))
    return out
