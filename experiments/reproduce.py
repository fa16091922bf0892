"""Run a named sweep and its report in one command: `python -m experiments.reproduce kws_cells`.

  python -m experiments.reproduce kws_cells               # runs/kws_cells -> results/kws_cells.*
  python -m experiments.reproduce kws_cells --parallel=2
  python -m experiments.reproduce ctc_cells --smoke       # ~1 min: tiny data, 6 steps, 2 seeds,
                                                          # runs/smoke/..., checks the table

Each NAME maps to (config file, sweep name, report options) in `SWEEPS` below. The sweep runs as
a subprocess of `python -m experiments.sweep` (see `sweep_command`), then rnnbench/report.py
writes the table and plots. `--smoke` shrinks steps, data and model through repeated
`--override=key=value` flags, keeps seeds 0,1 of the first two configurations of the grid (through
a generated config file whose sweeps() holds just those), writes under <workdir>/smoke/ (never
results/), and exits non-zero unless the table has one row per configuration with every run
finished. FSDD sweeps need $RNNBENCH_FSDD_DIR.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys

from absl import app, flags

from rnnbench import atomic
from rnnbench import report as report_lib


@dataclasses.dataclass(frozen=True)
class Entry:
    config: str                      # experiments/configs/<file>.py[:variant]
    sweep: str                       # sweep name known to experiments/sweep.py
    reference: str | None = None     # report --reference
    smoke_overrides: tuple[str, ...] = ()  # on top of SMOKE_OVERRIDES
    needs_env: str | None = None     # environment variable the config reads (data location)


SMOKE_SYNTH = ("data.options.train_size=48", "data.options.validation_size=16",
               "data.options.test_size=16")
SWEEPS = {
    "kws_cells": Entry("experiments/configs/kws.py", "cells", "hello_edge", SMOKE_SYNTH),
    "kws_fsdd_cells": Entry("experiments/configs/kws_fsdd.py", "cells", "hello_edge",
                            needs_env="RNNBENCH_FSDD_DIR"),
    "kws_attention": Entry("experiments/configs/kws.py", "attention", None, SMOKE_SYNTH),
    "kws_regularisers": Entry("experiments/configs/kws.py", "regularisers", None, SMOKE_SYNTH),
    "kws_depth": Entry("experiments/configs/kws.py", "depth", None, SMOKE_SYNTH),
    "ctc_cells": Entry("experiments/configs/ctc.py", "cells", None, SMOKE_SYNTH),
    "ctc_fsdd_cells": Entry("experiments/configs/ctc_fsdd.py", "cells", None, SMOKE_SYNTH,
                            needs_env="RNNBENCH_FSDD_DIR"),
}
SMOKE_OVERRIDES = ("num_steps=6", "eval_every=3", "checkpoint_every=3", "log_every=3",
                   "batch_size=16", "model.hidden=8", "optimizer.warmup_steps=2")
SMOKE_SEEDS = (0, 1)
SMOKE_CONFIGS = 2  # configurations kept from the sweep's grid (each with SMOKE_SEEDS)

_NAME_HELP = ", ".join(SWEEPS)
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny end-to-end run under <workdir>/smoke/ that "
                           "checks the produced table; for CI.")
_WORKDIR = flags.DEFINE_string("workdir", "runs", "Parent of the sweep directory.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where the table and plots go (default results/, "
                               "or <workdir>/smoke/results with --smoke).")
_PARALLEL = flags.DEFINE_integer("parallel", None, "Runs at a time (passed to the sweep runner).")


def sweep_command(config: str, sweep: str, sweep_dir: str, *, parallel: int | None = None,
                  overrides: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> list[str]:
    """The sweep runner's command line. Flags relied on: --config, --sweep, --workdir,
    --parallel, repeated --override=key=value (applied to every run) and, with --smoke,
    --wandb=disabled."""
    cmd = [sys.executable, "-m", "experiments.sweep", f"--config={config}", f"--sweep={sweep}",
           f"--workdir={sweep_dir}"]
    if parallel:
        cmd.append(f"--parallel={parallel}")
    return cmd + [f"--override={o}" for o in overrides] + list(extra)


def load_grid(entry: Entry) -> list[dict]:
    """The sweep's list of override dicts, from the config file's sweeps()."""
    from rnnbench import sweep as sweep_lib
    _, _, module, _ = sweep_lib.load_config_module(entry.config)
    grid = module.sweeps()[entry.sweep]
    return [dict(grid)] if isinstance(grid, dict) else [dict(d) for d in grid]


def smoke_grid(grid: list[dict], seeds=SMOKE_SEEDS, configs: int = SMOKE_CONFIGS) -> list[dict]:
    """The first `configs` configurations of `grid` (overrides minus seed), each at `seeds`."""
    kept, seen = [], []
    for d in grid:
        if "seed" in d and d["seed"] not in seeds:
            continue
        key = json.dumps({k: v for k, v in d.items() if k != "seed"}, sort_keys=True, default=str)
        if key not in seen:
            if len(seen) == configs:
                continue
            seen.append(key)
        kept.append(d)
    return kept


def write_smoke_config(entry: Entry, grid: list[dict], path: str) -> None:
    """A config file whose get_config is `entry.config`'s and whose sweeps() holds only `grid`
    under the same sweep name: the smoke subset, with the sweep runner's CLI as it is."""
    base = os.path.abspath(entry.config.split(":")[0])
    text = f'''"""Generated by `python -m experiments.reproduce --smoke`: sweep {entry.sweep!r} of
{entry.config}, cut to seeds {list(SMOKE_SEEDS)} and its first {SMOKE_CONFIGS} configurations."""

import importlib.util
import json

_spec = importlib.util.spec_from_file_location("_smoke_base_config", {base!r})
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)
GRID = json.loads({json.dumps(grid)!r})


def get_config(variant=None):
    return _base.get_config(variant) if variant else _base.get_config()


def sweeps():
    return {{{entry.sweep!r}: GRID}}
'''
    atomic.write_text(path, text)


def run_sweep(cmd: list[str]) -> int:
    """Runs the sweep runner in the foreground (its output goes straight to ours)."""
    print("+ " + shlex.join(cmd), flush=True)
    return subprocess.run(cmd).returncode


def check_table(rep: dict, sweep_dir: str, *, expected_runs: int | None = None) -> list[str]:
    """Problems with a smoke report: one row per configuration of sweep.json, every run of it
    finished (n = expected), the Markdown table holds those rows, the plots exist."""
    problems = []
    with open(os.path.join(sweep_dir, "sweep.json")) as f:
        runs = json.load(f)["runs"]
    groups: dict[str, int] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r["overrides"].items() if k != "seed"}, sort_keys=True)
        groups[key] = groups.get(key, 0) + 1
    if not runs:
        problems.append("sweep.json lists no runs")
    if expected_runs is not None and len(runs) != expected_runs:
        problems.append(f"sweep.json lists {len(runs)} runs, expected {expected_runs}")
    if len(rep["rows"]) != len(groups):
        problems.append(f"{len(rep['rows'])} table rows for {len(groups)} configurations")
    for row in rep["rows"]:
        want = groups.get(json.dumps(row["config"], sort_keys=True))
        if (row["n"], row["expected"]) != (want, want):
            problems.append(f"row {row['label']}: n={row['n']}/{row['expected']}, expected "
                            f"{want}/{want} (failed: {row['failed']}, missing: {row['missing']})")
        if row["metrics"][rep["primary_metric"]]["n"] != want:
            problems.append(f"row {row['label']}: {rep['primary_metric']} from "
                            f"{row['metrics'][rep['primary_metric']]['n']} runs, expected {want}")
    md = open(rep["files"]["md"]).read().splitlines()
    table = [l for l in md if l.startswith("| ")]
    if len(table) != 1 + len(groups):  # header + one line per configuration
        problems.append(f"{rep['files']['md']}: {len(table) - 1} table rows, expected "
                        f"{len(groups)}")
    for n in set(groups.values()):
        if sum(f"| {n}/{n} |" in l for l in table) != sum(v == n for v in groups.values()):
            problems.append(f"{rep['files']['md']}: rows with n = {n}/{n} do not match sweep.json")
    for key in ("csv", "json", "curves", "params"):
        path = rep["files"][key]
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            problems.append(f"{path} is missing or empty")
    for key in ("curves", "params"):
        path = rep["files"][key]
        if os.path.exists(path) and open(path, "rb").read(8) != b"\x89PNG\r\n\x1a\n":
            problems.append(f"{path} is not a PNG")
    return problems


def reproduce(name: str, *, smoke: bool = False, workdir: str = "runs",
              out_dir: str | None = None, parallel: int | None = None,
              sweep_runner=run_sweep) -> int:
    """Sweep + report (+ the smoke check); returns the process exit code."""
    if name not in SWEEPS:
        print(f"error: unknown sweep {name!r}; known: {_NAME_HELP}", file=sys.stderr)
        return 2
    entry = SWEEPS[name]
    if entry.needs_env and not os.environ.get(entry.needs_env):
        print(f"error: {name} reads its data from ${entry.needs_env}; set it to the dataset "
              f"directory (see {entry.config})", file=sys.stderr)
        return 2
    expected_runs = None
    if smoke:
        smoke_dir = os.path.join(workdir, "smoke")
        sweep_dir = os.path.join(smoke_dir, name)
        out_dir = out_dir or os.path.join(smoke_dir, "results")
        if os.path.exists(os.path.join(sweep_dir, "sweep.json")):
            shutil.rmtree(sweep_dir)  # a smoke run proves the whole path: start from nothing
        grid = smoke_grid(load_grid(entry))
        expected_runs = len(grid)
        config = os.path.join(smoke_dir, f"{name}_config.py")
        write_smoke_config(entry, grid, config)
        # the grid's own values win: leave out shrinking overrides of keys the sweep varies
        varied = {k for d in grid for k in d}
        overrides = tuple(o for o in SMOKE_OVERRIDES + entry.smoke_overrides
                          if o.split("=", 1)[0] not in varied)
        cmd = sweep_command(config, entry.sweep, sweep_dir, parallel=parallel,
                            overrides=overrides, extra=("--wandb=disabled",))
    else:
        sweep_dir = os.path.join(workdir, name)
        out_dir = out_dir or "results"
        cmd = sweep_command(entry.config, entry.sweep, sweep_dir, parallel=parallel)
    rc = sweep_runner(cmd)
    if rc:
        print(f"warning: the sweep runner exited with code {rc}; reporting what there is",
              file=sys.stderr)

    out = os.path.join(out_dir, name)
    args = ["python", "-m", "experiments.reproduce", name] + (["--smoke"] if smoke else [])
    if workdir != "runs":
        args.append(f"--workdir={workdir}")
    if out_dir != ("results" if not smoke else os.path.join(workdir, "smoke", "results")):
        args.append(f"--out_dir={out_dir}")
    try:
        rep = report_lib.make_report(
            sweep_dir, out, reference=entry.reference,
            report_command=report_lib.report_command(sweep_dir, out, entry.reference),
            reproduce_command=shlex.join(args))
    except (report_lib.ReportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return rc or 1
    for w in rep["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{name}: {len(rep['rows'])} configurations, {rep['num_done']}/{rep['num_runs']} runs "
          f"finished -> {rep['files']['md']}")
    if smoke:
        problems = check_table(rep, sweep_dir, expected_runs=expected_runs)
        for p in problems:
            print(f"smoke check failed: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"smoke check passed: {len(rep['rows'])} rows, every run finished")
    return rc


def main(argv):
    if len(argv) != 2:
        raise app.UsageError(f"usage: python -m experiments.reproduce NAME [--smoke] "
                             f"[--workdir=runs] [--parallel=N]; NAME is one of {_NAME_HELP}")
    return reproduce(argv[1], smoke=_SMOKE.value, workdir=_WORKDIR.value, out_dir=_OUT_DIR.value,
                     parallel=_PARALLEL.value)


if __name__ == "__main__":
    app.run(main)
