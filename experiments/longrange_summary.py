"""results/longrange/README.md, rendered from the JSON files beside it (never typed by hand).

  python -m experiments.longrange_summary [--results_dir=results/longrange]

Reads, for each task of experiments/configs/longrange.py (adding, copy, selective, recall), the
`<task>_length.json`, `<task>_curves.json` and `<task>_gradflow.json` that experiments/longrange.py
writes, and the `scan_cost.json` of experiments/bench_scan.py; writes `<results_dir>/README.md`:
the solved thresholds (configs/longrange.py `SOLVED`), per task a cells x lengths table of the
mean test metric, the learning curves' threshold crossings and the gradient flow at a few
distances, the commands that made every file, and each file's provenance. `render(results_dir)`
is the pure part (tests compare it with the committed README character for character).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from absl import app, flags

from experiments import longrange
from experiments.configs import longrange as lr_config
from rnnbench import provenance

TITLE = {
    "adding": "Adding problem",
    "copy": "Copy memory",
    "selective": "Selective copying",
    "recall": "Delayed keyword recall",
}
SMOKE_COMMAND = (
    "python -m experiments.longrange --smoke --out=/tmp/lr_smoke --runs=/tmp/lr_smoke/runs"
)
SUMMARY_COMMAND = "python -m experiments.longrange_summary"
PROBE_DISTANCES = (10, 50, 100)  # gradient-flow columns, plus the largest distance in the file
SCAN_COST = "scan_cost.json"
ACCELERATOR_DIR = "accelerator"  # beside results_dir: experiments/accelerator_check.py's files
# Fields each file must have: (meta keys, keys of every data record).
FIELDS = {
    "length": (
        ("command", "setup", "machine", "seeds", "steps"),
        ("cell", "length", "mean", "solved"),
    ),
    "curves": (("command", "machine", "steps", "curve_length"), ("cell", "step", "mean")),
    "gradflow": (
        ("command", "machine", "gradflow_length"),
        (
            "cell",
            "distance",
            "untrained_norm",
            "untrained_relative",
            "trained_norm",
            "trained_relative",
        ),
    ),
}
# The float32 sum of squares the gradient-flow norms used before rnnbench/diagnostics.py summed
# them in float64 lost every norm below sqrt(smallest normal float32).
FLOAT32_NORM_FLOOR = math.sqrt(float(np.finfo(np.float32).tiny))


def define_flags() -> None:
    """The command line (defined only when run as a program, so that importing this module, e.g.
    from the tests, does not clash with other entry points' flags)."""
    flags.DEFINE_string(
        "results_dir",
        os.path.join("results", "longrange"),
        "Directory with the long-range JSON files; README.md is written there.",
    )


# ----------------------------------------------------------------------------- reading


def load(path: str, kind: str | None = None) -> dict:
    """The JSON at `path`; with `kind` (a key of FIELDS) checks its meta and data fields.
    ValueError naming the file when it is missing, unreadable or lacks a field."""
    if not os.path.isfile(path):
        raise ValueError(
            f"{path}: missing (expected a JSON file written by the command that makes it)"
        )
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable JSON ({e})") from None
    if kind is None:
        return doc
    meta_keys, record_keys = FIELDS[kind]
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("meta"), dict)
        or not isinstance(doc.get("data"), list)
    ):
        raise ValueError(f"{path}: expected an object {{'meta': {{...}}, 'data': [...]}}")
    missing = [k for k in meta_keys if k not in doc["meta"]]
    if missing:
        raise ValueError(f"{path}: meta lacks {missing}")
    if not doc["data"]:
        raise ValueError(f"{path}: 'data' is empty")
    for i, r in enumerate(doc["data"]):
        missing = [k for k in record_keys if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"{path}: data[{i}] lacks {missing}")
    return doc


# ----------------------------------------------------------------------------- formatting


def fmt_length(task: str, length) -> str:
    """'T=200' (synthetic tasks) or '2 s' (recall delays)."""
    return f"{float(length):g} s" if task == "recall" else f"T={int(length)}"


def fmt_ratio(x: float) -> str:
    """Gradient-flow ratio: '1.2e-03'; an exact zero (float32 underflow) as '0'."""
    return "0" if x == 0 else f"{x:.1e}"


def metric_label(task: str) -> str:
    label = longrange.METRIC[task][1]
    return label if label.startswith("test") else "test " + label


def threshold_text(task: str) -> str:
    metric, direction, value = lr_config.SOLVED[task]
    sign = "<" if direction == "below" else ">"
    return (
        f"{task} {metric} {sign} {value:.3g} (input-blind baseline {longrange.BASELINE[task]:.3g})"
    )


def links(name: str) -> str:
    return f"[caption]({name}.md), [plot]({name}.png), data [{name}.json]({name}.json)"


def table(header: list[str], rows: list[list[str]], align: str = "---:") -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "|".join([align] * (len(header) - 1)) + "|",
    ]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def cells_in_order(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["cell"] for r in records))


# ----------------------------------------------------------------------------- sections


def length_section(task: str, doc: dict) -> list[str]:
    meta, data = doc["meta"], doc["data"]
    lengths = sorted({r["length"] for r in data})
    by = {(r["cell"], r["length"]): r for r in data}
    rows = []
    for cell in cells_in_order(data):
        row = [cell]
        for length in lengths:
            r = by.get((cell, length))
            row.append(
                "–"
                if r is None
                else (f"**{r['mean']:.3g}**" if r["solved"] else f"{r['mean']:.3g}")
            )
        solved = [l for l in lengths if (cell, l) in by and by[(cell, l)]["solved"]]
        row.append(fmt_length(task, max(solved)) if solved else "none")
        rows.append(row)
    name = f"{task}_length"
    return [
        f"### {metric_label(task)[0].upper() + metric_label(task)[1:]} vs dependency length",
        "",
        f"Mean over {meta['seeds']} seed{'s' if meta['seeds'] != 1 else ''} after "
        f"{meta['steps']} steps; **bold**: solved. {links(name)}.",
        "",
        *table(["cell", *(fmt_length(task, l) for l in lengths), "longest solved"], rows),
    ]


def curves_section(task: str, doc: dict) -> list[str]:
    meta, data = doc["meta"], doc["data"]
    rows = []
    last_steps = set()
    for cell in cells_in_order(data):
        points = sorted((r["step"], r["mean"]) for r in data if r["cell"] == cell)
        hit = next((s for s, m in points if longrange.is_solved(task, m)), None)
        first = f"step {hit}" if hit is not None else f"not within {meta['steps']} steps"
        rows.append([cell, first, f"{points[-1][1]:.3g}"])
        last_steps.add(points[-1][0])
    final = f"final (step {last_steps.pop()})" if len(last_steps) == 1 else "final"
    name = f"{task}_curves"
    metric = longrange.METRIC[task][1].replace("test ", "")
    return [
        f"### Learning curves at {fmt_length(task, meta['curve_length'])}",
        "",
        f"Validation {metric}, mean over seeds, at the longest length any cell solves (the "
        f"shortest if none does): the first evaluation at which it passes the threshold, and its "
        f"last value. {links(name)}.",
        "",
        *table(["cell", "first evaluation past the threshold", final], rows),
    ]


def gradflow_section(task: str, doc: dict) -> list[str]:
    meta, data = doc["meta"], doc["data"]
    by = {(r["cell"], r["distance"]): r for r in data}
    largest = max(r["distance"] for r in data)
    probe = [d for d in PROBE_DISTANCES if d < largest] + [largest]
    rows = []
    for cell in cells_in_order(data):
        for weights in ("untrained", "trained"):
            row = [cell, weights]
            for d in probe:
                r = by.get((cell, d))
                row.append("–" if r is None else fmt_ratio(r[f"{weights}_relative"]))
            rows.append(row)
    unit = "log-mel frames" if task == "recall" else "steps"
    name = f"{task}_gradflow"
    lines = [
        f"### Gradient flow at {fmt_length(task, meta['gradflow_length'])}",
        "",
        f"||dLoss/dx_t|| relative to its value at the readout, at distances from the readout "
        f"({unit}); untrained = at initialisation, trained = seed 0 after training; 0 = exactly "
        f"zero (float32 underflow in the backward pass). {links(name)}.",
        "",
        *table(["cell", "weights", *(str(d) for d in probe)], rows),
    ]
    if meta.get("gradflow_runs_note"):
        lines += ["", meta["gradflow_runs_note"]]
    if "provenance" not in meta:
        norms = np.array([r[f"{w}_norm"] for r in data for w in ("untrained", "trained")], float)
        zeros = int((norms == 0).sum())
        smallest = float(norms[norms > 0].min()) if (norms > 0).any() else float("nan")
        lines += [
            "",
            f"This file predates the provenance record, and with it the float64 sum of the "
            f"norms (rnnbench/diagnostics.py; the float32 sum it replaced lost norms below "
            f"{FLOAT32_NORM_FLOOR:.1e}). Its smallest nonzero norm is {smallest:.1e}; "
            f"{zeros} of its {norms.size} norms are exactly 0"
            + (
                f" and may be that artefact; re-render with `{meta['command']} --gradflow_only`."
                if zeros
                else "."
            ),
        ]
    return lines


def machine_text(meta: dict) -> str:
    if "provenance" in meta:
        return provenance.one_line(meta["provenance"])
    return f"no provenance record (made before rnnbench/provenance.py); machine: {meta['machine']}"


def accelerator_scans(results_dir: str) -> list[tuple[str, dict]]:
    """[(device slug, bench_scan's JSON)] for every full accelerator check in
    `<results_dir>/../accelerator` (experiments/accelerator_check.py) that ran bench_scan."""
    acc_dir = os.path.join(results_dir, os.pardir, ACCELERATOR_DIR)
    if not os.path.isdir(acc_dir):
        return []
    out = []
    for name in sorted(os.listdir(acc_dir)):
        slug, ext = os.path.splitext(name)
        scan_path = os.path.join(acc_dir, slug, "scan", SCAN_COST)
        if ext != ".json" or not os.path.isfile(scan_path):
            continue
        report = load(os.path.join(acc_dir, name))
        if report.get("quick") or (report.get("device") or {}).get("platform") == "cpu":
            continue
        out.append((slug, load(scan_path)))
    return out


def scan_table(scans: list[tuple[str, str, dict]]) -> list[str]:
    """ms per train step, one row per (machine, T), one column per variant; `scans` holds
    (machine label, link to its plot, bench_scan JSON)."""
    variants = list(dict.fromkeys(r["variant"] for _, _, doc in scans for r in doc["results"]))
    lines = [
        "| machine (batch, hidden) | T | " + " | ".join(variants) + " |",
        "|---|---:|" + "---:|" * len(variants),
    ]
    for label, plot, doc in scans:
        ms = {(r["T"], r["variant"]): r["step_ms_median"] for r in doc["results"]}
        size = f"{doc['config']['batch']}, {doc['config']['hidden']}"
        for T in sorted({t for t, _ in ms}):
            cells = [f"{ms[(T, v)]:.3g}" if (T, v) in ms else "" for v in variants]
            lines.append(f"| [{label}]({plot}) ({size}) | {T} | " + " | ".join(cells) + " |")
    return lines


def scan_cost_machine(doc: dict) -> str:
    if "provenance" in doc:
        return provenance.one_line(doc["provenance"])
    m = doc.get("machine") or {}
    start = ", ".join(f"{x:.1f}" for x in m.get("loadavg_start", []))
    return (
        f"no provenance record (made before rnnbench/provenance.py); machine: {m.get('cpu')}, "
        f"{m.get('cpu_count')} CPUs, backend {m.get('backend')}, jax {m.get('jax')}, "
        f"load average at start {start}"
    )


# ----------------------------------------------------------------------------- the README


def render(results_dir: str) -> str:
    """The README's Markdown, from the JSON files in `results_dir`."""
    if not os.path.isdir(results_dir):
        raise ValueError(
            f"--results_dir={results_dir}: not a directory (expected results/longrange)"
        )
    docs = {
        (task, kind): load(os.path.join(results_dir, f"{task}_{kind}.json"), kind)
        for task in lr_config.TASK_NAMES
        for kind in FIELDS
    }
    scan_path = os.path.join(results_dir, SCAN_COST)
    scan = load(scan_path)
    if not isinstance(scan, dict) or "command" not in scan:
        raise ValueError(f"{scan_path}: expected bench_scan's object with a 'command'")

    lines = [
        "# Long-range dependencies: results",
        "",
        f"Generated by `{SUMMARY_COMMAND}` from the JSON files beside it; do not edit by hand.",
        "",
        "Made with `experiments/longrange.py` (grids) and `experiments/bench_scan.py` (scan cost). "
        "Each PNG has its data beside it (`.json`, `.csv`) and a caption (`.md`) with the per-cell "
        "numbers, the command and the wall times.",
        "",
        '"Solved" = the mean over seeds of the test metric meets the task\'s threshold in '
        "`experiments/configs/longrange.py` (`SOLVED`): "
        + "; ".join(threshold_text(t) for t in lr_config.TASK_NAMES)
        + '. These are fixed-step budgets, so "not solved" means "not within this budget".',
    ]
    for task in lr_config.TASK_NAMES:
        meta = docs[(task, "length")]["meta"]
        lines += [
            "",
            f"## {TITLE[task]}",
            "",
            f"Setup: {meta['setup']}.",
            "",
            *length_section(task, docs[(task, "length")]),
            "",
            *curves_section(task, docs[(task, "curves")]),
            "",
            *gradflow_section(task, docs[(task, "gradflow")]),
        ]
    lines += [
        "",
        "## Scan cost",
        "",
        "Train-step time vs T, sequential (lax.scan) vs parallel (associative_scan) forms: "
        f"[caption](scan_cost.md), [plot](scan_cost.png), data [{SCAN_COST}]({SCAN_COST}).",
    ]
    accelerators = accelerator_scans(results_dir)
    if accelerators:
        here = provenance.one_line(scan["provenance"]).split("; ") if "provenance" in scan else []
        machines = [(next((x for x in here if "core" in x), "CPU"), "scan_cost.png", scan)]
        for slug, doc in accelerators:
            label = (doc.get("provenance") or {}).get("accelerator") or slug
            plot = f"../{ACCELERATOR_DIR}/{slug}_scan.png"
            machines.append((label, plot, doc))
        lines += [
            "",
            "The same benchmark on an accelerator (`python -m experiments.accelerator_check`; "
            "its report and plot in `results/accelerator/`), beside this machine's, ms per train "
            "step (forward, backward, Adam; medians). The machine links to its plot:",
            "",
            *scan_table(machines),
        ]

    commands: dict[str, list[str]] = {}
    for (task, kind), doc in docs.items():
        commands.setdefault(doc["meta"]["command"].strip(), []).append(f"{task}_{kind}")
    commands.setdefault(scan["command"].strip(), []).append("scan_cost")
    lines += [
        "",
        "## Reproduce",
        "",
        "Each command skips finished runs; the training wall times per grid are in the captions. "
        "`--gradflow_only` trains or reuses seed 0 of each cell at the gradient-flow length, one "
        "seed per program, and leaves the length and curve files and `<task>_runs.json` alone.",
        "",
        "```",
    ]
    for command, names in commands.items():
        lines += [f"# writes {', '.join(names)}", command]
    lines += [
        "# smoke test: adding problem, GRU, one seed; asserts the outputs exist",
        SMOKE_COMMAND,
        "# this README",
        SUMMARY_COMMAND,
        "```",
        "",
        "## Provenance",
        "",
    ]
    for (task, kind), doc in docs.items():
        name = f"{task}_{kind}.json"
        lines.append(f"- [{name}]({name}): {machine_text(doc['meta'])}")
    lines.append(f"- [{SCAN_COST}]({SCAN_COST}): {scan_cost_machine(scan)}")
    for slug, doc in accelerators:
        name = f"../{ACCELERATOR_DIR}/{slug}/scan/{SCAN_COST}"
        lines.append(f"- [{name}]({name}): {scan_cost_machine(doc)}")

    notes = []
    adding = docs[("adding", "length")]["data"]
    if any(r["cell"] == "lru" for r in adding) and not any(
        r["solved"] for r in adding if r["cell"] == "lru"
    ):
        notes.append(
            "The LRU solves no length of the adding problem: a one-layer LRU is linear in its "
            "inputs and the head is linear, so it cannot form value x marker (it needs a "
            "nonlinear layer after it; not fixed here)."
        )
    notes.append(
        "rnnbench initialises the tanh-RNN's recurrent matrix orthogonally, so its untrained "
        "gradient decays far more slowly than in setups with a Gaussian init; compare the "
        "untrained rows of the gradient-flow tables."
    )
    lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rnnbench import atomic

    results_dir = flags.FLAGS.results_dir
    text = render(results_dir)
    path = os.path.join(results_dir, "README.md")
    atomic.write_text(path, text)
    print(f"[longrange_summary] wrote {path}")


if __name__ == "__main__":
    from rnnbench import errors

    define_flags()
    errors.run(main)
