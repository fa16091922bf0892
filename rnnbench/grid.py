"""The sweep vocabulary: grids of config overrides, run names, seed groups, and the records of a
run and of a sweep. The sweep runner (rnnbench/sweep.py), the report (rnnbench/report.py) and
experiments/reproduce.py all speak it.

A grid is a list of override dicts whose dotted keys are config field paths:

  grid = product(sweep("model.cell", ["lstm", "gru"]), sweep("seed", [0, 1, 2]))
  run_names(grid)       -> ["cell=lstm,seed=0", ..., "cell=gru,seed=2"]
  config_key(grid[0])   -> '{"model.cell": "lstm"}'   (what the seeds of a configuration share)
  group_by_config(grid) -> {'{"model.cell": "lstm"}': [3 dicts], '{"model.cell": "gru"}': [...]}

Run names are workdir names, so they must stay stable: a sweep resumes by finding its runs'
workdirs under the names it gave them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

Overrides = dict[str, Any]
T = TypeVar("T")


# ----------------------------------------------------------------------------- grid helpers


def as_grid(g: Mapping | Iterable[Mapping]) -> list[Overrides]:
    """A grid (list of override dicts) from a grid or a single dict."""
    return [dict(g)] if isinstance(g, Mapping) else [dict(d) for d in g]


def sweep(key: str, values: Iterable) -> list[Overrides]:
    """One key over values: sweep("model.cell", ["rnn", "gru"]) -> [{"model.cell": "rnn"}, ...]."""
    return [{key: v} for v in values]


def product(*grids) -> list[Overrides]:
    """Cartesian product of grids (lists of override dicts, or dicts); the first varies slowest."""
    out = []
    for combo in itertools.product(*map(as_grid, grids)):
        merged: Overrides = {}
        for d in combo:
            merged.update(d)
        out.append(merged)
    return out


def zip_(*grids) -> list[Overrides]:
    """Element-wise merge of equally long grids: zip_(sweep("a", [1, 2]), sweep("b", [3, 4]))."""
    grids = [as_grid(g) for g in grids]
    if len({len(g) for g in grids}) > 1:
        raise ValueError(f"zip_ needs grids of equal length, got {[len(g) for g in grids]}")
    return [{k: v for d in ds for k, v in d.items()} for ds in zip(*grids)]


def chain(*grids) -> list[Overrides]:
    """Concatenation of grids (a sweep made of several blocks)."""
    return [d for g in grids for d in as_grid(g)]


# ----------------------------------------------------------------------------- names


def fmt_value(v: Any) -> str:
    """An override value as run names and table cells show it: true/false, 0.001, a-b."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "-".join(fmt_value(x) for x in v)
    return repr(v) if isinstance(v, float) else str(v)


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """key -> its last path component, or more components where the last ones collide."""
    keys = list(dict.fromkeys(keys))
    depth = {k: 1 for k in keys}
    while True:
        short = {k: ".".join(k.split(".")[-depth[k] :]) for k in keys}
        clash = [
            k
            for k in keys
            if list(short.values()).count(short[k]) > 1 and depth[k] < len(k.split("."))
        ]
        if not clash:
            return short
        for k in clash:
            depth[k] += 1


def run_names(grid: list[Overrides]) -> list[str]:
    """Stable, readable, filesystem-safe and unique names: `cell=gru,hidden=128,seed=1`."""
    short = short_keys(k for d in grid for k in d)
    names, seen = [], {}
    for d in grid:
        name = ",".join(f"{short[k]}={fmt_value(v)}" for k, v in d.items()) or "default"
        name = re.sub(r"[^A-Za-z0-9._,=+-]", "_", name)
        if name.startswith("."):
            name = "_" + name[1:]
        if len(name) > 180:
            name = name[:160] + "~" + hashlib.sha1(name.encode()).hexdigest()[:10]
        if name in seen:  # only when sanitising/truncating made two different runs alike
            seen[name] += 1
            name = f"{name}~{seen[name]}"
        seen.setdefault(name, 1)
        names.append(name)
    return names


def key_order(keys: Iterable[str], names: Iterable[str]) -> list[str]:
    """Override keys in the order run names list them (`cell=gru,hidden=64,seed=1`): the grid's
    order, which sweep.json loses when it stores overrides with sorted keys. Keys that no name
    shows keep their order, last."""
    keys, names = list(keys), list(names)

    def position(k):
        for name in names:
            parts = [p.split("=", 1)[0] for p in name.split(",")]
            for depth in range(1, k.count(".") + 2):
                tail = ".".join(k.split(".")[-depth:])
                if tail in parts:
                    return parts.index(tail)
        return len(keys)

    return sorted(keys, key=position)


# ----------------------------------------------------------------------------- seed groups


def without_seed(overrides: Mapping) -> Overrides:
    """The overrides that define a configuration: all but `seed`."""
    return {k: v for k, v in overrides.items() if k != "seed"}


def config_key(overrides: Mapping) -> str:
    """What the seeds of one configuration share: its overrides minus `seed`, as sorted JSON."""
    return json.dumps(without_seed(overrides), sort_keys=True, default=str)


def group_by_config(
    items: Iterable[T],
    overrides: Callable[[T], Mapping] = lambda x: x,
) -> dict[str, list[T]]:
    """Items grouped by `config_key(overrides(item))`, groups and members in first-seen order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(config_key(overrides(item)), []).append(item)
    return groups


# ----------------------------------------------------------------------------- records


@dataclasses.dataclass
class Run:
    """One run of a sweep: its name, overrides and workdir; what it left there once read."""

    name: str
    overrides: Overrides
    workdir: str
    state: str = "pending"  # pending | running | done | failed | missing
    final: dict | None = None  # final.json
    config: dict | None = None  # config.json
    events: list[dict] = dataclasses.field(default_factory=list)  # metrics.jsonl
    error: str | None = None  # last line of error.txt (failed runs)


@dataclasses.dataclass
class Sweep:
    """A sweep: its runs under `sweep_dir`, and where they come from when known."""

    sweep_dir: str
    runs: list[Run]
    config_arg: str | None = None  # "path/to/config.py[:variant]", as passed to experiments.train
    name: str | None = None  # the sweep's name in the config's sweeps()
    common: dict[str, str] = dataclasses.field(default_factory=dict)  # --override k=v, every run
    project: str = "rnnbench"
    spec: dict = dataclasses.field(default_factory=dict)  # sweep.json without "runs", as read

    @property
    def config_path(self) -> str:
        return (self.config_arg or "").partition(":")[0]

    @property
    def variant(self) -> str | None:
        return (self.config_arg or "").partition(":")[2] or None

    @property
    def group(self) -> str:
        """W&B group shared by the runs: <config file stem>-<sweep name>."""
        return f"{os.path.splitext(os.path.basename(self.config_path))[0]}-{self.name}"

    def identity(self) -> dict:
        """What must match for a sweep dir to be resumed (stored in sweep.json)."""
        return json.loads(
            json.dumps(
                {
                    "config": os.path.realpath(self.config_path),
                    "variant": self.variant,
                    "sweep": self.name,
                    "common_overrides": self.common,
                    "runs": {r.name: r.overrides for r in self.runs},
                },
                default=str,
            )
        )


def finished_runs(sweep_dir: str) -> list[str]:
    """Workdirs of the runs of `sweep_dir` that wrote final.json, in sweep.json's order."""
    path = os.path.join(sweep_dir, "sweep.json")
    try:
        with open(path) as f:
            runs = json.load(f)["runs"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(
            f"--sweep_dir={sweep_dir}: cannot read its sweep.json ({e}); expected "
            "a directory made by `python -m experiments.sweep`"
        ) from None
    dirs = [os.path.join(sweep_dir, r["name"]) for r in runs]
    return [d for d in dirs if os.path.exists(os.path.join(d, "final.json"))]


# Overrides that make any run tiny: a few steps of a small model (TINY_RUN) on a few clips of a
# synthesised corpus (TINY_DATA). The smoke runs of experiments.reproduce and
# experiments.accelerator_check --quick.
TINY_RUN = (
    "num_steps=6",
    "eval_every=3",
    "checkpoint_every=3",
    "log_every=3",
    "batch_size=16",
    "model.hidden=8",
    "optimizer.warmup_steps=2",
)
TINY_DATA = (
    "data.options.train_size=48",
    "data.options.validation_size=16",
    "data.options.test_size=16",
)
