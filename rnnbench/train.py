"""The training loop: one jitted train step, one jitted eval step, resumable, data-parallel.

  train_and_evaluate(config, workdir) -> final metrics (also written to workdir/final.json)

The train state is a plain pytree `{"params", "opt_state", "step", "rng"}` and the step is a
pure function `train_step(state, batch) -> (state, metrics)`: features, model, loss and the optax
update all happen inside it, so it can be `jax.jit`-ed, sharded over devices, or `jax.vmap`-ed
over a leading model axis (many seeds in one program). Randomness comes from
`fold_in(state["rng"], state["step"])`, and batch k of the data stream depends only on
(seed, k), which makes a resumed run bitwise identical to an uninterrupted one.

Workdir layout: config.json, metrics.jsonl, final.json, checkpoints/ (orbax), wandb/.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rnnbench import data as data_lib
from rnnbench import features, metrics, models, run_log, tasks
from rnnbench.data import batching

State = dict[str, Any]
Batch = dict[str, Any]


# ----------------------------------------------------------------------------- config checks

def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError for a config that cannot run, before any data or compile work."""
    for field in ("seed", "batch_size", "num_steps", "eval_every", "checkpoint_every",
                  "dataset", "model", "optimizer", "features"):
        if field not in config:
            raise ValueError(f"config has no field {field!r}; every config needs it")
    for field in ("batch_size", "num_steps", "eval_every", "checkpoint_every"):
        if config[field] <= 0:
            raise ValueError(f"config.{field} must be positive, got {config[field]}")
    known = data_lib.NAMES + tuple(f"task:{t}" for t in tasks.TASKS)
    if config.dataset not in known:
        raise ValueError(f"unknown config.dataset {config.dataset!r}; known: {known}")
    m = config.model
    if m.get("kind", "classifier") not in models.MODELS:
        raise ValueError(f"unknown config.model.kind {m.kind!r}; known: {sorted(models.MODELS)}")
    from rnnbench import cells
    if m.cell not in cells.CELLS:
        raise ValueError(f"unknown config.model.cell {m.cell!r}; known: {sorted(cells.CELLS)}")
    if m.get("pooling", "last") not in models.POOLINGS:
        raise ValueError(f"unknown config.model.pooling {m.pooling!r}; known: {models.POOLINGS}")
    for field in ("hidden", "layers"):
        if m[field] <= 0:
            raise ValueError(f"config.model.{field} must be positive, got {m[field]}")
    if config.optimizer.name not in OPTIMIZERS:
        raise ValueError(f"unknown config.optimizer.name {config.optimizer.name!r}; "
                         f"known: {sorted(OPTIMIZERS)}")
    if config.optimizer.schedule not in SCHEDULES:
        raise ValueError(f"unknown config.optimizer.schedule {config.optimizer.schedule!r}; "
                         f"known: {SCHEDULES}")
    warmup = config.optimizer.get("warmup_steps", 0)
    if warmup < 0:
        raise ValueError(f"config.optimizer.warmup_steps must be >= 0, got {warmup}")
    if config.optimizer.schedule == "cosine" and max(warmup, 1) >= config.num_steps:
        raise ValueError(
            f"config.optimizer.warmup_steps={warmup} leaves no steps for the cosine decay of "
            f"config.num_steps={config.num_steps}; lower --config.optimizer.warmup_steps or "
            "raise --config.num_steps (or use --config.optimizer.schedule=constant)")
    n = jax.device_count()
    if config.batch_size % n:
        raise ValueError(f"config.batch_size={config.batch_size} must be divisible by the number "
                         f"of devices ({n}) for data-parallel training")


# ----------------------------------------------------------------------------- optimizer

OPTIMIZERS = {
    "adam": lambda lr, c: optax.adam(lr, b1=c.get("b1", 0.9), b2=c.get("b2", 0.999)),
    "adamw": lambda lr, c: optax.adamw(lr, weight_decay=c.get("weight_decay", 1e-4)),
    "sgd": lambda lr, c: optax.sgd(lr, momentum=c.get("momentum", 0.9) or None),
}
SCHEDULES = ("constant", "cosine", "step")


def make_schedule(c, num_steps: int) -> optax.Schedule:
    """Warmup (linear, `warmup_steps`) followed by constant, cosine or step decay."""
    warmup = c.get("warmup_steps", 0)
    if c.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, max(warmup, 1), num_steps,
                                                  end_value=c.learning_rate * c.get("end_factor", 0.0))
    if c.schedule == "step":
        boundaries = {int(f * num_steps): c.get("decay_factor", 0.1)
                      for f in c.get("decay_at", (0.5, 0.75))}
        main = optax.piecewise_constant_schedule(c.learning_rate, boundaries)
    else:
        main = optax.constant_schedule(c.learning_rate)
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, c.learning_rate, warmup), main],
                                [warmup])


def make_optimizer(c, num_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping (if `clip_norm` > 0) then Adam/AdamW/SGD on the schedule."""
    tx = OPTIMIZERS[c.name](make_schedule(c, num_steps), c)
    if c.get("clip_norm", 0.0) > 0:
        tx = optax.chain(optax.clip_by_global_norm(c.clip_norm), tx)
    return tx


# ----------------------------------------------------------------------------- losses

def weight_penalty(params, l1: float, l2: float) -> jax.Array:
    """l1 * sum |w| + l2 * sum w^2 over weight matrices (ndim >= 2; biases and norms excluded)."""
    total = jnp.zeros(())
    for w in jax.tree.leaves(params):
        if w.ndim >= 2:
            if l1:
                total += l1 * jnp.abs(w).sum()
            if l2:
                total += l2 * jnp.square(w).sum()
    return total


def stability_penalty(states: jax.Array, lengths: jax.Array) -> jax.Array:
    """mean over valid t >= 1 of ||h_t - h_{t-1}||^2 (Krueger & Memisevic 2015), states [B, T, D]."""
    diff = jnp.square(states[:, 1:] - states[:, :-1]).sum(-1)  # [B, T-1]
    valid = jnp.arange(1, states.shape[1])[None, :] < lengths[:, None]
    return jnp.where(valid, diff, 0.0).sum() / jnp.maximum(valid.sum(), 1)


def masked_mse(pred: jax.Array, target: jax.Array, lengths: jax.Array) -> jax.Array:
    """Mean squared error over the valid frames of [B, T, F] arrays."""
    valid = (jnp.arange(target.shape[1])[None, :] < lengths[:, None])[..., None]
    se = jnp.where(valid, jnp.square(pred - target), 0.0)
    return se.sum() / jnp.maximum(valid.sum() * target.shape[-1], 1)


def task_loss(task: str, logits, aux, batch) -> tuple[jax.Array, dict]:
    """Weighted mean loss and metric sums for one batch. Classification: softmax cross-entropy;
    CTC: `optax.ctc_loss` per utterance divided by its label count; regress: squared error of
    output 0; tag: per-step cross-entropy averaged over the scored steps (`target_mask`)."""
    w = batch["weights"]
    if task == "regress":
        per_example = jnp.square(logits[:, 0] - batch["targets"])
        sums = {}
    elif task == "tag":
        mask = batch["target_mask"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])  # [B, T]
        correct = (jnp.argmax(logits, -1) == batch["targets"]).astype(jnp.float32)
        per_example = (ce * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
        sums = {"correct": (correct * mask * w[:, None]).sum(),
                "scored": (mask * w[:, None]).sum()}
    elif task == "classify":
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
        correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
        per_example, sums = ce, {"correct": (correct * w).sum()}
    else:
        t = logits.shape[1]
        logit_pad = (jnp.arange(t)[None, :] >= aux["lengths"][:, None]).astype(jnp.float32)
        label_pad = (jnp.arange(batch["labels"].shape[1])[None, :]
                     >= batch["label_lengths"][:, None]).astype(jnp.float32)
        per_seq = optax.ctc_loss(logits, logit_pad, batch["labels"], label_pad, blank_id=0)
        per_example = per_seq / jnp.maximum(batch["label_lengths"], 1)
        sums = {}
    loss = (per_example * w).sum() / jnp.maximum(w.sum(), 1.0)
    sums.update(loss_sum=(per_example * w).sum(), count=w.sum())
    return loss, sums


def compute_features(config, batch: Batch, key: jax.Array | None):
    """audio [B, S] -> features [B, T, F], frame lengths [B]; SpecAugment when `key` is given.
    Synthetic tasks bring their inputs ready: (inputs, lengths)."""
    if "inputs" in batch:
        return batch["inputs"], batch["lengths"]
    feats, flen = features.extract(batch["audio"], batch["audio_lengths"], **config.features)
    sa = config.get("spec_augment")
    if key is not None and sa and sa.get("enabled", False):
        kw = {k: v for k, v in sa.items() if k != "enabled"}
        feats = features.spec_augment(key, feats, flen, **kw)
    return feats, flen


def num_features(config, dataset) -> int:
    if isinstance(dataset, TASK_TYPES):
        return dataset.num_inputs
    f = config.features
    return f.get("n_mfcc", 13) if f.get("kind", "logmel") == "mfcc" else f.get("n_mels", 40)


# ----------------------------------------------------------------------------- steps

def make_steps(config, graphdef, tx, task: str):
    """Returns pure `train_step(state, batch)` and `eval_step(params, batch)` (not jitted)."""
    opt = config.optimizer
    beta = opt.get("stability_beta", 0.0)
    ae_weight = config.model.get("aux_ae_weight", 0.0)

    def loss_fn(params, batch, key, train: bool):
        model = nnx.merge(graphdef, params)
        k_feat, k_model = jax.random.split(key) if train else (None, None)
        feats, flen = compute_features(config, batch, k_feat)
        logits, aux = model(feats, flen, key=k_model)
        loss, sums = task_loss(task, logits, aux, batch)
        terms = {"task_loss": loss}
        if beta:
            terms["stability"] = beta * stability_penalty(aux["states"], aux["lengths"])
        if ae_weight:
            terms["reconstruction"] = ae_weight * masked_mse(aux["reconstruction"], feats, flen)
        if opt.get("l1", 0.0) or opt.get("l2", 0.0):
            terms["weight_penalty"] = weight_penalty(params, opt.get("l1", 0.0), opt.get("l2", 0.0))
        total = sum(terms.values())
        return total, (terms, sums, logits, aux)

    def train_step(state: State, batch: Batch) -> tuple[State, dict]:
        key = jax.random.fold_in(state["rng"], state["step"])
        (loss, (terms, sums, _, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], batch, key, True)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
               "step": state["step"] + 1, "rng": state["rng"]}
        finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
                  & jnp.isfinite(optax.tree.norm(new["params"])))
        # A non-finite step leaves the state untouched; the host loop stops on `finite == False`.
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        out = {"loss": loss, "grad_norm": grad_norm, "finite": finite, **terms}
        if task == "classify":
            out["accuracy"] = sums["correct"] / sums["count"]
        elif task == "tag":
            out["accuracy"] = sums["correct"] / jnp.maximum(sums["scored"], 1.0)
        return new, out

    def eval_step(params, batch: Batch) -> dict:
        _, (_, sums, logits, aux) = loss_fn(params, batch, jax.random.key(0), False)
        if task == "ctc":
            sums["best_path"] = jnp.argmax(logits, -1)
            sums["frame_lengths"] = aux["lengths"]
        return sums

    return train_step, eval_step


def init_state(config, dataset) -> tuple[Any, State, optax.GradientTransformation, nnx.Module]:
    """Builds the model and optimizer; returns (graphdef, state, tx, model)."""
    rngs = nnx.Rngs(params=config.seed)
    model = models.build(config.model.to_dict(), num_features=num_features(config, dataset),
                         num_classes=num_classes(dataset), rngs=rngs)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(config.optimizer, config.num_steps)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
             "rng": jax.random.PRNGKey(config.seed + 1)}
    return graphdef, state, tx, model


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


# ----------------------------------------------------------------------------- data

def auto_buckets(dataset, quantiles=(0.5, 0.9, 1.0), step_s: float = 0.25) -> tuple[int, ...]:
    """A few bucket lengths (samples) from the clip-length quantiles, rounded up to `step_s`."""
    lengths = np.concatenate([[a.shape[0] for a in s.audio] for s in dataset.splits.values()])
    step = int(step_s * dataset.sample_rate)
    qs = np.quantile(lengths, quantiles)
    qs[-1] = lengths.max()
    return tuple(sorted({int(-(-q // step) * step) for q in qs}))


def check_ctc_lengths(config, dataset, buckets) -> None:
    """CTC needs frames >= labels + repeated neighbours; optax silently returns a huge loss
    otherwise, so check every utterance before training and name the first offender."""
    f = config.features
    stride = (config.model.get("frontend") or {}).get("stride", 1) \
        if (config.model.get("frontend") or {}).get("channels", 0) else 1
    for split_name, split in dataset.splits.items():
        for i, (a, text) in enumerate(zip(split.audio, split.transcripts)):
            ids = dataset.encode(text)
            need = len(ids) + int(np.sum(ids[1:] == ids[:-1]))
            frames = features.num_frames(a.shape[0], sample_rate=dataset.sample_rate,
                                         win_ms=f.get("win_ms", 25.0), hop_ms=f.get("hop_ms", 10.0))
            frames = -(-int(frames) // stride)
            if frames < need:
                raise ValueError(
                    f"{dataset.name} {split_name} example {i} ({text!r}): {len(ids)} labels need "
                    f">= {need} frames for CTC but the model sees {frames} (audio {a.shape[0]} "
                    f"samples, hop {f.get('hop_ms', 10.0)} ms, front-end stride {stride}); "
                    f"use a smaller stride or hop")


TASK_TYPES = tuple(tasks.TASKS.values())


def num_classes(dataset) -> int:
    return dataset.num_outputs if isinstance(dataset, TASK_TYPES) else len(dataset.classes)


def load_dataset(config):
    """A speech `Dataset` from rnnbench.data, or a synthetic task for `dataset="task:<name>"`."""
    if config.dataset.startswith("task:"):
        return tasks.make(config.dataset[len("task:"):], **dict(config.get("task") or {}))
    d = config.get("data") or {}
    opts = dict(d.get("options") or {})
    return data_lib.load(config.dataset, data_dir=config.get("data_dir"),
                         protocol=d.get("protocol", 12), seed=d.get("seed", 0),
                         cache_dir=d.get("cache_dir"), **opts)


# ----------------------------------------------------------------------------- devices

@dataclasses.dataclass
class Placement:
    """Data-parallel placement: batch sharded over a 1-D mesh of all devices, params replicated."""

    mesh: Mesh

    @classmethod
    def create(cls) -> "Placement":
        return cls(Mesh(np.array(jax.devices()), ("data",)))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def batch(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("data"))

    def put_batch(self, batch: Batch, model_axis: bool = False) -> Batch:
        """Host numpy batch (this process's rows) -> global arrays sharded on the batch axis
        (axis 1 when the batch has a leading model axis)."""
        sharding = NamedSharding(self.mesh, P(None, "data")) if model_axis else self.batch
        return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}

    def put_state(self, state):
        return jax.device_put(state, self.replicated)


# ----------------------------------------------------------------------------- evaluation

def evaluate(eval_step, params, dataset, split: str, config, buckets, placement) -> list[dict]:
    """Full pass over `split` for each of the N stacked models in `params` (leading axis N):
    loss and accuracy (classify) or CER/WER with greedy CTC decoding. Returns N dicts."""
    n_models = jax.tree.leaves(params)[0].shape[0]
    totals = [dict(loss_sum=0.0, count=0.0, correct=0.0, scored=0.0) for _ in range(n_models)]
    refs: list[str] = []
    hyps: list[list[str]] = [[] for _ in range(n_models)]
    for batch in eval_stream(dataset, split, config, buckets):
        sums = jax.device_get(eval_step(params, placement.put_batch(batch)))  # leaves [N, ...]
        for i, tot in enumerate(totals):
            for k in tot:
                if k in sums:
                    tot[k] += float(sums[k][i])
        if dataset.task == "ctc":
            rows = np.flatnonzero(batch["weights"])
            refs += [dataset.decode(batch["labels"][r, :batch["label_lengths"][r]]) for r in rows]
            for i in range(n_models):
                hyps[i] += [dataset.decode(metrics.ctc_greedy_collapse(
                    sums["best_path"][i, r, :sums["frame_lengths"][i, r]])) for r in rows]
    results = []
    for i, tot in enumerate(totals):
        out = {"loss": tot["loss_sum"] / tot["count"], "examples": int(tot["count"])}
        if dataset.task == "classify":
            out["accuracy"] = tot["correct"] / tot["count"]
        elif dataset.task == "tag":
            out["accuracy"] = tot["correct"] / max(tot["scored"], 1.0)
        elif dataset.task == "ctc":
            out.update(metrics.error_rates(refs, hyps[i]))
        results.append(out)
    return results


def _encoder(dataset):
    return dataset.encode if dataset.task == "ctc" else None


def train_stream(dataset, config, seed: int, buckets, start: int) -> Iterator[Batch]:
    """Host batches from `start` on; batch k depends only on (seed, k)."""
    if isinstance(dataset, TASK_TYPES):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x7A5C)
        make = jax.jit(dataset.batch, static_argnums=1)
        return (jax.device_get(make(jax.random.fold_in(key, k), config.batch_size))
                for k in itertools.count(start))
    return batching.train_batches(dataset.splits["train"], batch_size=config.batch_size,
                                  seed=seed, buckets=buckets, start_step=start,
                                  encode=_encoder(dataset))


def eval_stream(dataset, split: str, config, buckets) -> Iterator[Batch]:
    """One pass over `split`; synthetic tasks use a fixed set of `config.task_eval_size`
    examples per split, the same for every seed."""
    if isinstance(dataset, TASK_TYPES):
        key = jax.random.PRNGKey({"validation": 1, "test": 2}[split] + 0x5EED)
        make = jax.jit(dataset.batch, static_argnums=1)
        n = config.get("task_eval_size", 1024)
        return (jax.device_get(make(jax.random.fold_in(key, k), config.batch_size))
                for k in range(-(-n // config.batch_size)))
    return batching.eval_batches(dataset.splits[split], batch_size=config.batch_size,
                                 buckets=buckets, encode=_encoder(dataset))


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


def _checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.get("keep_checkpoints", 2),
                                           create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                 options=options)


def _git_commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step",
                dynamic_ncols=True, file=sys.stderr)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       wandb_mode: str = "offline", progress: bool = True,
                       dataset=None) -> dict:
    """Trains `config` in `workdir` (resuming from its checkpoints) and returns final metrics."""
    return train_and_evaluate_many([config], [workdir], wandb_mode=wandb_mode,
                                   progress=progress, dataset=dataset)[0]


SEED_KEYS = ("seed",)


def check_same_but_seed(configs) -> None:
    """Runs trained as one vmapped program must differ only in `seed`."""
    ref = json.loads(_without_seed(configs[0]).to_json_best_effort())
    for c in configs[1:]:
        other = json.loads(_without_seed(c).to_json_best_effort())
        if other != ref:
            diff = run_log.diff_keys(ref, other)
            raise ValueError(f"configs trained together may differ only in {SEED_KEYS}; "
                             f"they also differ in {', '.join(diff)}")


def _without_seed(c):
    c = ml_collections.ConfigDict(c.to_dict())
    for k in SEED_KEYS:
        c[k] = 0
    if "wandb" in c:
        c.wandb.name = ""
    return c


def train_and_evaluate_many(configs, workdirs, *, wandb_mode: str = "offline",
                            progress: bool = True, dataset=None) -> list[dict]:
    """Trains N runs that differ only in `seed` as ONE jitted program (`jax.vmap` over a leading
    model axis: params, optimizer state, RNG and data order per model). Each workdir gets what a
    separate run writes. Finished runs are skipped; runs at different resume steps are trained
    one after another instead."""
    t_start = time.time()
    if len(configs) != len(workdirs) or not configs:
        raise ValueError(f"need one workdir per config, got {len(configs)} configs and "
                         f"{len(workdirs)} workdirs")
    if len(set(map(os.path.abspath, workdirs))) != len(workdirs):
        raise ValueError(f"workdirs must be distinct, got {workdirs}")
    for c in configs:
        check_config(c)
    check_same_but_seed(configs)
    for c, w in zip(configs, workdirs):
        os.makedirs(w, exist_ok=True)
        run_log.check_or_write_config(w, c)
    config = configs[0]
    results: list[dict | None] = [_finished(c, w) for c, w in zip(configs, workdirs)]
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results
    mngrs = {i: _checkpoint_manager(workdirs[i], configs[i]) for i in todo}
    starts = {i: mngrs[i].latest_step() or 0 for i in todo}
    if len(set(starts.values())) > 1:  # cannot share one program: train them one by one
        for m in mngrs.values():
            m.close()
        for i in todo:
            results[i] = train_and_evaluate_many([configs[i]], [workdirs[i]],
                                                 wandb_mode=wandb_mode, progress=progress,
                                                 dataset=dataset)[0]
        return results

    dataset = dataset if dataset is not None else load_dataset(config)
    _check_task(config, dataset)
    buckets = None if isinstance(dataset, TASK_TYPES) else (
        tuple(config.get("buckets") or ()) or auto_buckets(dataset))
    if dataset.task == "ctc":
        check_ctc_lengths(config, dataset, buckets)
    start = starts[todo[0]]
    run_configs = [configs[i] for i in todo]

    placement = Placement.create()
    singles = []
    for i, c in zip(todo, run_configs):
        graphdef, state, tx, _ = init_state(c, dataset)
        if start:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
            state = mngrs[i].restore(start, args=ocp.args.StandardRestore(abstract))
        singles.append(state)
    n_params = count_params(singles[0]["params"])
    state = placement.put_state(jax.tree.map(lambda *xs: jnp.stack(xs), *singles))
    del singles
    train_step, eval_step = make_steps(config, graphdef, tx, dataset.task)
    rep = placement.replicated
    train_step = jax.jit(jax.vmap(train_step), donate_argnums=0, out_shardings=rep)
    eval_step = jax.jit(jax.vmap(eval_step, in_axes=(0, None)), out_shardings=rep)

    logs = [run_log.RunLog(workdirs[i], configs[i], wandb_mode=wandb_mode, resume_step=start)
            for i in todo]
    streams = [train_stream(dataset, c, c.seed, buckets, start) for c in run_configs]
    bar = _progress(config.num_steps, start, progress)
    t_train, window_t, window_n = 0.0, time.time(), 0
    try:
        for step in range(start, config.num_steps):
            t0 = time.time()
            batch = stack_batches([next(s) for s in streams])
            state, m = train_step(state, placement.put_batch(batch, model_axis=True))
            m = jax.device_get(m)  # leaves [N]
            t_step = time.time() - t0
            t_train += t_step
            if not np.all(m["finite"]):
                bad = [workdirs[todo[j]] for j in np.flatnonzero(~m["finite"])]
                for mngr in mngrs.values():
                    mngr.wait_until_finished()
                raise FloatingPointError(
                    f"non-finite loss, gradient or update at step {step + 1} in {bad} "
                    f"(loss={m['loss']}, grad_norm={m['grad_norm']}); stopped. The last good "
                    f"checkpoint (step {mngrs[todo[0]].latest_step()}) in each "
                    f"<workdir>/checkpoints is intact.")
            done = step + 1
            window_n += 1
            if done % config.get("log_every", 50) == 0 or done == config.num_steps:
                rate = window_n * config.batch_size / max(time.time() - window_t, 1e-9)
                for j, log in enumerate(logs):
                    scalars = {k: float(v[j]) for k, v in m.items() if k != "finite"}
                    log.write(done, "train", examples_per_s=rate,
                              time_s=log.time_offset + t_train, **scalars)
                window_t, window_n = time.time(), 0
            bar.set_postfix(loss=f"{float(np.mean(m['loss'])):.4f}",
                            ex_per_s=f"{len(todo) * config.batch_size / max(t_step, 1e-9):.0f}",
                            refresh=False)
            bar.update(1)
            if done % config.eval_every == 0 and done != config.num_steps:
                res = evaluate(eval_step, state["params"], dataset, "validation", config,
                               buckets, placement)
                for log, r in zip(logs, res):
                    log.write(done, "validation", time_s=log.time_offset + t_train, **r)
            if done % config.checkpoint_every == 0 or done == config.num_steps:
                for j, i in enumerate(todo):
                    single = jax.tree.map(lambda x: x[j], state)
                    mngrs[i].save(done, args=ocp.args.StandardSave(single))
        for mngr in mngrs.values():
            mngr.wait_until_finished()
    finally:
        bar.close()

    finals: list[dict] = [{} for _ in todo]
    for split in ("validation", "test"):
        res = evaluate(eval_step, state["params"], dataset, split, config, buckets, placement)
        prefix = "val" if split == "validation" else "test"
        for log, r, final in zip(logs, res, finals):
            log.write(config.num_steps, split, time_s=log.time_offset + t_train, **r)
            final.update({f"{prefix}_{k}": v for k, v in r.items()})
    for j, i in enumerate(todo):
        finals[j].update(
            num_params=n_params, steps=config.num_steps, resumed_from_step=start,
            seed=configs[i].seed, models_in_program=len(todo),
            train_time_s=logs[j].time_offset + t_train,
            steps_per_s=(config.num_steps - start) / max(t_train, 1e-9),
            wall_time_s=time.time() - t_start, git_commit=_git_commit(),
            jax_version=jax.__version__, flax_version=_flax_version(),
            devices=[str(d) for d in jax.devices()], dataset=dataset.name, task=dataset.task)
        logs[j].finish(finals[j])
        mngrs[i].close()
        results[i] = finals[j]
    return results


def _finished(config, workdir) -> dict | None:
    """final.json of a run that already completed `config.num_steps`, else None."""
    path = os.path.join(workdir, "final.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        final = json.load(f)
    return final if final.get("steps") == config.num_steps else None


def _check_task(config, dataset) -> None:
    kind = config.model.get("kind", "classifier")
    want = {"classify": "classifier", "regress": "classifier", "ctc": "ctc",
            "tag": "tagger"}[dataset.task]
    if kind != want:
        raise ValueError(f"dataset {dataset.name} is a {dataset.task} task but "
                         f"config.model.kind={kind!r}; use {want!r}")


def _flax_version() -> str:
    import flax
    return flax.__version__
