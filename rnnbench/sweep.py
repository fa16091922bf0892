"""Sweeps: named grids of config overrides, run one subprocess per run (or per seed group).

A config file defines its sweeps next to `get_config`:

    def sweeps():
        from rnnbench.grid import product, sweep
        seeds = sweep("seed", [0, 1, 2])
        return {"cells": product(sweep("model.cell", ["rnn", "lstm", "gru"]),
                                 sweep("model.hidden", [64, 128]), seeds)}

A sweep is a list of override dicts (dotted keys are config field paths; the grid helpers, run
names and the Run/Sweep records are rnnbench/grid.py's, re-exported here). `run_sweep` trains
each in its own workdir under the sweep dir, named from its overrides (`cell=gru,hidden=64,seed=1`),
and keeps `sweep.json` (every run's overrides and state) up to date. Finished runs (final.json)
are skipped, unfinished ones resume from their checkpoints, failures are recorded (error.txt in
the run's workdir) without stopping the others. Runs that differ only in `seed` can train as one
vmapped program (`vmap_seeds`). Backends: local subprocesses, submitit (SLURM), or a W&B sweep
file (`wandb_sweep_files`). sweep.json records how the runner ran ("runner": backend, parallel,
vmap_seeds, pin), so a table can say so.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import fcntl
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from rnnbench import atomic, hugepages, provenance
from rnnbench.grid import (  # noqa: F401 - re-exported: config files import them from here
    Overrides,
    Run,
    Sweep,
    as_grid,
    chain,
    config_key,
    fmt_value,
    product,
    run_names,
    short_keys,
    sweep,
    zip_,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Child processes: glibc malloc on transparent huge pages measured 1.07-2x faster JAX CPU steps.
# A child pinned to one core runs XLA single-threaded: two such processes were measured as the
# best use of a 2-core machine.
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def same_config_file(mine: str, theirs: str | None) -> bool:
    """Whether a sweep.json's config path `theirs` names the file `mine` (both absolute): equal,
    or, for a file of this repository, the same path inside another checkout of it (a moved
    clone or a git worktree), e.g. /old/clone/experiments/configs/tts.py. Each run's config is
    still compared whole before it resumes."""
    if theirs == mine:
        return True
    inside = os.path.relpath(mine, REPO_ROOT).replace(os.sep, "/")
    if theirs is None or inside.startswith("../"):
        return False
    return theirs.replace(os.sep, "/").endswith("/" + inside)


class SweepError(ValueError):
    """Bad sweep input: unknown sweep, bad override, foreign sweep dir, ..."""


def load_config_module(config_arg: str):
    """`path[:variant]` -> (path, variant, module, config)."""
    path, _, variant = config_arg.partition(":")
    if not os.path.isfile(path):
        raise SweepError(f"config file {path!r} not found")
    mod_name = "_sweep_config_" + hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    spec.loader.exec_module(module)
    try:
        config = module.get_config(variant) if variant else module.get_config()
    except (ValueError, TypeError, KeyError) as e:
        raise SweepError(f"{path}: get_config({variant or ''!r}) failed: {e}") from e
    return path, variant or None, module, config


def _field(config, key: str):
    """(parent ConfigDict, leaf name) of a dotted key; SweepError naming the missing part."""
    node, parts = config, key.split(".")
    for i, p in enumerate(parts):
        if not hasattr(node, "keys") or p not in node:
            raise SweepError(
                f"override {key!r}: the config has no field {'.'.join(parts[: i + 1])!r}"
            )
        if i < len(parts) - 1:
            node = node[p]
    return node, parts[-1]


def _coerce(current, text: str):
    """A command-line override string as the type of the field it replaces."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected a bool, got {text!r}")
        return text.lower() in ("true", "1")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        return type(current)(float(text) if isinstance(current, float) else int(text))
    return text


def check_overrides(config, overrides: Overrides, where: str) -> None:
    """Every key names an existing field and every value fits its type (on a copy)."""
    c = copy.deepcopy(config)
    c.unlock()
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            raise SweepError(f"{where}: override {key!r} is a dict; use dotted keys for its fields")
        parent, leaf = _field(c, key)
        try:
            parent[leaf] = value
        except (TypeError, ValueError) as e:
            raise SweepError(f"{where}: override {key}={value!r} does not fit the field: {e}")


def parse_overrides(items: Iterable[str], config) -> dict[str, str]:
    """["model.hidden=64", ...] -> {"model.hidden": "64"}, each checked against the config."""
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise SweepError(f"--override {item!r}: expected key=value, e.g. model.hidden=64")
        parent, leaf = _field(config, key)
        try:
            check_overrides(config, {key: _coerce(parent[leaf], text)}, "--override")
        except ValueError as e:
            raise SweepError(f"--override {item!r}: {e}") from None
        out[key] = text
    return out


def resolve(
    config_arg: str, sweep_name: str, sweep_dir: str, overrides: Iterable[str] = ()
) -> Sweep:
    """Loads the config file and its sweeps(), checks every override before anything runs."""
    path, _, module, config = load_config_module(config_arg)
    if not hasattr(module, "sweeps"):
        raise SweepError(f"{path} defines no sweeps(); add `def sweeps(): return {{name: grid}}`")
    table = module.sweeps()
    if sweep_name not in table:
        raise SweepError(f"unknown sweep {sweep_name!r} in {path}; known: {', '.join(table)}")
    common = parse_overrides(overrides, config)
    grid = as_grid(table[sweep_name])
    if not grid:
        raise SweepError(f"sweep {sweep_name!r} in {path} is empty")
    keys = [json.dumps(d, sort_keys=True, default=str) for d in grid]
    dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if dup:
        raise SweepError(f"sweep {sweep_name!r} lists the same overrides twice: {dup}")
    for d in grid:
        check_overrides(config, d, f"sweep {sweep_name!r}")
    swept = {k for d in grid for k in d}
    clash = sorted(swept & set(common))
    if clash:
        raise SweepError(
            f"--override {', '.join(clash)}: swept by {sweep_name!r} itself; "
            "an override for every run would replace the swept values"
        )
    runs = [Run(n, d, os.path.join(sweep_dir, n)) for n, d in zip(run_names(grid), grid)]
    check_run_configs(config, runs, common)
    project = (config.get("wandb") or {}).get("project", "rnnbench")
    return Sweep(
        sweep_dir, runs, config_arg=config_arg, name=sweep_name, common=common, project=project
    )


def check_run_configs(config, runs: list[Run], common: Mapping[str, str]) -> None:
    """`train.check_config` on every run's config before any run is launched, so a bad value
    (e.g. --override num_steps=0) fails once, naming the run, not once per launched run."""
    from rnnbench import train  # JAX on the CPU is enough: nothing is compiled here

    for r in runs:
        c = copy.deepcopy(config)
        c.unlock()
        for key, text in common.items():
            parent, leaf = _field(c, key)
            parent[leaf] = _coerce(parent[leaf], text)
        for key, value in r.overrides.items():
            parent, leaf = _field(c, key)
            parent[leaf] = value
        try:
            train.check_config(c, devices=1)
        except ValueError as e:
            raise SweepError(f"run {r.name}: {e}") from None


# ----------------------------------------------------------------------------- units and commands


@dataclasses.dataclass
class Unit:
    """What one subprocess trains: one run, or several runs that differ only in `seed`."""

    runs: list[Run]
    seeds: list | None = None  # set: train all together with `--seeds` (one vmapped program)

    @property
    def name(self) -> str:
        if self.seeds is None:
            return self.runs[0].name
        rest = {k: v for k, v in self.runs[0].overrides.items() if k != "seed"}
        return (
            (run_names([rest])[0] if rest else "default")
            + ",seeds="
            + "-".join(map(fmt_value, self.seeds))
        )


def make_units(runs: list[Run], vmap_seeds: bool) -> list[Unit]:
    """Groups runs that differ only in `seed` (in sweep order) when `vmap_seeds`."""
    if not vmap_seeds:
        return [Unit([r]) for r in runs]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(config_key(r.overrides) if "seed" in r.overrides else r.name, []).append(
            r
        )
    return [
        Unit(g, [r.overrides["seed"] for r in g]) if len(g) > 1 else Unit(g)
        for g in groups.values()
    ]


def _cli_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, (float, tuple, list)) else str(v)


def command(s: Sweep, unit: Unit, wandb_mode: str) -> list[str]:
    """`python -m experiments.train --config=FILE[:variant] --workdir=... --config.k=v ...`.

    `--config=` comes first (ml_collections rejects a `--config.x` before it). `--workdir` is one
    CSV record (an absl list flag; run names contain commas); a seed group adds `--seeds=0,1,2`.
    The W&B run name is left to its default, the workdir's basename, i.e. the run name, so a run
    has the same config.json whether it trained alone or in a seed group."""
    first = unit.runs[0]
    argv = [
        sys.executable,
        "-m",
        "experiments.train",
        f"--config={s.config_arg}",
        f"--wandb={wandb_mode}",
        "--quiet",
    ]
    buf = io.StringIO()  # --workdir is an absl list flag (CSV): quote names holding commas
    csv.writer(buf, lineterminator="").writerow([r.workdir for r in unit.runs])
    argv.append(f"--workdir={buf.getvalue()}")
    if unit.seeds is not None:
        argv.append("--seeds=" + ",".join(map(str, unit.seeds)))
    argv.append(f"--config.wandb.group={s.group}")
    argv += [
        f"--config.{k}={_cli_value(v)}"
        for k, v in first.overrides.items()
        if not (unit.seeds is not None and k == "seed")
    ]
    argv += [f"--config.{k}={v}" for k, v in s.common.items()]
    return argv


def child_env(cores: set[int] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    tun = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tun:
        env["GLIBC_TUNABLES"] = f"{tun}:{hugepages.HUGETLB}" if tun else hugepages.HUGETLB
    if cores is not None and len(cores) == 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {SINGLE_THREAD_XLA}".strip()
    return env


def cpu_slots(parallel: int, pin: bool) -> list[set[int] | None]:
    """Cores for each of `parallel` concurrent children (None = not pinned)."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return [None] * parallel
    cores = sorted(os.sched_getaffinity(0))
    k = max(1, len(cores) // parallel)
    return [set(cores[(i * k) % len(cores) :][:k]) for i in range(parallel)]


def cpu_only() -> bool:
    """True unless $JAX_PLATFORMS names an accelerator or, when unset, a GPU/TPU device node
    exists (checked without importing jax in the runner)."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return not any(p in platforms for p in ("cuda", "gpu", "rocm", "tpu"))
    return not any(map(os.path.exists, ("/dev/nvidia0", "/dev/kfd", "/dev/accel0")))


def should_pin(parallel: int) -> bool:
    """Default: pin when several runs share a CPU-only machine."""
    return parallel > 1 and cpu_only() and hasattr(os, "sched_setaffinity")


def should_vmap_seeds() -> bool:
    """Default of `vmap_seeds`: on with an accelerator, off on a CPU-only machine. On the 2-core
    CPU here one vmapped program of 3 seeds had 0.92-0.95x the throughput of 3 single runs
    (single-threaded, huge pages; results/perf.md), and single runs also spread more evenly over
    `--parallel` processes."""
    return not cpu_only()


def _preexec(cores: set[int] | None):
    def fn():
        if cores:
            os.sched_setaffinity(0, cores)
        try:  # die with the runner: a SIGKILLed sweep must not leave runs training behind
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return fn


def run_command(argv: list[str], env: dict, log_path: str) -> None:
    """Runs argv with output to log_path; raises RuntimeError on failure (used by submitit)."""
    with open(log_path, "ab") as log:
        rc = subprocess.run(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode
    if rc:
        raise RuntimeError(f"exit status {rc}; see {log_path}")


# ----------------------------------------------------------------------------- state


def _read_log(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def error_summary(log: str, returncode: int | None) -> str:
    """The exception line of a failed run's log, or how it died."""
    if returncode is not None and returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    exc = [
        l
        for l in lines
        if re.match(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b|error: )", l)
    ]
    return (exc or lines or [f"exit status {returncode}"])[-1][:500]


class State:
    """sweep.json: the sweep's identity, how the runner runs it (`runner`, see `runner_record`)
    and each run's state, rewritten atomically."""

    def __init__(self, s: Sweep, runner: dict | None = None):
        self.s = s
        self.runner = runner
        self.path = os.path.join(s.sweep_dir, "sweep.json")
        self.runs = {
            r.name: {
                "name": r.name,
                "overrides": r.overrides,
                "workdir": r.workdir,
                "state": "pending",
                "error": None,
                "log": None,
            }
            for r in s.runs
        }
        old = {p.get("name"): p for p in (self.load_existing() or {}).get("runs", [])}
        for r in s.runs:
            if self.finished(r):
                self.runs[r.name].update(state="done", log=old.get(r.name, {}).get("log"))
            elif old.get(r.name, {}).get("error"):  # failed before: it runs again
                err = old[r.name]["error"].removeprefix("previous attempt: ")
                self.runs[r.name]["error"] = "previous attempt: " + err

    def load_existing(self) -> dict | None:
        if not os.path.exists(self.path):
            return None
        with open(self.path) as f:
            old = json.load(f)
        mine, theirs = self.s.identity(), old.get("identity", {})
        diff = [
            k
            for k in mine
            if mine[k] != theirs.get(k)
            and not (k == "config" and same_config_file(mine[k], theirs.get(k)))
        ]
        if diff:
            what = {
                "config": "config file",
                "variant": "config variant",
                "sweep": "sweep name",
                "common_overrides": "--override values",
                "runs": "set of runs (overrides)",
            }
            details = "; ".join(
                f"{what[k]}: {theirs.get(k)!r} there vs {mine[k]!r} here"
                for k in diff
                if k != "runs"
            )
            if "runs" in diff:
                a, b = set(theirs.get("runs", {})), set(mine["runs"])
                details += (
                    f"{'; ' if details else ''}runs: {len(b - a)} new, {len(a - b)} "
                    f"missing, {len(a & b)} in common"
                )
            raise SweepError(
                f"{self.s.sweep_dir} holds a different sweep ({details}); "
                "use a new --workdir, or the same command that started it"
            )
        return old

    @staticmethod
    def finished(r: Run) -> bool:
        return os.path.exists(os.path.join(r.workdir, "final.json"))

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in ("pending", "running", "done", "failed")}
        for r in self.runs.values():
            out[r["state"]] += 1
        return out

    def write(self) -> None:
        atomic.write_json(
            self.path,
            {
                "identity": self.s.identity(),
                "config": self.s.config_arg,
                "sweep": self.s.name,
                "group": self.s.group,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **({"runner": self.runner} if self.runner else {}),
                "counts": self.counts(),
                "runs": list(self.runs.values()),
            },
            sort_keys=True,
        )


def runner_record(
    *, backend: str, parallel: int, vmap_seeds: bool, pin: bool | None, wandb_mode: str
) -> dict:
    """How a sweep is being run, for sweep.json and the table headers: the runner's settings and
    the checkout it runs from. (Not `provenance.record()`: that initialises JAX's backend, and
    the runner must leave the accelerator to its children.)"""
    return {
        "backend": backend,
        "parallel": parallel,
        "vmap_seeds": vmap_seeds,
        "pin": pin,
        "wandb": wandb_mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "git_commit": provenance.git_commit(),
        "git_dirty": provenance.git_dirty(),
        "cpu": provenance.cpu_model(),
        "cores": os.cpu_count(),
    }


# ----------------------------------------------------------------------------- launchers


class LocalLauncher:
    """Subprocesses on this machine, each pinned to its own core(s) when `pin`."""

    def __init__(self, parallel: int, pin: bool):
        self.free = cpu_slots(parallel, pin)

    def start(self, argv: list[str], log_path: str):
        cores = self.free.pop(0)
        log = open(log_path, "ab")  # noqa: SIM115 - the child holds it; closed below
        proc = subprocess.Popen(
            argv,
            env=child_env(cores),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_preexec(cores),
        )  # noqa: PLW1509 - no threads here
        log.close()
        return proc, cores

    def poll(self, handle) -> int | None:
        proc, cores = handle
        rc = proc.poll()
        if rc is not None:
            self.free.append(cores)
        return rc

    def error(self, handle) -> str:
        return ""

    def stop(self, handle) -> None:
        handle[0].terminate()


class SubmititLauncher:
    """Jobs through submitit (SLURM, or cluster="local" for tests); the sweep keeps at most
    `parallel` of them in flight since submitit's local executor has no cap."""

    def __init__(self, folder: str, cluster: str | None, params: dict):
        import submitit

        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        if params:
            self.executor.update_parameters(**params)
        self.errors: dict[str, str] = {}

    def start(self, argv, log_path):
        return self.executor.submit(run_command, argv, child_env(None), log_path)

    def poll(self, job) -> int | None:
        if not job.done():
            return None
        try:
            job.result()
            return 0
        except Exception as e:  # noqa: BLE001 - any failure of the job is the run's failure
            self.errors[job.job_id] = f"{type(e).__name__}: {e}"
            return 1

    def error(self, job) -> str:
        return self.errors.get(job.job_id, "")

    def stop(self, job) -> None:
        job.cancel(check=False)


# ----------------------------------------------------------------------------- the runner


def dry_run(
    s: Sweep, vmap_seeds: bool | None = None, wandb_mode: str = "offline", out=sys.stdout
) -> None:
    """Prints the runs, their overrides and the first command; `vmap_seeds=None`: the default of
    this machine (`should_vmap_seeds`)."""
    vmap_seeds = should_vmap_seeds() if vmap_seeds is None else vmap_seeds
    done = {r.name for r in s.runs if State.finished(r)}
    units = make_units([r for r in s.runs if r.name not in done], vmap_seeds)
    print(
        f"sweep {s.name!r} of {s.config_arg}: {len(s.runs)} runs, {len(done)} done, "
        f"{len(units)} subprocess(es) to start{' (seeds vmapped)' if vmap_seeds else ''}; "
        f"W&B group {s.group!r}",
        file=out,
    )
    width = max(len(r.name) for r in s.runs)
    for r in s.runs:
        state = "done" if r.name in done else "todo"
        ov = " ".join(f"{k}={_cli_value(v)}" for k, v in r.overrides.items())
        print(f"  [{state}] {r.name:<{width}}  {ov}", file=out)
    if s.common:
        print("  every run: " + " ".join(f"{k}={v}" for k, v in s.common.items()), file=out)
    if units:
        print("first command: " + shlex.join(command(s, units[0], wandb_mode)), file=out)


def _lock(sweep_dir: str):
    f = open(os.path.join(sweep_dir, ".sweep.lock"), "a+")  # noqa: SIM115 - held while running
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        raise SweepError(
            f"another sweep runner is working in {sweep_dir} "
            f"(pid {f.read().strip() or '?'}); wait for it or stop it first"
        )
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    return f


def run_sweep(
    s: Sweep,
    *,
    parallel: int = 1,
    vmap_seeds: bool | None = None,
    wandb_mode: str = "offline",
    backend: str = "local",
    pin: bool | None = None,
    progress: bool = True,
    submitit_cluster: str | None = None,
    submitit_params: dict | None = None,
) -> int:
    """Runs every unfinished run of `s`; returns the number of failed runs. `vmap_seeds=None`:
    the default of this machine (`should_vmap_seeds`)."""
    vmap_seeds = should_vmap_seeds() if vmap_seeds is None else vmap_seeds
    if parallel < 1:
        raise SweepError(f"--parallel must be >= 1, got {parallel}")
    os.makedirs(s.sweep_dir, exist_ok=True)
    pin = (should_pin(parallel) if pin is None else pin) if backend == "local" else None
    state = State(
        s,
        runner_record(
            backend=backend,
            parallel=parallel,
            vmap_seeds=vmap_seeds,
            pin=pin,
            wandb_mode=wandb_mode,
        ),
    )  # refuses a foreign sweep dir
    lock = _lock(s.sweep_dir)
    logs = os.path.join(s.sweep_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    if backend == "submitit":
        launcher = SubmititLauncher(
            os.path.join(s.sweep_dir, "submitit"), submitit_cluster, submitit_params or {}
        )
    else:
        launcher = LocalLauncher(parallel, pin)
    todo = make_units([r for r in s.runs if state.runs[r.name]["state"] != "done"], vmap_seeds)
    state.write()

    from tqdm.auto import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: children are forked with a preexec_fn
    c = state.counts()
    bar = tqdm(
        total=len(s.runs),
        initial=c["done"],
        unit="run",
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
        desc=s.name,
    )
    failed_now: set[str] = set()

    def show():
        c = state.counts()
        bar.set_postfix(
            done=c["done"],
            failed=c["failed"],
            left=c["pending"] + c["running"],
            running=c["running"],
        )

    running: list[tuple[Unit, Any, str, list[str]]] = []
    show()
    try:
        while todo or running:
            while todo and len(running) < parallel:
                unit = todo.pop(0)
                log_path = os.path.join(logs, unit.name + ".log")
                argv = command(s, unit, wandb_mode)
                with open(log_path, "a") as f:
                    f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shlex.join(argv)}\n")
                running.append((unit, launcher.start(argv, log_path), log_path, argv))
                for r in unit.runs:
                    state.runs[r.name].update(state="running", log=log_path)
                state.write()
                show()
            still = []
            for item in running:
                unit, handle, log_path, argv = item
                rc = launcher.poll(handle)
                if rc is None:
                    still.append(item)
                    continue
                log = _read_log(log_path)
                if rc and "Traceback" not in log[log.rfind("\n=== ") :]:
                    log += "\n" + launcher.error(handle)  # e.g. a job that never started
                for r in unit.runs:
                    if State.finished(r):
                        state.runs[r.name].update(state="done", error=None)
                        bar.update(1)
                        continue
                    summary = error_summary(log, rc) if rc else "exited 0 but wrote no final.json"
                    state.runs[r.name].update(state="failed", error=summary)
                    failed_now.add(r.name)
                    _write_error(r, argv, rc, log_path, log)
                    bar.update(1)
                    bar.write(f"FAILED {r.name}: {summary} (see {r.workdir}/error.txt)")
                state.write()
                show()
            running = still
            if running:
                time.sleep(0.2)
    except BaseException:
        for _, handle, _, _ in running:
            launcher.stop(handle)
        for unit, _, _, _ in running:
            for r in unit.runs:
                if state.runs[r.name]["state"] == "running":
                    state.runs[r.name]["state"] = "pending"
        state.write()
        raise
    finally:
        bar.close()
        lock.close()
    c = state.counts()
    where = (
        f"; see {state.path} and error.txt in the failed runs' workdirs, e.g. "
        f"{state.runs[min(failed_now)]['workdir']}/error.txt"
        if failed_now
        else ""
    )
    print(
        f"sweep {s.name!r}: {c['done']}/{len(s.runs)} done, {len(failed_now)} failed{where}",
        file=sys.stderr,
    )
    return len(failed_now)


def _write_error(r: Run, argv: list[str], rc: int | None, log_path: str, log: str) -> None:
    """error.txt in the run's workdir: the command, exit status and the traceback."""
    last = log.rfind("\n=== ")  # this attempt's part of the log
    attempt = log[last + 1 :] if last >= 0 else log
    tb = attempt.find("Traceback (most recent call last)")
    body = attempt[tb:] if tb >= 0 else "\n".join(attempt.splitlines()[-200:])
    atomic.write_text(
        os.path.join(r.workdir, "error.txt"),
        f"command: {shlex.join(argv)}\nexit status: {rc}\nfull log: {log_path}\n\n{body}\n",
    )


# ----------------------------------------------------------------------------- W&B sweep files


def product_blocks(grid: list[Overrides]) -> list[dict[str, list]]:
    """Splits a grid into full products (W&B grid sweeps), one per set of keys; raises
    SweepError for a block that is not the full product of its keys' values (a zip)."""
    blocks: dict[tuple, list[Overrides]] = {}
    for d in grid:
        blocks.setdefault(tuple(d), []).append(d)
    out = []
    for keys, runs in blocks.items():
        values = {k: list(dict.fromkeys(json.dumps(d[k], default=str) for d in runs)) for k in keys}
        n = 1
        for v in values.values():
            n *= len(v)
        if n != len(runs):
            raise SweepError(
                f"runs with keys {list(keys)} are not a full product ({len(runs)} runs, product "
                f"of their values has {n}); a W&B grid sweep cannot express zipped or hand-listed "
                f"override sets: use the local or submitit backend for this sweep"
            )
        out.append({k: [json.loads(x) for x in v] for k, v in values.items()})
    return out


def wandb_sweep_files(s: Sweep) -> list[str]:
    """Writes one W&B grid sweep file per product block of the sweep; returns their paths.

    Parameters are `config.<field>` so that `${args}` renders `--config.model.cell=gru` after
    the fixed `--config=FILE[:variant]` token. experiments.train picks a workdir itself under a
    W&B agent (WANDB_SWEEP_ID set, no --workdir)."""
    import yaml

    blocks = product_blocks([r.overrides for r in s.runs])
    paths = []
    for i, block in enumerate(blocks):
        name = s.group if len(blocks) == 1 else f"{s.group}-{i + 1}"
        cmd = [
            "${env}",
            "python3",
            "-m",
            "experiments.train",
            f"--config={s.config_arg}",
            "--wandb=online",
            "--quiet",
            f"--config.wandb.group={s.group}",
        ]
        cmd += [f"--config.{k}={v}" for k, v in s.common.items()] + ["${args}"]
        spec = {
            "name": name,
            "project": s.project,
            "method": "grid",
            "command": cmd,
            "parameters": {f"config.{k}": {"values": v} for k, v in block.items()},
        }
        path = os.path.join(s.sweep_dir, f"wandb_sweep{'' if len(blocks) == 1 else i + 1}.yaml")
        n = math.prod(len(v) for v in block.values())
        atomic.write_text(
            path,
            f"# W&B grid sweep {name}: {n} runs of sweep {s.name!r} "
            f"({s.config_arg}). Run from the repo root with the venv active:\n"
            f"#   wandb sweep {path}\n#   wandb agent <entity>/{s.project}/<id>\n"
            + yaml.safe_dump(spec, sort_keys=False),
        )
        paths.append(path)
    return paths
