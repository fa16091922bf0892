"""Run a named sweep of a config file: one workdir per run under --workdir, plus sweep.json.

  python -m experiments.sweep --config=experiments/configs/kws.py:lstm --sweep=cells \\
      --workdir=runs/kws_cells --parallel=2

Sweeps are defined by `sweeps()` in the config file (see rnnbench/sweep.py). Finished runs are
skipped and unfinished ones resume, so rerunning the same command continues a stopped sweep.
Exit status: 0 all runs done, 1 some failed (see sweep.json and the runs' error.txt), 2 bad input.
sweep.json records how this command ran the sweep (backend, --parallel, --vmap_seeds, pinning,
commit), and the tables say so.

Backends: local (subprocesses here, --parallel at once, pinned to their own cores on CPU),
submitit (SLURM; `--submitit_cluster=local` runs jobs here), wandb (writes W&B grid sweep files
for `wandb sweep` / `wandb agent`, trains nothing).
"""

import sys

from absl import app, flags

_CONFIG = flags.DEFINE_string(
    "config", None, "Config file[:variant], e.g. experiments/configs/kws.py:lstm."
)
_SWEEP = flags.DEFINE_string("sweep", None, "Name of a sweep in the config file's sweeps().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory (one workdir per run inside).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Subprocesses (or submitit jobs) at once.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the runs and their overrides; train nothing.")
_WANDB = flags.DEFINE_enum(
    "wandb",
    "offline",
    ["online", "offline", "disabled"],
    "W&B mode of the runs (local and submitit backends).",
)
_BACKEND = flags.DEFINE_enum(
    "backend", "local", ["local", "wandb", "submitit"], "Where runs execute."
)
_VMAP_SEEDS = flags.DEFINE_enum(
    "vmap_seeds",
    "auto",
    ["auto", "true", "false"],
    "Train runs that differ only in `seed` together, as one compiled "
    "program in one subprocess (auto: with a GPU/TPU; on a CPU-only "
    "machine one run per subprocess measured faster).",
)
_OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "key=value applied to every run, e.g. --override num_steps=500 (repeatable)."
)
_PIN = flags.DEFINE_enum(
    "pin",
    "auto",
    ["auto", "true", "false"],
    "Pin each local subprocess to "
    "its own core(s), single-threaded if one core (auto: with --parallel > 1 "
    "on a CPU-only machine).",
)
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")
_CLUSTER = flags.DEFINE_string(
    "submitit_cluster",
    None,
    "submitit cluster: slurm, local, debug (default: slurm if available, else local).",
)
_SUBMITIT_PARAM = flags.DEFINE_multi_string(
    "submitit_param",
    [],
    "key=value for executor.update_parameters, e.g. timeout_min=120, "
    "slurm_partition=gpu, gpus_per_node=1 (repeatable; numbers are parsed).",
)
flags.mark_flags_as_required(["config", "sweep", "workdir"])


def _params(items):
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq:
            raise app.UsageError(f"--submitit_param {item!r}: expected key=value")
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                pass
        out[k] = v
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rnnbench import sweep

    try:
        s = sweep.resolve(_CONFIG.value, _SWEEP.value, _WORKDIR.value, _OVERRIDE.value)
        vmap_seeds = None if _VMAP_SEEDS.value == "auto" else _VMAP_SEEDS.value == "true"
        if _DRY_RUN.value:
            sweep.dry_run(s, vmap_seeds, _WANDB.value)
            return 0
        if _BACKEND.value == "wandb":
            paths = sweep.wandb_sweep_files(s)
            for p in paths:
                print(
                    f"wrote {p}\n  wandb sweep {p}   "
                    f"# then: wandb agent <entity>/{s.project}/<sweep id>"
                )
            return 0
        pin = None if _PIN.value == "auto" else _PIN.value == "true"
        failed = sweep.run_sweep(
            s,
            parallel=_PARALLEL.value,
            vmap_seeds=vmap_seeds,
            wandb_mode=_WANDB.value,
            backend=_BACKEND.value,
            pin=pin,
            progress=not _QUIET.value,
            submitit_cluster=_CLUSTER.value,
            submitit_params=_params(_SUBMITIT_PARAM.value),
        )
    except sweep.SweepError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"sweep: interrupted; finished runs are kept, run the same command to continue "
            f"(state in {_WORKDIR.value}/sweep.json)",
            file=sys.stderr,
        )
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    from rnnbench import errors

    errors.run(main)
