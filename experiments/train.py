"""Train one model: `python -m experiments.train --config=experiments/configs/kws.py:lstm --workdir=runs/x`.

Override any config field on the command line, e.g. `--config.model.hidden=256`.
Restarting with the same --workdir resumes from its last checkpoint.

Several seeds as ONE compiled program (jax.vmap over a leading model axis), one workdir each:
  python -m experiments.train --config=experiments/configs/kws.py:lstm \\
      --seeds=0,1,2 --workdir=runs/s0,runs/s1,runs/s2

Errors in the config, the data, the workdir or a checkpoint print one line, `error: ...`, and
exit with status 2 (`--verbose` or RNNBENCH_VERBOSE=1 adds the traceback); see rnnbench/errors.py.
"""

import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from rnnbench import errors, hugepages

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:variant].", lock_config=True
)
_WORKDIR = flags.DEFINE_list(
    "workdir",
    None,
    "Run directory (checkpoints, metrics, final.json); with --seeds, "
    "one per seed, comma-separated.",
)
_SEEDS = flags.DEFINE_list("seeds", None, "Train these seeds together in one vmapped program.")
_WANDB = flags.DEFINE_enum(
    "wandb",
    "offline",
    ["online", "offline", "disabled"],
    "Weights & Biases mode (offline needs no network).",
)
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar (for logs).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (multi-host)."
)
flags.mark_flags_as_required(["config"])


def _workdirs() -> list[str]:
    if _WORKDIR.value:
        return _WORKDIR.value
    run_id = os.environ.get("WANDB_RUN_ID") or os.environ.get("WANDB_SWEEP_ID")
    if run_id:  # launched by `wandb agent`: one workdir per W&B run
        return [os.path.join("runs", "wandb", os.environ.get("WANDB_RUN_ID", run_id))]
    raise errors.UserError("--workdir is required")


def main(argv):
    if len(argv) > 1:
        raise errors.UserError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from rnnbench import train

    workdirs = _workdirs()
    config = _CONFIG.value
    train.check_config(config)  # bad configs fail here, before any data or compile work
    if _SEEDS.value:
        try:
            seeds = [int(s) for s in _SEEDS.value]
        except ValueError:
            raise errors.UserError(
                f"--seeds must be comma-separated integers, got {_SEEDS.value}"
            ) from None
        if len(seeds) != len(workdirs):
            raise errors.UserError(
                f"--seeds has {len(seeds)} entries but --workdir has "
                f"{len(workdirs)}; give one workdir per seed"
            )
        configs = []
        for s in seeds:
            c = config.copy_and_resolve_references()
            with c.unlocked():
                c.seed = s
            configs.append(c)
    elif len(workdirs) != 1:
        raise errors.UserError(
            f"--workdir lists {len(workdirs)} dirs; pass --seeds to train "
            "several seeds together, else give one workdir"
        )
    else:
        configs = [config]
    finals = train.train_and_evaluate_many(
        configs, workdirs, wandb_mode=_WANDB.value, progress=not _QUIET.value
    )
    for workdir, final in zip(workdirs, finals):
        keys = [k for k in ("val_accuracy", "test_accuracy", "test_cer", "test_wer") if k in final]
        summary = ", ".join(f"{k}={final[k]:.4f}" for k in keys)
        print(
            f"done: {summary}, params={final['num_params']}, wall={final['wall_time_s']:.0f}s, "
            f"results in {workdir}/final.json",
            file=sys.stdout,
        )


def parse_flags(argv):
    """absl's parser, with one-line errors (rnnbench.errors.UserError) for a missing or broken
    --config file, a --config.<field> the config does not have, or a value absl refuses."""
    _check_config_file(argv)
    try:
        return flags.FLAGS(argv)
    except AttributeError as e:  # raised by ml_collections for an unknown override field
        cause = e.args[0] if e.args else e
        msg = str(cause.args[0] if isinstance(cause, KeyError) else cause)
        raise errors.ConfigError(
            f"--config override names a field the config does not have: {msg}"
        ) from None
    except SyntaxError as e:
        raise errors.ConfigError(f"--config file {e.filename} line {e.lineno}: {e.msg}") from None
    except flags.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise errors.ConfigError(
            " ".join(lines[:1] + lines[-1:] if "Traceback" in str(e) else lines)
        ) from None


def _check_config_file(argv) -> None:
    """A --config=FILE[:variant] whose FILE is missing fails here, naming it (ml_collections
    reports it lazily, as a multi-line OSError)."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--config" and i + 1 < len(argv):
            arg = f"--config={argv[i + 1]}"
        if arg.startswith("--config="):
            path = arg[len("--config=") :].split(":")[0]
            if not os.path.isfile(path):
                raise errors.ConfigError(
                    f"--config file {path!r} does not exist (expected e.g. "
                    "--config=experiments/configs/kws.py:lstm)"
                )


if __name__ == "__main__":
    hugepages.ensure()  # re-exec with glibc huge pages (measured faster JAX CPU steps)
    errors.run(main, flags_parser=parse_flags)
