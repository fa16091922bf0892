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

import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import re
import shutil
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
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rnnbench import (
    atomic,
    cells,
    checkpoint_files,
    errors,
    features,
    input_pipeline,
    models,
    objectives,
    provenance,
    run_log,
    slu,
    tasks,
)
from rnnbench import data as data_lib
from rnnbench import precision as precision_lib
from rnnbench.errors import CheckpointError, ConfigError, WorkdirError
from rnnbench.optim import (
    OPTIMIZERS,
    SCHEDULES,
    make_optimizer,
    masked_mse,
    stability_penalty,
    weight_penalty,
)

State = dict[str, Any]
Batch = dict[str, Any]


# ----------------------------------------------------------------------------- config checks

RATES = ("dropout", "input_dropout", "recurrent_dropout", "zoneout")  # config.model.*, in [0, 1)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _need(ok: bool, name: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"config.{name} must be {expected}, got {value!r}")


def check_config(config: ml_collections.ConfigDict, devices: int | None = None) -> None:
    """Raises ConfigError (a ValueError) naming the field of a config that cannot run, before
    any data or compile work: types, ranges, known names, sizes, strides, rates, windows."""
    for field in (
        "seed",
        "batch_size",
        "num_steps",
        "eval_every",
        "checkpoint_every",
        "dataset",
        "model",
        "optimizer",
        "features",
    ):
        if field not in config:
            raise ConfigError(f"config has no field {field!r}; every config needs it")
    _need(_is_int(config.seed) and config.seed >= 0, "seed", "an integer >= 0", config.seed)
    if "precision" in config and config.precision not in precision_lib.POLICIES:
        raise ConfigError(
            f"config.precision={config.precision!r} is not a precision policy; "
            f"choose one of {list(precision_lib.POLICIES)}"
        )
    for field in (
        "batch_size",
        "num_steps",
        "eval_every",
        "checkpoint_every",
        "log_every",
        "keep_checkpoints",
    ):
        if field in config:
            v = config[field]
            if _is_int(v) and v <= 0:
                raise ConfigError(f"config.{field} must be positive, got {v}")
            _need(_is_int(v), field, "a positive integer", v)
    known = data_lib.NAMES + tuple(f"task:{t}" for t in tasks.TASKS)
    if config.dataset not in known:
        raise ConfigError(f"unknown config.dataset {config.dataset!r}; known: {known}")
    for b in tuple(config.get("buckets") or ()):
        _need(
            _is_int(b) and b > 0,
            "buckets",
            "positive sample counts (e.g. 16000,24000)",
            tuple(config.buckets),
        )
    _check_model(config.model)
    _check_optimizer(config.optimizer, config.num_steps)
    _check_features(config.features, config.get("spec_augment"))
    n = jax.device_count() if devices is None else devices
    if config.batch_size % n:
        raise ConfigError(
            f"config.batch_size={config.batch_size} must be divisible by the "
            f"number of devices ({n}) for data-parallel training"
        )


def _check_model(m) -> None:
    if m.get("kind", "classifier") not in models.MODELS:
        raise ConfigError(f"unknown config.model.kind {m.kind!r}; known: {sorted(models.MODELS)}")
    if m.cell not in cells.CELLS:
        raise ConfigError(f"unknown config.model.cell {m.cell!r}; known: {sorted(cells.CELLS)}")
    poolings = slu.POOLINGS if m.get("kind") == "intent" else models.POOLINGS
    if m.get("pooling", "last") not in poolings:
        raise ConfigError(f"unknown config.model.pooling {m.pooling!r}; known: {poolings}")
    for field in ("hidden", "layers"):
        if _is_int(m[field]) and m[field] <= 0:
            raise ConfigError(f"config.model.{field} must be positive, got {m[field]}")
        _need(_is_int(m[field]), f"model.{field}", "a positive integer", m[field])
    for field in RATES:
        v = m.get(field, 0.0)
        _need(_is_number(v) and 0.0 <= v < 1.0, f"model.{field}", "a rate in [0, 1)", v)
    unroll = m.get("unroll", "auto")
    _need(
        unroll == "auto" or (_is_int(unroll) and unroll >= 0),
        "model.unroll",
        'an integer >= 1, or 0 / "auto" (1 on CPU, more on accelerators)',
        unroll,
    )
    heads = m.get("attention_heads", 0)
    _need(_is_int(heads) and heads >= 0, "model.attention_heads", "an integer >= 0", heads)
    width = m.hidden * (2 if m.get("bidirectional", False) else 1)
    if heads and width % heads:
        raise ConfigError(
            f"config.model.attention_heads={heads} must divide the RNN's output "
            f"size {width} (config.model.hidden={m.hidden}"
            f"{' x 2 directions' if m.get('bidirectional') else ''})"
        )
    front = m.get("frontend") or {}
    if front.get("channels", 0):
        for field in ("channels", "kernel", "stride"):
            v = front.get(field, 1)
            _need(_is_int(v) and v >= 1, f"model.frontend.{field}", "an integer >= 1", v)
    w = m.get("aux_ae_weight", 0.0)
    _need(
        _is_number(w) and math.isfinite(w) and w >= 0,
        "model.aux_ae_weight",
        "a finite number >= 0",
        w,
    )


def _check_optimizer(opt, num_steps: int) -> None:
    if opt.name not in OPTIMIZERS:
        raise ConfigError(
            f"unknown config.optimizer.name {opt.name!r}; known: {sorted(OPTIMIZERS)}"
        )
    if opt.schedule not in SCHEDULES:
        raise ConfigError(f"unknown config.optimizer.schedule {opt.schedule!r}; known: {SCHEDULES}")
    lr = opt.get("learning_rate")
    if not _is_number(lr) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"config.optimizer.learning_rate must be a finite number > 0, got {lr!r}")
    for field in ("clip_norm", "weight_decay", "l1", "l2", "stability_beta"):
        v = opt.get(field, 0.0)
        _need(
            _is_number(v) and math.isfinite(v) and v >= 0,
            f"optimizer.{field}",
            "a finite number >= 0",
            v,
        )
    for field in ("b1", "b2", "momentum"):
        if field in opt:
            v = opt[field]
            _need(_is_number(v) and 0.0 <= v < 1.0, f"optimizer.{field}", "in [0, 1)", v)
    warmup = opt.get("warmup_steps", 0)
    if _is_int(warmup) and warmup < 0:
        raise ConfigError(f"config.optimizer.warmup_steps must be >= 0, got {warmup}")
    _need(_is_int(warmup), "optimizer.warmup_steps", "an integer >= 0", warmup)
    if opt.schedule == "cosine" and max(warmup, 1) >= num_steps:
        raise ConfigError(
            f"config.optimizer.warmup_steps={warmup} leaves no steps for the cosine decay of "
            f"config.num_steps={num_steps}; lower --config.optimizer.warmup_steps or "
            "raise --config.num_steps (or use --config.optimizer.schedule=constant)"
        )


def _check_features(f, sa) -> None:
    kind = f.get("kind", "logmel")
    if kind not in ("logmel", "mfcc"):
        raise ConfigError(f"unknown config.features.kind {kind!r}; known: ('logmel', 'mfcc')")
    norm = f.get("normalize", "utterance")
    if norm not in ("utterance", "global", "none"):
        raise ConfigError(
            f"unknown config.features.normalize {norm!r}; known: ('utterance', 'global', 'none')"
        )
    for field in ("win_ms", "hop_ms"):
        if field in f:
            v = f[field]
            if not (_is_number(v) and math.isfinite(v) and v > 0):
                raise ConfigError(f"config.features.{field} must be > 0 ms, got {v!r}")
    win_ms, hop_ms = f.get("win_ms", 25.0), f.get("hop_ms", 10.0)
    if hop_ms > win_ms:
        raise ConfigError(
            f"config.features.hop_ms={hop_ms} is longer than win_ms={win_ms}: "
            "samples between windows would be dropped"
        )
    if round(data_lib.SAMPLE_RATE * hop_ms / 1000.0) < 1:
        raise ConfigError(
            f"config.features.hop_ms={hop_ms} is shorter than one sample at "
            f"{data_lib.SAMPLE_RATE} Hz"
        )
    n_mels = f.get("n_mels", 40)
    _need(_is_int(n_mels) and n_mels >= 1, "features.n_mels", "an integer >= 1", n_mels)
    if kind == "mfcc":
        n_mfcc = f.get("n_mfcc", 13)
        _need(
            _is_int(n_mfcc) and 1 <= n_mfcc <= n_mels,
            "features.n_mfcc",
            f"an integer in [1, n_mels={n_mels}]",
            n_mfcc,
        )
    win = round(data_lib.SAMPLE_RATE * win_ms / 1000.0)
    if f.get("n_fft") is not None:
        _need(
            _is_int(f.n_fft) and f.n_fft >= win,
            "features.n_fft",
            f"an integer >= the window length ({win} samples)",
            f.n_fft,
        )
    for field in ("num_time_masks", "time_mask_width", "num_freq_masks", "freq_mask_width"):
        if sa and field in sa:
            _need(
                _is_int(sa[field]) and sa[field] >= 0,
                f"spec_augment.{field}",
                "an integer >= 0",
                sa[field],
            )
    if sa and "mel_warp" in sa:
        _need(
            isinstance(sa.mel_warp, (int, float))
            and not isinstance(sa.mel_warp, bool)
            and 0.0 <= sa.mel_warp < 1.0,
            "spec_augment.mel_warp",
            "a number in [0, 1) (the largest relative frequency warp, e.g. 0.1)",
            sa.mel_warp,
        )


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

    policy = config.get("precision", precision_lib.DEFAULT)

    def loss_fn(params, batch, key, train: bool):
        model = nnx.merge(graphdef, params)
        k_feat, k_model = jax.random.split(key) if train else (None, None)
        with precision_lib.scope(policy):  # matmuls outside the cells: features, heads, grads
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
            state["params"], batch, key, True
        )
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "rng": state["rng"],
        }
        finite = (
            jnp.isfinite(loss)
            & jnp.isfinite(grad_norm)
            & jnp.isfinite(optax.tree.norm(new["params"]))
        )
        # A non-finite step leaves the state untouched; the host loop stops on `finite == False`.
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        return new, {
            "loss": loss,
            "grad_norm": grad_norm,
            "finite": finite,
            **terms,
            **objective.train_metrics(sums),
        }

    def eval_step(params, batch: Batch) -> dict:
        _, (_, sums, model, outputs, aux) = loss_fn(params, batch, jax.random.key(0), False)
        return {**sums, **objective.eval_outputs(model, outputs, aux, batch)}

    return train_step, eval_step


def init_state(config, dataset, objective=None):
    """Builds the model and optimizer; returns (graphdef, state, tx, model)."""
    objective = objective or objectives.make(config, dataset)
    rngs = nnx.Rngs(params=config.seed)
    model_cfg = {
        **config.model.to_dict(),
        "precision": config.get("precision", precision_lib.DEFAULT),
    }
    model = models.build(
        model_cfg,
        num_features=input_pipeline.num_features(config, dataset),
        num_classes=objective.num_classes(dataset),
        rngs=rngs,
    )
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(config.optimizer, config.num_steps)
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.PRNGKey(config.seed + 1),
    }
    return graphdef, state, tx, model


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


# ----------------------------------------------------------------------------- devices


@dataclasses.dataclass
class Placement:
    """Data-parallel placement: batch sharded over a 1-D mesh of all devices, params replicated."""

    mesh: Mesh

    @classmethod
    def create(cls) -> Placement:
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


def evaluate(
    eval_step,
    params,
    dataset,
    split: str,
    config,
    buckets,
    placement,
    objective: objectives.Objective,
    final: bool = False,
) -> list[dict]:
    """Full pass over `split` for each of the N stacked models in `params` (leading axis N).
    Returns N metric dicts (the objective's `summarize`: loss, accuracy or CER/WER, ...)."""
    n_models = jax.tree.leaves(params)[0].shape[0]
    accs = [objective.new_accumulator(final) for _ in range(n_models)]
    for batch in input_pipeline.eval_stream(
        dataset,
        split,
        config,
        buckets,
        objective.encoder(dataset),
        objective.meaning_encoder(dataset),
    ):
        out = jax.device_get(eval_step(params, placement.put_batch(batch)))  # leaves [N, ...]
        for i, acc in enumerate(accs):
            objective.accumulate(acc, dataset, batch, jax.tree.map(lambda x, i=i: x[i], out))
    return [objective.summarize(acc, dataset) for acc in accs]


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def _checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
    """Orbax manager of workdir/checkpoints. Saves are synchronous: an asynchronous save that
    fails (read-only or full disk) left orbax's background threads holding the process open
    forever; these checkpoints are small and written in a fraction of a second."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.get("keep_checkpoints", 2),
        create=True,
        cleanup_tmp_directories=True,
        enable_async_checkpointing=False,
    )
    try:
        return ocp.CheckpointManager(_checkpoint_dir(workdir), options=options)
    except Exception as e:  # orbax/etils raise many kinds for a bad directory
        raise CheckpointError(
            f"cannot use the checkpoint directory {_checkpoint_dir(workdir)} ({_cause(e)})"
        ) from e


_CAUSES = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Permission denied",
    "File too large",
    "No such file or directory",
)


def _cause(e: BaseException) -> str:
    """The short reason behind an orbax/tensorstore error (their messages run to pages): a known
    OS cause if one is named anywhere in the chain, else the first line of the innermost
    error."""
    chain = []
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or (e.__context__ if not e.__suppress_context__ else None)
    for err in chain:
        if isinstance(err, OSError) and err.strerror:
            return err.strerror
        for cause in _CAUSES:
            if cause in str(err):
                return cause
    inner = next(
        (err for err in reversed(chain) if str(err) and not isinstance(err, StopIteration)),
        chain[0],
    )
    text = str(inner).split(" See full TensorStore details")[0]
    text = re.sub(r' in OCDBT database at local file "[^"]*"', "", text)
    first = " ".join((text.strip().splitlines() or [""])[0].split())
    return f"{type(inner).__name__}: {first[:200]}" if first else type(inner).__name__


class _OrbaxTaskNoise(logging.Filter):
    """Drops asyncio's "(Task|Future) exception was never retrieved" for orbax's reads/writes:
    it is logged whenever such a task is garbage-collected, which may be after the failed save
    or restore has been reported as one CheckpointError line (or recovered from)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        ours = "orbax" in msg or "TensorStore" in msg or "OCDBT" in msg
        return not ("exception was never retrieved" in msg.split("\n", 1)[0] and ours)


_ORBAX_TASK_NOISE = _OrbaxTaskNoise()


@contextlib.contextmanager
def _quiet_orbax():
    """Mutes what orbax and tensorstore print from their threads while a save or restore fails
    (tracebacks logged at ERROR, 'Exception ignored in <coroutine>'): the CheckpointError says
    it in one line. `--verbose` / RNNBENCH_VERBOSE=1 keeps it all."""
    if errors.is_verbose():
        yield
        return
    asyncio_logger = logging.getLogger("asyncio")
    if _ORBAX_TASK_NOISE not in asyncio_logger.filters:  # stays: such tasks may die later
        asyncio_logger.addFilter(_ORBAX_TASK_NOISE)
    absl_logger = logging.getLogger("absl")
    level, hook = absl_logger.level, sys.unraisablehook
    absl_logger.setLevel(logging.CRITICAL + 1)
    sys.unraisablehook = lambda _: None
    try:
        yield
    finally:
        gc.collect()  # failed coroutines report while collected: still muted here
        absl_logger.setLevel(level)
        sys.unraisablehook = hook


def _remove_tmp_checkpoints(workdir: str) -> None:
    """Removes orbax's `<step>.orbax-checkpoint-tmp*` left by a save that failed."""
    d = _checkpoint_dir(workdir)
    for name in os.listdir(d) if os.path.isdir(d) else []:
        if ".orbax-checkpoint-tmp" in name:
            shutil.rmtree(os.path.join(d, name), ignore_errors=True)


def save_checkpoint(mngr: ocp.CheckpointManager, workdir: str, step: int, state) -> None:
    """Saves `state` as checkpoint `step`; raises CheckpointError (after removing the partial
    write) if it cannot be written, e.g. on a full disk or a read-only directory."""
    try:
        with _quiet_orbax():
            mngr.save(step, args=ocp.args.StandardSave(state))
            mngr.wait_until_finished()
        checkpoint_files.write_manifest(os.path.join(_checkpoint_dir(workdir), str(step)))
    except Exception as e:  # tensorstore/orbax/OSError: all mean "not saved"
        _remove_tmp_checkpoints(workdir)
        good = [s for s in run_log.checkpoint_steps(workdir) if s != step]
        last = (
            f"the last good checkpoint (step {max(good)}) is intact"
            if good
            else "no checkpoint was written yet"
        )
        raise CheckpointError(
            f"could not write checkpoint step {step} to {_checkpoint_dir(workdir)} "
            f"({_cause(e)}); stopped; {last}. Free space or fix permissions, then run the same "
            "command to resume"
        ) from e


def _check_finite(state) -> None:
    for x in jax.tree.leaves(state):
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise ValueError("it holds non-finite values")


def restore_newest(workdir: str, config, template: State) -> tuple[int, State | None, list[str]]:
    """The newest checkpoint of `workdir` that restores into the structure of `template`:
    (step, state, moved). Newer checkpoints that fail to restore (or hold NaN/inf) are moved
    aside to checkpoints/<step>.corrupt (not deleted) and reported on stderr. (0, None, []) for
    a workdir without checkpoints; CheckpointError, moving nothing, if none restores."""
    steps = sorted(run_log.checkpoint_steps(workdir), reverse=True)
    if not steps:
        return 0, None, []
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    failed = []
    for step in steps:
        damage = checkpoint_files.damage(os.path.join(_checkpoint_dir(workdir), str(step)))
        if damage:
            failed.append((step, damage))
            continue
        mngr = _checkpoint_manager(workdir, config)  # fresh: a failed restore can spoil one
        try:
            with _quiet_orbax():
                state = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
            _check_finite(state)
        except Exception as e:  # noqa: BLE001 - a corrupt checkpoint fails in many ways
            failed.append((step, _cause(e)))
            continue
        finally:
            mngr.close()
        moved = []
        for bad, why in failed:
            moved.append(_move_aside(workdir, bad))
            print(
                f"warning: checkpoint step {bad} in {_checkpoint_dir(workdir)} cannot be "
                f"restored ({why}); moved it to {moved[-1]}; resuming from step {step}",
                file=sys.stderr,
                flush=True,
            )
        return step, state, moved
    step, why = failed[0]
    raise CheckpointError(
        f"no checkpoint in {_checkpoint_dir(workdir)} restores (newest, step {step}: {why}); "
        f"if the model code changed since they were written, use a new --workdir; if they are "
        f"damaged, move them aside to start again"
    )


def _move_aside(workdir: str, step: int) -> str:
    """checkpoints/<step> -> checkpoints/<step>.corrupt (or .corrupt-2, ... if taken)."""
    src = os.path.join(_checkpoint_dir(workdir), str(step))
    dst, k = f"{src}.corrupt", 1
    while os.path.exists(dst):
        k += 1
        dst = f"{src}.corrupt-{k}"
    os.rename(src, dst)
    return dst


# ----------------------------------------------------------------------------- the run


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _say(enabled: bool, msg: str) -> None:
    """A phase message on stderr (the phases before and after the progress bar)."""
    if enabled:
        print(msg, file=sys.stderr, flush=True)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    wandb_mode: str = "offline",
    progress: bool = True,
    dataset=None,
) -> dict:
    """Trains `config` in `workdir` (resuming from its checkpoints) and returns final metrics."""
    return train_and_evaluate_many(
        [config], [workdir], wandb_mode=wandb_mode, progress=progress, dataset=dataset
    )[0]


SEED_KEYS = ("seed",)


def check_same_but_seed(configs) -> None:
    """Runs trained as one vmapped program must differ only in `seed`."""
    ref = json.loads(_without_seed(configs[0]).to_json_best_effort())
    for c in configs[1:]:
        other = json.loads(_without_seed(c).to_json_best_effort())
        if other != ref:
            diff = run_log.diff_keys(ref, other)
            raise ConfigError(
                f"configs trained together may differ only in {SEED_KEYS}; "
                f"they also differ in {', '.join(diff)}"
            )


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


def _loading_message(config) -> str:
    name = config.dataset
    if name.startswith("synth_"):
        return (
            f"loading dataset {name} (built with eSpeak NG on first use, about a minute; "
            "cached after)..."
        )
    where = config.get("data_dir") or ("$RNNBENCH_FSDD_DIR" if name.startswith("fsdd") else "")
    return f"loading dataset {name}{f' from {where}' if where else ''}..."


def prepare(config, dataset=None, progress: bool = False) -> Program:
    """Loads and checks everything that can fail before compiling: the dataset, the objective
    for (model kind, dataset task), every split against the buckets and the batch size."""
    if dataset is None:
        t0 = time.time()
        if not config.dataset.startswith("task:"):
            _say(progress, _loading_message(config))
        dataset = input_pipeline.load_dataset(config)
        if not input_pipeline.is_memory_task(dataset):
            sizes = ", ".join(f"{len(s)} {n}" for n, s in dataset.splits.items())
            _say(progress, f"loaded {dataset.name}: {sizes} clips in {time.time() - t0:.0f} s")
    objective = objectives.make(config, dataset)
    buckets = input_pipeline.buckets_for(config, dataset)
    input_pipeline.check_splits(config, dataset, buckets)
    return Program(config, dataset, objective, buckets)


def init_states(program: Program, configs) -> tuple[Any, Any, list[State]]:
    """Builds each run's model and optimizer (the model config's errors surface here, before
    any workdir is claimed). Returns (graphdef, tx, fresh state per run)."""
    states = []
    for c in configs:
        graphdef, state, tx, _ = init_state(c, program.dataset, program.objective)
        states.append(state)
    return graphdef, tx, states


def init_or_restore(program: Program, configs, workdirs, fresh: list[State]):
    """Per run: the newest checkpoint that restores, else the fresh state. Returns
    [(start step, state, checkpoints moved aside)] in the order of `configs`."""
    out = []
    for c, w, state in zip(configs, workdirs, fresh):
        start, restored, moved = restore_newest(w, c, state)
        out.append((start, restored if restored is not None else state, moved))
    return out


def train_loop(
    program: Program,
    state,
    train_step,
    eval_step,
    configs,
    workdirs,
    mngrs,
    logs,
    start: int,
    placement: Placement,
    progress: bool,
):
    """Steps `start`..num_steps of the N runs: logs train metrics, evaluates on validation every
    `eval_every`, checkpoints every `checkpoint_every`. Returns (state, training seconds)."""
    config, dataset, buckets = program.config, program.dataset, program.buckets
    encode = program.objective.encoder(dataset)
    encode_meaning = program.objective.meaning_encoder(dataset)
    streams = [
        input_pipeline.train_stream(dataset, c, c.seed, buckets, start, encode, encode_meaning)
        for c in configs
    ]
    _say(
        progress,
        f"training {len(configs)} run(s) from step {start} to {config.num_steps} "
        "(the first step compiles the program)...",
    )
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
                last = run_log.checkpoint_steps(workdirs[0])
                where = (
                    f"the last good checkpoint (step {last[-1]}) in each "
                    "<workdir>/checkpoints is intact"
                    if last
                    else "no checkpoint was written yet"
                )
                raise FloatingPointError(
                    f"non-finite loss, gradient or update at step {step + 1} in {bad} "
                    f"(loss={m['loss']}, grad_norm={m['grad_norm']}); stopped; {where}. "
                    f"Try a lower --config.optimizer.learning_rate or clip_norm."
                )
            done = step + 1
            window_n += 1
            if done % config.get("log_every", 50) == 0 or done == config.num_steps:
                rate = window_n * config.batch_size / max(time.time() - window_t, 1e-9)
                for j, log in enumerate(logs):
                    scalars = {k: float(v[j]) for k, v in m.items() if k != "finite"}
                    log.write(
                        done,
                        "train",
                        examples_per_s=rate,
                        time_s=log.time_offset + t_train,
                        **scalars,
                    )
                window_t, window_n = time.time(), 0
            bar.set_postfix(
                loss=f"{float(np.mean(m['loss'])):.4f}",
                ex_per_s=f"{len(configs) * config.batch_size / max(t_step, 1e-9):.0f}",
                refresh=False,
            )
            bar.update(1)
            if done % config.eval_every == 0 and done != config.num_steps:
                bar.set_postfix_str("evaluating on validation")
                res = evaluate(
                    eval_step,
                    state["params"],
                    dataset,
                    "validation",
                    config,
                    buckets,
                    placement,
                    program.objective,
                )
                for log, r in zip(logs, res):
                    log.write(done, "validation", time_s=log.time_offset + t_train, **r)
            if done % config.checkpoint_every == 0 or done == config.num_steps:
                for j, (mngr, w) in enumerate(zip(mngrs, workdirs)):
                    save_checkpoint(mngr, w, done, jax.tree.map(lambda x, j=j: x[j], state))
    finally:
        bar.close()
    return state, t_train


def final_evaluation(
    program: Program, state, eval_step, logs, t_train: float, placement: Placement
) -> list[dict]:
    """Validation and test metrics of each of the N models, prefixed val_ / test_."""
    finals: list[dict] = [{} for _ in logs]
    for split in ("validation", "test"):
        res = evaluate(
            eval_step,
            state["params"],
            program.dataset,
            split,
            program.config,
            program.buckets,
            placement,
            program.objective,
            final=True,
        )
        prefix = "val" if split == "validation" else "test"
        for log, r, final in zip(logs, res, finals):
            log.write(program.config.num_steps, split, time_s=log.time_offset + t_train, **r)
            final.update({f"{prefix}_{k}": v for k, v in r.items()})
    return finals


def train_and_evaluate_many(
    configs, workdirs, *, wandb_mode: str = "offline", progress: bool = True, dataset=None
) -> list[dict]:
    """Trains N runs that differ only in `seed` as ONE jitted program (`jax.vmap` over a leading
    model axis: params, optimizer state, RNG and data order per model). Each workdir gets what a
    separate run writes. Finished runs are skipped; runs at different resume steps are trained
    as one program per resume step.

    Order: the checks that read nothing (config, workdirs), then the data, objective, buckets
    and model (`prepare`, `init_states`), and only then are the workdirs claimed (locked,
    config.json written); a start that fails before its first checkpoint un-claims them."""
    t_start = time.time()
    if len(configs) != len(workdirs) or not configs:
        raise ConfigError(
            f"need one workdir per config, got {len(configs)} configs and {len(workdirs)} workdirs"
        )
    if len(set(map(os.path.abspath, workdirs))) != len(workdirs):
        raise WorkdirError(f"workdirs must be distinct, got {workdirs}")
    for c in configs:
        check_config(c)
    check_same_but_seed(configs)
    for c, w in zip(configs, workdirs):
        run_log.check_workdir(w)
        run_log.check_config_matches(w, c)
    results: list[dict | None] = [_finished(c, w) for c, w in zip(configs, workdirs)]
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results
    program = prepare(configs[0], dataset, progress)
    graphdef, tx, fresh = init_states(program, [configs[i] for i in todo])
    placement = Placement.create()
    with contextlib.ExitStack() as claims:
        for i in todo:
            claims.enter_context(run_log.claim(workdirs[i], configs[i]))
            for name, text in program.objective.artifacts().items():  # e.g. the decoding LM
                atomic.write_text(os.path.join(workdirs[i], name), text)
            if hasattr(program.dataset, "classes"):  # not the generated memory tasks
                atomic.write_json(  # inference needs no dataset for the label names
                    os.path.join(workdirs[i], "classes.json"),
                    {"task": program.dataset.task, "classes": list(program.dataset.classes)},
                )
        runs = init_or_restore(
            program, [configs[i] for i in todo], [workdirs[i] for i in todo], fresh
        )
        for start in sorted({r[0] for r in runs}):  # one program per resume step
            group = [(i, run) for i, run in zip(todo, runs) if run[0] == start]
            finals = _train_program(
                program,
                graphdef,
                tx,
                [configs[i] for i, _ in group],
                [workdirs[i] for i, _ in group],
                [r for _, r in group],
                start,
                placement,
                wandb_mode,
                progress,
                t_start,
            )
            for (i, _), final in zip(group, finals):
                results[i] = final
    return results


def _train_program(
    program: Program,
    graphdef,
    tx,
    configs,
    workdirs,
    runs,
    start: int,
    placement: Placement,
    wandb_mode: str,
    progress: bool,
    t_start: float,
) -> list[dict]:
    """Trains runs that resume from the same step as one vmapped program; writes final.json."""
    state = placement.put_state(jax.tree.map(lambda *xs: jnp.stack(xs), *[r[1] for r in runs]))
    n_params = count_params(runs[0][1]["params"])
    train_step, eval_step = make_steps(program.config, graphdef, tx, program.objective)
    rep = placement.replicated
    train_step = jax.jit(jax.vmap(train_step), donate_argnums=0, out_shardings=rep)
    eval_step = jax.jit(jax.vmap(eval_step, in_axes=(0, None)), out_shardings=rep)
    with contextlib.ExitStack() as stack:
        mngrs = []
        for w, c in zip(workdirs, configs):
            mngrs.append(_checkpoint_manager(w, c))
            stack.callback(mngrs[-1].close)
            stack.callback(_remove_tmp_checkpoints, w)
        logs = []
        for w, c in zip(workdirs, configs):
            logs.append(run_log.RunLog(w, c, wandb_mode=wandb_mode, resume_step=start))
            stack.callback(logs[-1].close)  # a no-op once `finish` ran
        state, t_train = train_loop(
            program,
            state,
            train_step,
            eval_step,
            configs,
            workdirs,
            mngrs,
            logs,
            start,
            placement,
            progress,
        )
        _say(progress, "evaluating on the validation and test splits...")
        finals = final_evaluation(program, state, eval_step, logs, t_train, placement)
        policy = precision_lib.effective(
            program.config.get("precision", precision_lib.DEFAULT),
            program.config.model.get("dtype") or None,
        )
        record = provenance.record({"models_in_program": len(configs), "precision": policy})
        skipped = list(getattr(program.dataset, "skipped_files", None) or [])
        for j, c in enumerate(configs):
            finals[j].update(
                num_params=n_params,
                steps=program.config.num_steps,
                resumed_from_step=start,
                seed=c.seed,
                models_in_program=len(configs),
                train_time_s=logs[j].time_offset + t_train,
                steps_per_s=(program.config.num_steps - start) / max(t_train, 1e-9),
                wall_time_s=time.time() - t_start,
                git_commit=record["git_commit"],
                jax_version=jax.__version__,
                flax_version=record["versions"].get("flax"),
                devices=[str(d) for d in jax.devices()],
                dataset=program.dataset.name,
                task=program.dataset.task,
                objective=program.objective.name,
                primary_metric=program.objective.primary,
                provenance=record,
                precision=policy,
                wandb_mode=logs[j].wandb_mode,
                wandb_wait_s=logs[j].wandb_wait_s,
                corrupt_checkpoints=runs[j][2],
                skipped_audio_files=skipped,
            )
            logs[j].finish(finals[j])
    return finals


def _finished(config, workdir) -> dict | None:
    """final.json of a run that already completed `config.num_steps`, else None."""
    path = os.path.join(workdir, "final.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            final = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(
            f"{path} is unreadable ({e}); move it aside to re-run the final "
            f"evaluation from the last checkpoint"
        ) from None
    return final if final.get("steps") == config.num_steps else None
