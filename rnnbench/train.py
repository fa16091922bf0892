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
import json
import math
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rnnbench import cells, features, input_pipeline, models, objectives, provenance, run_log, tasks
from rnnbench import data as data_lib
from rnnbench.optim import (OPTIMIZERS, SCHEDULES, make_optimizer, masked_mse, stability_penalty,
                            weight_penalty)

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
    lr = config.optimizer.get("learning_rate")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"config.optimizer.learning_rate must be a finite number > 0, got {lr!r}")
    f = config.features
    for field in ("win_ms", "hop_ms"):
        if field in f and not f[field] > 0:
            raise ValueError(f"config.features.{field} must be > 0 ms, got {f[field]!r}")
    if f.get("hop_ms", 0) and f.get("win_ms", 0) and f.hop_ms > f.win_ms:
        raise ValueError(f"config.features.hop_ms={f.hop_ms} is longer than win_ms={f.win_ms}: "
                         "samples between windows would be dropped")
    stride = (m.get("frontend") or {}).get("stride", 1)
    if (m.get("frontend") or {}).get("channels", 0) and stride <= 0:
        raise ValueError(f"config.model.frontend.stride must be >= 1, got {stride}")
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


# ----------------------------------------------------------------------------- steps

def make_steps(config, graphdef, tx, objective: objectives.Objective):
    """Returns pure `train_step(state, batch)` and `eval_step(params, batch)` (not jitted).
    The objective says what the loss and the metrics are; this adds the regularisers."""
    opt = config.optimizer
    beta = opt.get("stability_beta", 0.0)
    ae_weight = config.model.get("aux_ae_weight", 0.0)
    l1, l2 = opt.get("l1", 0.0), opt.get("l2", 0.0)

    def loss_fn(params, batch, key, train: bool):
        model = nnx.merge(graphdef, params)
        k_feat, k_model = jax.random.split(key) if train else (None, None)
        feats, flen = compute_features(config, batch, k_feat)
        outputs, aux = objective.forward(model, feats, flen, batch, k_model)
        loss, sums = objective.loss(outputs, aux, batch)
        terms = {"task_loss": loss}
        if beta:
            terms["stability"] = beta * stability_penalty(aux["states"], aux["lengths"])
        if ae_weight:
            terms["reconstruction"] = ae_weight * masked_mse(aux["reconstruction"], feats, flen)
        if l1 or l2:
            terms["weight_penalty"] = weight_penalty(params, l1, l2)
        return sum(terms.values()), (terms, sums, model, outputs, aux)

    def train_step(state: State, batch: Batch) -> tuple[State, dict]:
        key = jax.random.fold_in(state["rng"], state["step"])
        (loss, (terms, sums, *_)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], batch, key, True)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
               "step": state["step"] + 1, "rng": state["rng"]}
        finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
                  & jnp.isfinite(optax.tree.norm(new["params"])))
        # A non-finite step leaves the state untouched; the host loop stops on `finite == False`.
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        return new, {"loss": loss, "grad_norm": grad_norm, "finite": finite, **terms,
                     **objective.train_metrics(sums)}

    def eval_step(params, batch: Batch) -> dict:
        _, (_, sums, model, outputs, aux) = loss_fn(params, batch, jax.random.key(0), False)
        return {**sums, **objective.eval_outputs(model, outputs, aux, batch)}

    return train_step, eval_step


def init_state(config, dataset, objective=None):
    """Builds the model and optimizer; returns (graphdef, state, tx, model)."""
    objective = objective or objectives.make(config, dataset)
    rngs = nnx.Rngs(params=config.seed)
    model = models.build(config.model.to_dict(),
                         num_features=input_pipeline.num_features(config, dataset),
                         num_classes=objective.num_classes(dataset), rngs=rngs)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(config.optimizer, config.num_steps)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
             "rng": jax.random.PRNGKey(config.seed + 1)}
    return graphdef, state, tx, model


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


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

def evaluate(eval_step, params, dataset, split: str, config, buckets, placement,
             objective: objectives.Objective, final: bool = False) -> list[dict]:
    """Full pass over `split` for each of the N stacked models in `params` (leading axis N).
    Returns N metric dicts (the objective's `summarize`: loss, accuracy or CER/WER, ...)."""
    n_models = jax.tree.leaves(params)[0].shape[0]
    accs = [objective.new_accumulator(final) for _ in range(n_models)]
    for batch in input_pipeline.eval_stream(dataset, split, config, buckets,
                                            objective.encoder(dataset)):
        out = jax.device_get(eval_step(params, placement.put_batch(batch)))  # leaves [N, ...]
        for i, acc in enumerate(accs):
            objective.accumulate(acc, dataset, batch, jax.tree.map(lambda x: x[i], out))
    return [objective.summarize(acc, dataset) for acc in accs]


def _checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.get("keep_checkpoints", 2),
                                           create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                 options=options)


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


@dataclasses.dataclass
class Program:
    """What the N runs of one vmapped program share once checked: data, objective, buckets."""

    config: ml_collections.ConfigDict
    dataset: Any
    objective: objectives.Objective
    buckets: tuple[int, ...] | None


def prepare(config, dataset=None) -> Program:
    """Loads and checks everything that can fail before compiling: the dataset, the objective
    for (model kind, dataset task), every split against the buckets and the batch size."""
    dataset = dataset if dataset is not None else input_pipeline.load_dataset(config)
    objective = objectives.make(config, dataset)
    buckets = input_pipeline.buckets_for(config, dataset)
    input_pipeline.check_splits(config, dataset, buckets)
    return Program(config, dataset, objective, buckets)


def init_or_restore(program: Program, configs, mngrs, start: int, placement: Placement):
    """N freshly initialised (or step-`start` restored) states stacked on a leading model axis.
    Returns (graphdef, tx, state, params per model)."""
    singles = []
    for c, mngr in zip(configs, mngrs):
        graphdef, state, tx, _ = init_state(c, program.dataset, program.objective)
        if start:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
            state = mngr.restore(start, args=ocp.args.StandardRestore(abstract))
        singles.append(state)
    n_params = count_params(singles[0]["params"])
    state = placement.put_state(jax.tree.map(lambda *xs: jnp.stack(xs), *singles))
    return graphdef, tx, state, n_params


def train_loop(program: Program, state, train_step, eval_step, configs, workdirs, mngrs, logs,
               start: int, placement: Placement, progress: bool):
    """Steps `start`..num_steps of the N runs: logs train metrics, evaluates on validation every
    `eval_every`, checkpoints every `checkpoint_every`. Returns (state, training seconds)."""
    config, dataset, buckets = program.config, program.dataset, program.buckets
    encode = program.objective.encoder(dataset)
    streams = [input_pipeline.train_stream(dataset, c, c.seed, buckets, start, encode)
               for c in configs]
    bar = _progress(config.num_steps, start, progress)
    t_train, window_t, window_n = 0.0, time.time(), 0
    try:
        for step in range(start, config.num_steps):
            t0 = time.time()
            batch = input_pipeline.stack_batches([next(s) for s in streams])
            state, m = train_step(state, placement.put_batch(batch, model_axis=True))
            m = jax.device_get(m)  # leaves [N]
            t_step = time.time() - t0
            t_train += t_step
            if not np.all(m["finite"]):
                bad = [workdirs[j] for j in np.flatnonzero(~m["finite"])]
                for mngr in mngrs:
                    mngr.wait_until_finished()
                last = mngrs[0].latest_step()
                where = (f"the last good checkpoint (step {last}) in each <workdir>/checkpoints "
                         "is intact" if last else "no checkpoint was written yet")
                raise FloatingPointError(
                    f"non-finite loss, gradient or update at step {step + 1} in {bad} "
                    f"(loss={m['loss']}, grad_norm={m['grad_norm']}); stopped; {where}. "
                    f"Try a lower --config.optimizer.learning_rate or clip_norm.")
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
                            ex_per_s=f"{len(configs) * config.batch_size / max(t_step, 1e-9):.0f}",
                            refresh=False)
            bar.update(1)
            if done % config.eval_every == 0 and done != config.num_steps:
                res = evaluate(eval_step, state["params"], dataset, "validation", config,
                               buckets, placement, program.objective)
                for log, r in zip(logs, res):
                    log.write(done, "validation", time_s=log.time_offset + t_train, **r)
            if done % config.checkpoint_every == 0 or done == config.num_steps:
                for j, mngr in enumerate(mngrs):
                    single = jax.tree.map(lambda x: x[j], state)
                    mngr.save(done, args=ocp.args.StandardSave(single))
        for mngr in mngrs:
            mngr.wait_until_finished()
    finally:
        bar.close()
    return state, t_train


def final_evaluation(program: Program, state, eval_step, logs, t_train: float,
                     placement: Placement) -> list[dict]:
    """Validation and test metrics of each of the N models, prefixed val_ / test_."""
    finals: list[dict] = [{} for _ in logs]
    for split in ("validation", "test"):
        res = evaluate(eval_step, state["params"], program.dataset, split, program.config,
                       program.buckets, placement, program.objective, final=True)
        prefix = "val" if split == "validation" else "test"
        for log, r, final in zip(logs, res, finals):
            log.write(program.config.num_steps, split, time_s=log.time_offset + t_train, **r)
            final.update({f"{prefix}_{k}": v for k, v in r.items()})
    return finals


def train_and_evaluate_many(configs, workdirs, *, wandb_mode: str = "offline",
                            progress: bool = True, dataset=None) -> list[dict]:
    """Trains N runs that differ only in `seed` as ONE jitted program (`jax.vmap` over a leading
    model axis: params, optimizer state, RNG and data order per model). Each workdir gets what a
    separate run writes. Finished runs are skipped; runs at different resume steps are trained
    one after another instead.

    Everything that can be checked before compiling is (config, dataset, objective, buckets);
    a workdir is claimed (config.json written) only after those checks pass."""
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
        run_log.check_config_matches(w, c)
    results: list[dict | None] = [_finished(c, w) for c, w in zip(configs, workdirs)]
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results
    program = prepare(configs[0], dataset)
    for i in todo:
        os.makedirs(workdirs[i], exist_ok=True)
        run_log.check_or_write_config(workdirs[i], configs[i])
    mngrs = {i: _checkpoint_manager(workdirs[i], configs[i]) for i in todo}
    starts = {i: mngrs[i].latest_step() or 0 for i in todo}
    if len(set(starts.values())) > 1:  # cannot share one program: train them one by one
        for m in mngrs.values():
            m.close()
        for i in todo:
            results[i] = train_and_evaluate_many([configs[i]], [workdirs[i]],
                                                 wandb_mode=wandb_mode, progress=progress,
                                                 dataset=program.dataset)[0]
        return results

    start = starts[todo[0]]
    run_configs = [configs[i] for i in todo]
    run_dirs = [workdirs[i] for i in todo]
    run_mngrs = [mngrs[i] for i in todo]
    placement = Placement.create()
    graphdef, tx, state, n_params = init_or_restore(program, run_configs, run_mngrs, start,
                                                    placement)
    train_step, eval_step = make_steps(program.config, graphdef, tx, program.objective)
    rep = placement.replicated
    train_step = jax.jit(jax.vmap(train_step), donate_argnums=0, out_shardings=rep)
    eval_step = jax.jit(jax.vmap(eval_step, in_axes=(0, None)), out_shardings=rep)
    logs = [run_log.RunLog(w, c, wandb_mode=wandb_mode, resume_step=start)
            for w, c in zip(run_dirs, run_configs)]
    state, t_train = train_loop(program, state, train_step, eval_step, run_configs, run_dirs,
                                run_mngrs, logs, start, placement, progress)
    finals = final_evaluation(program, state, eval_step, logs, t_train, placement)
    record = provenance.record({"models_in_program": len(todo)})
    for j, i in enumerate(todo):
        finals[j].update(
            num_params=n_params, steps=program.config.num_steps, resumed_from_step=start,
            seed=configs[i].seed, models_in_program=len(todo),
            train_time_s=logs[j].time_offset + t_train,
            steps_per_s=(program.config.num_steps - start) / max(t_train, 1e-9),
            wall_time_s=time.time() - t_start, git_commit=record["git_commit"],
            jax_version=jax.__version__, flax_version=record["versions"].get("flax"),
            devices=[str(d) for d in jax.devices()], dataset=program.dataset.name,
            task=program.dataset.task, objective=program.objective.name,
            primary_metric=program.objective.primary, provenance=record)
        logs[j].finish(finals[j])
        mngrs[i].close()
        results[i] = finals[j]
    return results


def _finished(config, workdir) -> dict | None:
    """final.json of a run that already completed `config.num_steps`, else None."""
    path = os.path.join(workdir, "final.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            final = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable ({e}); move it aside to re-run the final "
                         f"evaluation from the last checkpoint") from None
    return final if final.get("steps") == config.num_steps else None


# TODO(lead): remove once rnnbench/diagnostics.py and experiments/longrange.py use the new homes.
load_dataset = input_pipeline.load_dataset
auto_buckets = input_pipeline.auto_buckets
eval_stream = input_pipeline.eval_stream
TASK_TYPES = input_pipeline.MEMORY_TASKS


def task_loss(task: str, logits, aux, batch):
    """Deprecated shim: the objective's loss for a dataset task name."""
    kind = {"classify": "classifier", "regress": "classifier", "tag": "tagger", "ctc": "ctc"}[task]
    return objectives.find(kind, task)().loss(logits, aux, batch)
