"""Train one model: `python -m experiments.train --config=experiments/configs/kws.py:lstm --workdir=runs/x`.

Override any config field on the command line, e.g. `--config.model.hidden=256`.
Restarting with the same --workdir resumes from its last checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_WANDB = flags.DEFINE_enum("wandb", "offline", ["online", "offline", "disabled"],
                           "Weights & Biases mode (offline needs no network).")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar (for logs).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() (multi-host).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    import jax
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from rnnbench import train
    final = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, wandb_mode=_WANDB.value,
                                     progress=not _QUIET.value)
    keys = [k for k in ("val_accuracy", "test_accuracy", "test_cer", "test_wer") if k in final]
    summary = ", ".join(f"{k}={final[k]:.4f}" for k in keys)
    print(f"done: {summary}, params={final['num_params']}, wall={final['wall_time_s']:.0f}s, "
          f"results in {_WORKDIR.value}/final.json")


if __name__ == "__main__":
    app.run(main)
