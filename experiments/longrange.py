"""Long-range dependency suite: train a (length x cell x seed) grid of one task, then plot.

  python -m experiments.longrange --task=adding --lengths=25,50,100,200 --cells=rnn,lstm,gru \\
      --seeds=3 --steps=1500 [--out=results/longrange] [--runs=runs/longrange] [--smoke]

The seeds of one (task, length, cell) train together as one vmapped program
(`rnnbench.train.train_and_evaluate_many`); workdirs are `<runs>/<task>/<length>/<cell>/seed<k>`
and finished runs are skipped on restart (a stopped grid resumes from its checkpoints). Cells
are config-variant encoders (configs/common.py): rnn, lstm, gru, lstm_attn (attention pooling),
lstm_selfattn (4-head self-attention over the states), mingru, minlstm, lru, ...
For `--task=recall` the lengths are delays in seconds (`data.options.delay_s`).

Writes under --out, each PNG with its data (.json and .csv) and a caption (.md: what it shows,
measured, plus the command and wall time):
  <task>_length.png    test metric vs dependency length, one line per cell, band = min..max
                       over seeds, dashed = the input-blind baseline
  <task>_curves.png    validation metric vs training step at the longest length any cell
                       solves (mean over seeds; the solved thresholds are in configs/longrange.py)
  <task>_gradflow.png  ||dLoss/dx_t|| / its value at the readout vs distance from the readout,
                       untrained (dashed) and trained (solid, seed 0) per cell, log y
The cost of sequential vs parallel scans vs T is experiments/bench_scan.py's
results/longrange/scan_cost.{json,png,md}; captions link to it.

Every JSON's meta holds `provenance` (rnnbench/provenance.py: commit, machine, versions, precision)
and every caption its one-line form.

--gradflow_only re-renders just <task>_gradflow.*: it trains (or reuses) seed 0 of each cell at the
gradient-flow length (--gradflow_length, else the one the grid's <out>/<task>_runs.json implies),
one seed per program, and leaves the length and curve files and <task>_runs.json as they are.

--smoke: adding T=50, GRU, 1 seed, 300 steps; asserts test MSE < 0.08 and that every plot and
its data exist (a couple of minutes).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import sys
import time

import numpy as np

from experiments.configs import common
from experiments.configs import longrange as lr_config
from rnnbench import atomic, input_pipeline, provenance

SCAN_COST = "scan_cost.md"
METRIC = {
    "adding": ("loss", "test MSE"),
    "copy": ("accuracy", "recall accuracy"),
    "selective": ("accuracy", "recall accuracy"),
    "recall": ("accuracy", "test accuracy"),
}
BASELINE = {"adding": 1.0 / 6.0, "copy": 1.0 / 8.0, "selective": 1.0 / 8.0, "recall": 0.1}
SCANS = ("sequential", "parallel")


# ----------------------------------------------------------------------------- validation


def parse_cells(text: str, scan: str = "sequential") -> list[str]:
    """'rnn,lstm,gru_attn' -> variants; ValueError naming --cells / --scan and the allowed values."""
    from rnnbench import cells as cells_lib

    if scan not in SCANS:
        raise ValueError(f"--scan must be one of {SCANS}, got {scan!r}")
    out = [v.strip() for v in text.split(",") if v.strip()]
    if not out:
        raise ValueError("--cells is empty; give e.g. --cells=rnn,lstm,gru")
    parallel_ok = sorted(
        n for n, c in cells_lib.CELLS.items() if isinstance(c, type) and hasattr(c, "parallel_scan")
    )
    for v in out:
        try:
            cell = common.apply_variant(lr_config.get_config("adding"), v).model.cell
        except ValueError as e:
            raise ValueError(f"--cells: {e}") from None
        if cell not in cells_lib.CELLS:
            raise ValueError(
                f"--cells: unknown cell {cell!r} (in {v!r}); allowed: "
                f"{sorted(cells_lib.CELLS)} (optionally with a suffix _attn, "
                f"_selfattn, _mean)"
            )
        if scan == "parallel" and cell not in parallel_ok:
            raise ValueError(
                f"--scan=parallel: cell {cell!r} has no parallel form; cells with "
                f"one: {parallel_ok} (or use --scan=sequential)"
            )
    return out


def parse_lengths(task: str, text: str, flag: str = "--lengths") -> list:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    if not vals:
        raise ValueError(f"{flag} is empty; give e.g. {flag}=25,50,100")
    try:
        lengths = [float(v) if task == "recall" else int(v) for v in vals]
    except ValueError:
        kind = "delays in seconds" if task == "recall" else "integers"
        raise ValueError(f"{flag} must be comma-separated {kind}, got {text!r}") from None
    for v in lengths:  # let the task / loader check its own bounds, naming the flag
        config = make_config(task, "gru", v, 0, 1)
        try:
            if task == "recall":
                if v < 0:
                    raise ValueError(f"delay_s must be >= 0 seconds, got {v}")
            else:
                from rnnbench import tasks

                tasks.make(task, **dict(config.task))
        except ValueError as e:
            raise ValueError(f"{flag}: {e}") from None
    return lengths


# ----------------------------------------------------------------------------- configs


def make_config(
    task: str,
    variant: str,
    length,
    seed: int,
    steps: int,
    *,
    hidden: int = 0,
    scan: str = "sequential",
    batch_size: int = 0,
):
    c = lr_config.get_config(task)
    c = common.apply_variant(c, variant)
    if task == "recall":
        c.data.options.delay_s = float(length)
        c.buckets = (16000 + round(float(length) * 16000),)
    else:
        c.task.length = int(length)
    c.seed = seed
    c.num_steps = steps
    c.eval_every = max(1, min(c.eval_every, steps // 10))
    c.checkpoint_every = steps  # keep only the final checkpoint (the trained gradient flow)
    if hidden:
        c.model.hidden = hidden
    if batch_size:
        c.batch_size = batch_size
    if scan == "parallel":
        c.model.cell_kwargs = {"parallel": True}
    return c


def length_tag(task: str, length) -> str:
    return f"d{float(length):g}s" if task == "recall" else f"T{int(length)}"


def workdir(runs: str, task: str, length, variant: str, seed: int) -> str:
    return os.path.join(runs, task, length_tag(task, length), variant, f"seed{seed}")


def metric_of(task: str, final: dict) -> float:
    return float(final["test_" + METRIC[task][0]])


def is_solved(task: str, value: float) -> bool:
    _, direction, thr = lr_config.SOLVED[task]
    return value < thr if direction == "below" else value > thr


def read_curve(task: str, wd: str) -> tuple[list[int], list[float]]:
    key = METRIC[task][0]
    steps, vals = [], []
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("split") in ("validation", "test") and key in r:
                if r["split"] == "test" and steps and r["step"] == steps[-1]:
                    continue
                if r["split"] == "validation" or not steps or r["step"] > steps[-1]:
                    steps.append(int(r["step"]))
                    vals.append(float(r[key]))
    return steps, vals


# ----------------------------------------------------------------------------- training


def train_grid(
    task,
    lengths,
    variants,
    seeds,
    steps,
    runs,
    hidden=0,
    scan="sequential",
    batch_size=0,
    log=print,
) -> list[dict]:
    from rnnbench import train

    rows = []
    for length in lengths:
        dataset = None
        for v in variants:
            configs = [
                make_config(
                    task, v, length, s, steps, hidden=hidden, scan=scan, batch_size=batch_size
                )
                for s in range(seeds)
            ]
            wds = [workdir(runs, task, length, v, s) for s in range(seeds)]
            if dataset is None:
                dataset = input_pipeline.load_dataset(configs[0])
            t0 = time.time()
            finals = train.train_and_evaluate_many(
                configs, wds, wandb_mode="disabled", progress=False, dataset=dataset
            )
            dt = time.time() - t0
            for s, (final, wd) in enumerate(zip(finals, wds)):
                rows.append(
                    {
                        "task": task,
                        "length": length,
                        "cell": v,
                        "seed": s,
                        "metric": metric_of(task, final),
                        "test_loss": final["test_loss"],
                        "steps": final["steps"],
                        "workdir": wd,
                        "train_time_s": final.get("train_time_s"),
                        "wall_time_s": final.get("wall_time_s"),
                        "steps_per_s": final.get("steps_per_s"),
                    }
                )
            vals = [r["metric"] for r in rows[-seeds:]]
            log(
                f"[longrange] {task} {length_tag(task, length)} {v}: {METRIC[task][1]} "
                f"{', '.join(f'{x:.4f}' for x in vals)} ({dt:.0f} s this call)"
            )
    return rows


# ----------------------------------------------------------------------------- outputs


def _write_data(out_stem: str, records: list[dict], meta: dict) -> None:
    atomic.write_json(out_stem + ".json", {"meta": meta, "data": records}, indent=1, default=float)
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(records[0]) if records else [])
    w.writeheader()
    for r in records:
        w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    atomic.write_text(out_stem + ".csv", buf.getvalue())


def _caption(out_stem: str, title: str, sentences: list[str], meta: dict) -> None:
    lines = [f"# {title}", "", f"![{title}]({os.path.basename(out_stem)}.png)", ""]
    lines += sentences
    name = os.path.basename(out_stem)
    lines += [
        "",
        f"Data: [{name}.json]({name}.json), [.csv]({name}.csv).",
        f"Command: `{meta['command']}`",
        (
            f"Wall time of the whole command: {meta['wall_time_s']:.0f} s "
            f"(machine: {meta['machine']}); training wall time of the runs behind this plot "
            f"as recorded in their final.json (also when this command skipped finished "
            f"runs): {meta['grid_wall_time_s']:.0f} s."
        ),
        f"Setup: {meta['setup']}",
        f"Provenance: {provenance.one_line(meta['provenance'])}",
        (
            f"Cost of sequential vs parallel scans vs T: see [{SCAN_COST}]({SCAN_COST}) "
            "(experiments/bench_scan.py)."
        ),
    ]
    atomic.write_text(out_stem + ".md", "\n".join(lines) + "\n")


def summarise(task, rows):
    """{cell: {length: [metric per seed]}} in input order."""
    table: dict = {}
    for r in rows:
        table.setdefault(r["cell"], {}).setdefault(r["length"], []).append(r["metric"])
    return table


def solved_length(task, table):
    """Longest length at which any cell's mean over seeds meets the solved threshold (or None)."""
    best = None
    for by_len in table.values():
        for length, vals in by_len.items():
            if is_solved(task, float(np.mean(vals))) and (best is None or length > best):
                best = length
    return best


def plot_length(task, rows, out, meta) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summarise(task, rows)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    records, sentences = [], []
    for cell, by_len in table.items():
        ls = sorted(by_len)
        mean = [float(np.mean(by_len[l])) for l in ls]
        lo = [float(np.min(by_len[l])) for l in ls]
        hi = [float(np.max(by_len[l])) for l in ls]
        (line,) = ax.plot(ls, mean, "o-", label=cell)
        ax.fill_between(ls, lo, hi, alpha=0.2, color=line.get_color())
        solved = [l for l, m in zip(ls, mean) if is_solved(task, m)]
        for l in ls:
            records.append(
                {
                    "cell": cell,
                    "length": l,
                    "mean": float(np.mean(by_len[l])),
                    "min": float(np.min(by_len[l])),
                    "max": float(np.max(by_len[l])),
                    "seeds": by_len[l],
                    "solved": is_solved(task, float(np.mean(by_len[l]))),
                }
            )
        desc = ", ".join(f"{length_tag(task, l)} {m:.3g}" for l, m in zip(ls, mean))
        sentences.append(
            f"- **{cell}**: {desc}; solved up to "
            f"{length_tag(task, max(solved)) if solved else 'none'}."
        )
    ax.axhline(BASELINE[task], color="k", ls="--", lw=1, label="baseline")
    name, direction, thr = lr_config.SOLVED[task]
    ax.axhline(thr, color="gray", ls=":", lw=1, label="solved threshold")
    if task == "adding":
        ax.set_yscale("log")
    if task != "recall":
        ax.set_xscale("log")
    ax.set_xlabel("delay (s)" if task == "recall" else "sequence length T")
    ax.set_ylabel(METRIC[task][1])
    ax.set_title(f"{task}: {METRIC[task][1]} vs dependency length")
    ax.legend(fontsize=8)
    stem = os.path.join(out, f"{task}_length")
    fig.tight_layout()
    atomic.save_figure(fig, stem + ".png")
    plt.close(fig)
    _write_data(stem, records, meta)
    label = METRIC[task][1] if METRIC[task][1].startswith("test") else "test " + METRIC[task][1]
    head = (
        f"{label[0].upper() + label[1:]} (mean over {meta['seeds']} seeds, band = min..max) after "
        f"{meta['steps']} steps vs dependency length; solved = {name} "
        f"{direction} {thr:.3g} (dashed: input-blind baseline {BASELINE[task]:.3g})."
    )
    _caption(stem, f"{task}: metric vs dependency length", [head, ""] + sentences, meta)
    return stem


def plot_curves(task, rows, out, meta) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summarise(task, rows)
    l_star = solved_length(task, table)
    note = "the longest length any cell solves"
    if l_star is None:
        l_star = min(r["length"] for r in rows)
        note = "no cell solved any length, so the shortest"
    fig, ax = plt.subplots(figsize=(5.5, 4))
    records, sentences = [], []
    for cell in table:
        curves = [
            read_curve(task, r["workdir"])
            for r in rows
            if r["cell"] == cell and r["length"] == l_star
        ]
        steps = curves[0][0]
        n = min(len(c[1]) for c in curves)
        vals = np.array([c[1][:n] for c in curves])
        (line,) = ax.plot(steps[:n], vals.mean(0), label=cell)
        ax.fill_between(steps[:n], vals.min(0), vals.max(0), alpha=0.2, color=line.get_color())
        for k in range(n):
            records.append(
                {
                    "cell": cell,
                    "step": steps[k],
                    "mean": float(vals[:, k].mean()),
                    "min": float(vals[:, k].min()),
                    "max": float(vals[:, k].max()),
                }
            )
        hit = [steps[k] for k in range(n) if is_solved(task, float(vals[:, k].mean()))]
        sentences.append(
            f"- **{cell}**: final {vals[:, -1].mean():.3g}; first evaluation past "
            f"the threshold at step {hit[0] if hit else 'never'}."
        )
    ax.axhline(BASELINE[task], color="k", ls="--", lw=1, label="baseline")
    if task == "adding":
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {METRIC[task][1].replace('test ', '')}")
    ax.set_title(f"{task} at {length_tag(task, l_star)}: learning curves")
    ax.legend(fontsize=8)
    stem = os.path.join(out, f"{task}_curves")
    fig.tight_layout()
    atomic.save_figure(fig, stem + ".png")
    plt.close(fig)
    meta = dict(meta, curve_length=l_star)
    _write_data(stem, records, meta)
    _caption(
        stem,
        f"{task}: learning curves at {length_tag(task, l_star)}",
        [
            (
                f"Validation metric (mean over seeds, band = min..max) vs step at "
                f"{length_tag(task, l_star)} ({note})."
            ),
            "",
        ]
        + sentences,
        meta,
    )
    return stem


def _positive(values):
    """values with non-positive entries as NaN (a break in a log-scale line)."""
    values = np.asarray(values, dtype=float)
    return np.where(values > 0, values, np.nan)


def _first_zero(norms):
    """Smallest distance from which every gradient norm is exactly 0 (None if the last is not)."""
    norms = np.asarray(norms)
    if norms.size == 0 or norms[-1] != 0:
        return None
    nonzero = np.flatnonzero(norms)
    return int(nonzero[-1]) + 1 if nonzero.size else 0


def plot_gradflow(task, rows, out, meta, length=None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnbench import diagnostics

    table = summarise(task, rows)
    if length is None:
        length = solved_length(task, table) or min(r["length"] for r in rows)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    records, sentences = [], []
    dataset = None
    for cell in table:
        row = next(
            (r for r in rows if r["cell"] == cell and r["length"] == length and r["seed"] == 0),
            None,
        )
        if row is None:
            continue
        config = make_config(
            task,
            cell,
            length,
            0,
            row["steps"],
            hidden=meta.get("hidden", 0),
            batch_size=meta.get("batch_size", 0),
        )
        if dataset is None:
            dataset = input_pipeline.load_dataset(config)
        untrained = diagnostics.gradient_flow(config, None, dataset)
        trained = diagnostics.gradient_flow(
            config, diagnostics.load_params(config, row["workdir"], dataset), dataset
        )
        # exact zeros (float32 backward-pass underflow) have no place on a log axis: not drawn
        (line,) = ax.plot(untrained["distance"], _positive(untrained["relative"]), "--", lw=1)
        ax.plot(
            trained["distance"],
            _positive(trained["relative"]),
            "-",
            color=line.get_color(),
            label=cell,
        )
        for d in range(len(untrained["distance"])):
            records.append(
                {
                    "cell": cell,
                    "distance": int(d),
                    "untrained_norm": float(untrained["grad_norm"][d]),
                    "untrained_relative": float(untrained["relative"][d]),
                    "trained_norm": float(trained["grad_norm"][d]),
                    "trained_relative": float(trained["relative"][d]),
                }
            )
        last = len(untrained["distance"]) - 1
        probe = sorted({d for d in (10, 25, 50, 100) if d < last} | {last})
        zeros = [
            f"{name} from {_first_zero(flow['grad_norm'])}"
            for name, flow in (("untrained", untrained), ("trained", trained))
            if _first_zero(flow["grad_norm"]) is not None
        ]
        sentences.append(
            f"- **{cell}** (trained run's {METRIC[task][1]} {row['metric']:.3g}): untrained "
            + ", ".join(f"{untrained['relative'][d]:.2g} at {d}" for d in probe)
            + "; trained "
            + ", ".join(f"{trained['relative'][d]:.2g} at {d}" for d in probe)
            + " steps back"
            + (f"; exactly 0 (float32 underflow) {', '.join(zeros)} steps back" if zeros else "")
            + "."
        )
    ax.set_yscale("log")
    unit = "log-mel frames" if task == "recall" else "steps"
    ax.set_xlabel(f"distance from the readout ({unit})")
    ax.set_ylabel("||dLoss/dx_t|| / value at the readout")
    ax.set_title(f"{task} {length_tag(task, length)}: gradient flow (dashed untrained)")
    ax.legend(fontsize=8)
    stem = os.path.join(out, f"{task}_gradflow")
    fig.tight_layout()
    atomic.save_figure(fig, stem + ".png")
    plt.close(fig)
    meta = dict(meta, gradflow_length=length)
    _write_data(stem, records, meta)
    head = (
        f"Mean over 32 examples of ||dLoss/dx_t||, relative to its value at the readout "
        f"step, vs distance from the readout; dashed = at initialisation, solid = after "
        f"training (seed 0, {row['steps'] if rows else '?'} steps). Norms are summed in "
        f"float64 (a float32 sum of squares drops components below ~1e-19); a gradient that "
        f"is exactly 0 (every component under float32's ~1e-38 in the backward pass) is not "
        f"drawn."
    )
    note = [meta["gradflow_runs_note"], ""] if meta.get("gradflow_runs_note") else []
    _caption(
        stem,
        f"{task}: gradient flow at {length_tag(task, length)}",
        [head, ""] + note + sentences,
        meta,
    )
    return stem


# ----------------------------------------------------------------------------- main


def _grid_rows_and_gradflow_length(task, out, length):
    """The grid's rows saved in <out>/<task>_runs.json (None if absent) and the gradient-flow
    length: `length` if given, else the one the grid's plot used (longest solved, else shortest)."""
    path = os.path.join(out, f"{task}_runs.json")
    if not os.path.exists(path):
        if length is None:
            raise ValueError(
                f"--gradflow_only needs --gradflow_length or the grid's {path} "
                f"(written by a run of the grid without --gradflow_only)"
            )
        return None, length
    with open(path) as f:
        grid_rows = json.load(f)["rows"]
    if length is None:
        length = solved_length(task, summarise(task, grid_rows)) or min(
            r["length"] for r in grid_rows
        )
    return grid_rows, length


def _retrained_note(task, rows, grid_rows) -> str:
    """Caption sentence: which runs the trained curves come from, beside the grid's seed 0."""
    label = METRIC[task][1]
    note = (
        f"Trained curves: seed 0 of each cell at {length_tag(task, rows[0]['length'])}, "
        f"trained (or reused) by this --gradflow_only command, one seed per program"
    )
    if not grid_rows:
        return note + "."
    grid = {
        r["cell"]: r["metric"]
        for r in grid_rows
        if r["seed"] == 0 and r["length"] == rows[0]["length"]
    }
    pairs = [
        f"{r['cell']} {r['metric']:.3g} ({grid[r['cell']]:.3g})" for r in rows if r["cell"] in grid
    ]
    if not pairs:
        return note + f" (the grid's {task}_runs.json has no seed 0 at this length)."
    return (
        note + f"; the grid ({task}_runs.json) trained its seeds together as one vmapped "
        f"program, at the commit it records, so these runs need not match its digits. "
        f"{label[0].upper() + label[1:]} of these runs (the grid's seed 0): "
        + ", ".join(pairs)
        + "."
    )


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m experiments.longrange",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="adding", help=f"one of {lr_config.TASK_NAMES}")
    p.add_argument("--lengths", default=None, help="comma-separated; default per task")
    p.add_argument("--cells", default="rnn,lstm,gru")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--hidden", type=int, default=0, help="0 = the config's (64; 128 for recall)")
    p.add_argument("--batch_size", type=int, default=0, help="0 = the config's (64)")
    p.add_argument("--scan", default="sequential", help=f"one of {SCANS}")
    p.add_argument("--out", default=os.path.join("results", "longrange"))
    p.add_argument("--runs", default=os.path.join("runs", "longrange"))
    p.add_argument(
        "--gradflow_length",
        default=None,
        help="length for the gradient-flow plot (default: the curves' length)",
    )
    p.add_argument("--no_gradflow", action="store_true")
    p.add_argument(
        "--gradflow_only",
        action="store_true",
        help="re-render only <task>_gradflow.*: train (or reuse) seed 0 of each cell "
        "at the gradient-flow length, one seed per program",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="adding T=50, gru, 1 seed, 300 steps; assert MSE < 0.08 and outputs exist",
    )
    return p


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    t_start = time.time()
    if args.smoke:
        args.task, args.lengths, args.cells, args.seeds, args.steps = "adding", "50", "gru", 1, 300
    if args.task not in lr_config.TASK_NAMES:
        raise ValueError(f"--task must be one of {lr_config.TASK_NAMES}, got {args.task!r}")
    if args.seeds <= 0 or args.steps <= 0:
        raise ValueError(f"--seeds and --steps must be positive, got {args.seeds}, {args.steps}")
    variants = parse_cells(args.cells, args.scan)
    lengths = parse_lengths(
        args.task, args.lengths or ",".join(str(v) for v in lr_config.DEFAULT_LENGTHS[args.task])
    )
    if args.gradflow_only and args.no_gradflow:
        raise ValueError("--gradflow_only and --no_gradflow exclude each other")
    os.makedirs(args.out, exist_ok=True)
    gl = None
    if args.gradflow_length is not None:
        gl = parse_lengths(args.task, args.gradflow_length, "--gradflow_length")[0]
    grid_rows = None
    if args.gradflow_only:
        grid_rows, gl = _grid_rows_and_gradflow_length(args.task, args.out, gl)
        lengths, seeds_per_program = [gl], 1
    else:
        seeds_per_program = args.seeds
    rows = train_grid(
        args.task,
        lengths,
        variants,
        seeds_per_program,
        args.steps,
        args.runs,
        hidden=args.hidden,
        scan=args.scan,
        batch_size=args.batch_size,
    )
    c0 = make_config(
        args.task,
        variants[0],
        lengths[0],
        0,
        args.steps,
        hidden=args.hidden,
        batch_size=args.batch_size,
    )
    record = provenance.record(
        {
            "precision": c0.model.get("dtype") or "float32",
            "scan": args.scan,
            "seeds_per_program": seeds_per_program,
        }
    )
    meta = {
        "command": "python -m experiments.longrange " + " ".join(shlex.quote(a) for a in argv),
        "task": args.task,
        "lengths": lengths,
        "cells": variants,
        "seeds": args.seeds,
        "steps": args.steps,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "machine": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end",
        "setup": f"hidden {c0.model.hidden}, batch {c0.batch_size}, {c0.optimizer.name} "
        f"lr {c0.optimizer.learning_rate} {c0.optimizer.schedule}, clip "
        f"{c0.optimizer.clip_norm}, {args.steps} steps, scan {args.scan}; eval on "
        + (
            "600 validation / 600 test clips of unseen voices"
            if args.task == "recall"
            else f"{c0.task_eval_size} fixed examples"
        ),
        "provenance": record,
    }
    meta["wall_time_s"] = time.time() - t_start  # training; updated below with plotting
    groups = {}
    for r in rows:  # seeds of one (length, cell) share one program: count its wall time once
        key = (r["length"], r["cell"])
        groups[key] = max(groups.get(key, 0.0), float(r.get("wall_time_s") or 0.0))
    meta["grid_wall_time_s"] = sum(groups.values())
    if args.gradflow_only:
        meta["gradflow_runs_note"] = _retrained_note(args.task, rows, grid_rows)
        stems = [plot_gradflow(args.task, rows, args.out, meta, gl)]
    else:
        stems = [
            plot_length(args.task, rows, args.out, meta),
            plot_curves(args.task, rows, args.out, meta),
        ]
        if not args.no_gradflow:
            stems.append(plot_gradflow(args.task, rows, args.out, meta, gl))
    wall = time.time() - t_start
    for stem in stems:  # the caption's wall time covers training + plots
        with open(stem + ".md") as f:
            text = f.read()
        marker = "Wall time of the whole command: "
        i = text.index(marker) + len(marker)
        j = text.index(" s ", i)
        atomic.write_text(stem + ".md", text[:i] + f"{wall:.0f}" + text[j:])
    summary = {
        "rows": rows,
        "files": [s + ext for s in stems for ext in (".png", ".json", ".csv", ".md")],
        "wall_time_s": wall,
    }
    if not args.gradflow_only:  # the grid's record; a gradient-flow re-render leaves it be
        atomic.write_json(
            os.path.join(args.out, f"{args.task}_runs.json"),
            {"meta": dict(meta, wall_time_s=wall), "rows": rows},
            indent=1,
        )
    if args.smoke:
        mse = rows[0]["metric"]
        assert mse < 0.08, f"smoke: adding T=50 GRU test MSE {mse:.4f} is not below 0.08"
        missing = [p for p in summary["files"] if not os.path.exists(p)]
        assert not missing, f"smoke: missing outputs {missing}"
        print(
            f"[longrange] smoke OK: test MSE {mse:.4f} < 0.08, {len(summary['files'])} files "
            f"in {args.out}, {wall:.0f} s"
        )
    else:
        print(f"[longrange] done in {wall:.0f} s; outputs in {args.out}")
    return summary


if __name__ == "__main__":
    from rnnbench import errors

    errors.call(main)
