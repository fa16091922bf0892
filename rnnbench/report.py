"""Sweep directory -> results table (Markdown, CSV, JSON) and plots (PNG). Generated, never typed.

  report = make_report("runs/kws_cells", "results/kws_cells", reference="hello_edge",
                       report_command="python -m experiments.report ...")
  rerender("results/kws_cells.json")   # the .md, .csv and .json again, from the JSON alone

writes results/kws_cells.{md,csv,json}, results/kws_cells_curves.png (validation metric against
step and against training seconds) and results/kws_cells_params.png (test metric against
parameter count). Runs are grouped by their sweep overrides minus `seed`; each metric is
mean ± sample std (ddof=1) over the finished seeds with n; failed and missing runs are named in
their row, never averaged away. Every file is written to a temp file and renamed into place.
The header starts with the command that reproduces the table, then the commands it runs, how the
sweep runner ran (backend, parallelism, vmapped seeds) and the provenance of runs and report.

A sweep directory holds sweep.json ({"config", "sweep", "runner", "runs": [{"name",
"overrides", "state", "workdir"}]}) and one workdir per run (config.json, metrics.jsonl,
final.json, error.txt when the run failed; see rnnbench/train.py). Without sweep.json the
run directories are discovered and the overrides are the config fields that differ.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import shlex
from typing import Any

from rnnbench import atomic, grid, provenance
from rnnbench.grid import Run, Sweep, fmt_value, short_keys

# (key in final.json, table header, display scale, key in validation events of metrics.jsonl)
METRICS = {
    "classify": [
        ("test_accuracy", "test acc (%)", 100.0),
        ("val_accuracy", "val acc (%)", 100.0),
        ("test_loss", "test loss", 1.0),
    ],
    "ctc": [
        ("test_cer", "test CER (%)", 100.0),
        ("test_wer", "test WER (%)", 100.0),
        ("val_cer", "val CER (%)", 100.0),
        ("val_wer", "val WER (%)", 100.0),
        ("test_loss", "test loss", 1.0),
    ],
    "intent": [
        ("test_meaning_accuracy", "test exact meaning (%)", 100.0),
        ("test_intent_accuracy", "test intent (%)", 100.0),
        ("test_slot_accuracy", "test slots (%)", 100.0),
        ("val_meaning_accuracy", "val exact meaning (%)", 100.0),
        ("test_loss", "test loss", 1.0),
    ],
    # recognisers scored as SLU pipelines (their PIPELINE_FILE, experiments/slu_pipeline.py)
    "intent_pipeline": [
        ("test_meaning_accuracy", "test exact meaning (%)", 100.0),
        ("test_intent_accuracy", "test intent (%)", 100.0),
        ("test_slot_accuracy", "test slots (%)", 100.0),
        ("test_reference_meaning_accuracy", "parser on reference transcripts (%)", 100.0),
        ("test_cer", "test CER (%)", 100.0),
        ("test_wer", "test WER (%)", 100.0),
    ],
}
PRIMARY = {
    "classify": "test_accuracy",
    "ctc": "test_cer",
    "intent": "test_meaning_accuracy",
    "intent_pipeline": "test_meaning_accuracy",
}
CURVE_METRIC = {
    "classify": ("accuracy", "validation accuracy (%)", 100.0),
    "ctc": ("cer", "validation CER (%)", 100.0),
    "intent": ("meaning_accuracy", "validation exact-meaning accuracy (%)", 100.0),
    "intent_pipeline": ("cer", "the recogniser's validation CER (%)", 100.0),
}
# objectives (final.json "objective") whose tables share another's columns
TABLE_KIND = {"las": "ctc", "transducer": "ctc"}

# Zhang et al. 2017, "Hello Edge: Keyword Spotting on Microcontrollers" (arXiv:1711.07128),
# Speech Commands v1, 12 classes, small (S) models, test accuracy in %.
HELLO_EDGE = {"Basic LSTM": 92.0, "LSTM": 92.9, "GRU": 93.5, "CRNN": 94.0}
HELLO_EDGE_BY_CELL = {"lstm": "LSTM", "gru": "GRU", "gru_cho": "GRU"}
REFERENCES = ("hello_edge",)
DATASET_DESCRIPTIONS = {
    "synth_commands": "synthetic eSpeak NG speech (synth_commands, unseen test voices)",
    "synth_digits": "synthetic eSpeak NG digit strings (synth_digits)",
    "fsdd": "FSDD spoken digits (real recordings, 10 classes)",
    "fsdd_digits": "concatenated FSDD digits (fsdd_digits)",
    "speech_commands": "Speech Commands (real recordings; check version and protocol)",
}


# written into a recogniser's workdir by `python -m experiments.slu_pipeline`: its transcripts
# parsed into meanings on the test split; a sweep of such runs is tabulated as "intent_pipeline"
PIPELINE_FILE = "slu_pipeline_test.json"

# written into a run's workdir by `python -m experiments.decoders --speed_only`: the run's own
# final-evaluation decoding timed on the test split ({"utterances_per_s", ...})
DECODE_SPEED_FILE = "decode_speed.json"


class ReportError(ValueError):
    """The sweep directory cannot be reported (missing, empty, unreadable)."""


# ----------------------------------------------------------------------------- reading


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def read_table_json(json_path: str, *, kind: str, program: str, what: str) -> dict:
    """The JSON object a table-writing program saved (its `kind` field = `kind`), for
    re-rendering; ValueError naming the file and `program` when it is unreadable or another
    kind (`what`: how the error names the expected table)."""
    try:
        table = _read_json(json_path)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"cannot read {json_path} ({e}); expected the .json that {program} wrote"
        ) from None
    if not isinstance(table, dict) or table.get("kind") != kind:
        raise ValueError(f"{json_path} is not {what} written by {program}")
    return table


def read_events(path: str) -> list[dict]:
    """metrics.jsonl -> list of events; lines cut short (a killed run) are skipped."""
    if not os.path.exists(path):
        return []
    events = []
    with open(path) as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "step" in event:
                events.append(event)
    return events


def _last_line(path: str) -> str:
    with open(path, errors="replace") as f:
        lines = [l.strip() for l in f if l.strip()]
    return lines[-1] if lines else "(empty error.txt)"


def _load_run(sweep_dir: str, name: str, workdir: str, overrides: dict, state: str) -> Run:
    # sweep.json may name the workdir absolutely, relative to the sweep dir, or relative to the
    # directory the sweep was launched from; runs always live directly in the sweep dir.
    path = workdir if os.path.isabs(workdir) else os.path.join(sweep_dir, workdir)
    if not os.path.isdir(path):
        path = os.path.join(sweep_dir, os.path.basename(os.path.normpath(workdir)))
    run = Run(name, dict(overrides), path, state="missing")
    cfg = os.path.join(path, "config.json")
    if os.path.exists(cfg):
        try:
            run.config = _read_json(cfg)
        except ValueError:
            pass
    run.events = read_events(os.path.join(path, "metrics.jsonl"))
    final, err = os.path.join(path, "final.json"), os.path.join(path, "error.txt")
    if os.path.exists(final):
        try:
            run.final, run.state = _read_json(final), "done"
        except ValueError as e:
            run.state, run.error = "failed", f"unreadable final.json ({e})"
    elif os.path.exists(err):
        run.state, run.error = "failed", _last_line(err)
    elif state in ("running", "pending"):
        run.state = state
    elif state == "failed":
        run.state, run.error = "failed", "marked failed in sweep.json (no error.txt)"
    pipeline = os.path.join(path, PIPELINE_FILE)
    if run.state == "done" and os.path.exists(pipeline):
        try:
            scores = _read_json(pipeline)
        except ValueError as e:
            run.state, run.error = "failed", f"unreadable {PIPELINE_FILE} ({e})"
        else:
            run.final = {
                **run.final,
                **{k: v for k, v in scores.items() if k.startswith("test_")},
                "objective": "intent_pipeline",
            }
    return run


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_sweep(sweep_dir: str) -> Sweep:
    """Reads sweep.json and every run it lists; without sweep.json, the run directories found.

    Raises ReportError when the directory is missing or holds no runs at all.
    """
    expected = (
        "a sweep directory from `python -m experiments.sweep`: sweep.json and/or run "
        "directories holding config.json / final.json / error.txt"
    )
    if not os.path.isdir(sweep_dir):
        raise ReportError(f"sweep directory {sweep_dir!r} does not exist; expected {expected}")
    spec_path = os.path.join(sweep_dir, "sweep.json")
    if os.path.exists(spec_path):
        try:
            spec = _read_json(spec_path)
        except ValueError as e:
            raise ReportError(f"{spec_path} is not valid JSON ({e})") from None
        entries = spec.get("runs") or []
        if not entries:
            raise ReportError(f"{spec_path} lists no runs; expected {expected}")
        runs = [
            _load_run(
                sweep_dir,
                e["name"],
                e.get("workdir") or e["name"],
                e.get("overrides") or {},
                e.get("state", ""),
            )
            for e in entries
        ]
        return Sweep(
            sweep_dir,
            runs,
            config_arg=spec.get("config"),
            name=spec.get("sweep"),
            spec={k: v for k, v in spec.items() if k != "runs"},
        )

    names = sorted(
        n
        for n in os.listdir(sweep_dir)
        if any(
            os.path.exists(os.path.join(sweep_dir, n, f))
            for f in ("config.json", "final.json", "error.txt")
        )
    )
    if not names:
        raise ReportError(
            f"{sweep_dir!r} holds no sweep.json and no run directories; expected {expected}"
        )
    runs = [_load_run(sweep_dir, n, n, {}, "") for n in names]
    flat = [_flatten(r.config or {}) for r in runs]
    keys = sorted({k for f in flat for k in f})
    varied = [
        k
        for k in keys
        if not k.startswith("wandb.")
        and len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1
    ]
    for run, f in zip(runs, flat):
        run.overrides = {k: f.get(k) for k in varied}
    # A configuration without a seed that others have: that run is missing, not just absent.
    seeds = list(dict.fromkeys(r.overrides["seed"] for r in runs if "seed" in r.overrides))
    groups = grid.group_by_config(runs, lambda r: r.overrides)
    for members in groups.values() if seeds else []:
        have = {json.dumps(r.overrides.get("seed")) for r in members}
        for seed in seeds:
            if json.dumps(seed) not in have:
                ov = {**grid.without_seed(members[0].overrides), "seed": seed}
                name = grid.run_names([ov])[0]
                runs.append(Run(name, ov, os.path.join(sweep_dir, name), state="missing"))
    return Sweep(sweep_dir, runs)


# ----------------------------------------------------------------------------- aggregation


def stats(values: list[float]) -> dict:
    """mean, sample std (ddof=1; None for n < 2), min, max, n and the values themselves."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(values)
    if not n:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "values": []}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def detect_task(runs: list[Run]) -> str:
    """The table kind ('classify', 'ctc' or 'intent'): final.json's objective (recognisers all
    report as 'ctc'), else its task, else its metric names, else config.model.kind."""
    for r in runs:
        objective = (r.final or {}).get("objective")
        if objective in METRICS or objective in TABLE_KIND:
            return TABLE_KIND.get(objective, objective)
    for r in runs:
        if r.final:
            if r.final.get("task") in METRICS:
                return r.final["task"]
            if "test_cer" in r.final or "test_wer" in r.final:
                return "ctc"
            if "test_accuracy" in r.final:
                return "classify"
    for r in runs:
        kind = (r.config.get("model") or {}).get("kind") if r.config else None
        if kind in METRICS or kind in TABLE_KIND:
            return TABLE_KIND.get(kind, kind)
    return "classify"


def decode_speed(run: Run) -> float | None:
    """Utterances per second of the run's decoding (its decode_speed.json), if measured."""
    path = os.path.join(run.workdir, DECODE_SPEED_FILE)
    if not os.path.exists(path):
        return None
    try:
        return float(_read_json(path)["utterances_per_s"])
    except (ValueError, KeyError, TypeError):
        return None


def _run_tag(run: Run) -> str:
    return f"seed={run.overrides['seed']}" if "seed" in run.overrides else run.name


def _hello_edge(run: Run | None, overrides: dict) -> tuple[str, float] | None:
    model = ((run.config or {}).get("model") or {}) if run else {}
    cell = overrides.get("model.cell", model.get("cell"))
    bidirectional = overrides.get("model.bidirectional", model.get("bidirectional", False))
    name = HELLO_EDGE_BY_CELL.get(cell)
    if name is None or bidirectional:
        return None
    return name, HELLO_EDGE[name]


def aggregate(sweep: Sweep, reference: str | None = None) -> dict:
    """Groups runs by overrides minus seed; returns the report as a JSON-able dict."""
    if reference is not None and reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; known: {REFERENCES}")
    task = detect_task(sweep.runs)
    if reference == "hello_edge" and task != "classify":
        raise ValueError(
            f"--reference=hello_edge holds keyword-spotting accuracies; this sweep is a {task} task"
        )
    groups = grid.group_by_config(sweep.runs, lambda r: r.overrides)
    keys = grid.key_order(
        dict.fromkeys(k for r in sweep.runs for k in r.overrides if k != "seed"),
        (r.name for r in sweep.runs),
    )
    short = short_keys(keys)
    seeds = list(dict.fromkeys(r.overrides.get("seed") for r in sweep.runs))

    rows = []
    for cfg_json, runs in groups.items():
        cfg = json.loads(cfg_json)
        done = [r for r in runs if r.state == "done"]
        failed = [r for r in runs if r.state == "failed"]
        missing = [r for r in runs if r.state not in ("done", "failed")]
        row = {
            "config": cfg,
            "label": ", ".join(f"{short[k]}={fmt_value(cfg[k])}" for k in keys if k in cfg)
            or "(base config)",
            "n": len(done),
            "expected": len(runs),
            "metrics": {
                m: stats([r.final.get(m) for r in done if m in r.final])
                for m, _, _ in METRICS[task]
            },
            "num_params": stats(
                [r.final.get("num_params") for r in done if r.final.get("num_params") is not None]
            ),
            "train_time_s": stats(
                [
                    r.final.get("train_time_s")
                    for r in done
                    if r.final.get("train_time_s") is not None
                ]
            ),
            "wall_time_s": stats(
                [r.final.get("wall_time_s") for r in done if r.final.get("wall_time_s") is not None]
            ),
            "steps_per_s": stats(
                [r.final.get("steps_per_s") for r in done if r.final.get("steps_per_s") is not None]
            ),
            "decode_utt_per_s": stats([decode_speed(r) for r in done]),
            "steps": sorted({r.final.get("steps") for r in done if r.final.get("steps")}),
            "failed": [{"run": r.name, "tag": _run_tag(r), "error": r.error} for r in failed],
            "missing": [{"run": r.name, "tag": _run_tag(r), "state": r.state} for r in missing],
            "runs": [
                {
                    "run": r.name,
                    "state": r.state,
                    "workdir": os.path.relpath(r.workdir, sweep.sweep_dir),
                }
                for r in runs
            ],
        }
        if reference == "hello_edge":
            ref = _hello_edge(next((r for r in runs if r.config), None), cfg)
            row["reference"] = {"name": ref[0], "test_accuracy_pct": ref[1]} if ref else None
        rows.append(row)

    finals = [r.final for r in sweep.runs if r.final]
    provs = [_run_provenance(f) for f in finals]
    bad = [r for r in sweep.runs if r.state != "done"]
    warnings = []
    if bad:
        n_failed = sum(r.state == "failed" for r in bad)
        warnings.append(
            f"{len(bad)} of {len(sweep.runs)} runs have no results ({n_failed} failed, "
            f"{len(bad) - n_failed} missing/running/pending): "
            + ", ".join(f"{r.name} ({r.state})" for r in bad[:10])
            + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            + "; their rows show n < expected."
        )
    return {
        "sweep_dir": sweep.sweep_dir,
        "sweep": sweep.spec,
        "task": task,
        "primary_metric": PRIMARY[task],
        "metrics": [m for m, _, _ in METRICS[task]],
        "override_keys": keys,
        "seeds": [s for s in seeds if s is not None],
        "reference": reference,
        "datasets": sorted({f.get("dataset") for f in finals if f.get("dataset")}),
        "run_commits": _counts(p["git_commit"] for p in provs),
        "run_dirty": sum(bool(p["git_dirty"]) for p in provs),
        "run_jax_versions": _counts(p["jax"] for p in provs),
        "run_flax_versions": _counts(p["flax"] for p in provs),
        "run_models_in_program": _counts(f.get("models_in_program", 1) for f in finals),
        "run_devices": _counts(p["devices"] for p in provs),
        "run_precision": _counts(p["precision"] for p in provs),
        "num_runs": len(sweep.runs),
        "num_done": len(finals),
        "rows": rows,
        "warnings": warnings,
    }


def _counts(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        if v:
            out[str(v)] = out.get(str(v), 0) + 1
    return out


def _run_provenance(final: dict) -> dict:
    """Commit, versions, devices and precision of a run: from final.json's `provenance` record
    (rnnbench/provenance.py), else from the flat fields runs wrote before it."""
    rec = final.get("provenance") or {}
    versions = rec.get("versions") or {}
    if rec.get("accelerator"):
        devices = f"{rec.get('device_count', 1)}x {rec['accelerator']}"
    else:
        devices = ", ".join(final.get("devices") or [])
    precision = rec.get("precision")
    return {
        "git_commit": rec.get("git_commit") or final.get("git_commit"),
        "git_dirty": rec.get("git_dirty"),
        "jax": versions.get("jax") or final.get("jax_version"),
        "flax": versions.get("flax") or final.get("flax_version"),
        "devices": devices,
        "precision": json.dumps(precision, sort_keys=True) if precision else None,
    }


def _provenance_from_environment(env: dict) -> dict:
    """The `environment` dict reports wrote before rnnbench/provenance.py, as a (partial)
    provenance record; what it did not record is said so."""
    return {
        "git_commit": env.get("git_head"),
        "git_dirty": env.get("git_dirty"),
        "date": env.get("date"),
        "cpu": env.get("cpu"),
        "cores": env.get("cores"),
        "load_avg_1m": "not recorded",
        "python": env.get("python"),
        "versions": {k: env[f"{k}_version"] for k in ("jax", "flax") if env.get(f"{k}_version")},
    }


# ----------------------------------------------------------------------------- rendering


def fmt_stat(s: dict, scale: float = 1.0, digits: int = 2) -> str:
    """'93.12 ± 0.41' (n >= 2), '93.12' (n = 1), '—' (n = 0)."""
    if not s["n"]:
        return "—"
    text = f"{s['mean'] * scale:.{digits}f}"
    return text if s["std"] is None else f"{text} ± {s['std'] * scale:.{digits}f}"


def _fmt_params(s: dict) -> str:
    if not s["n"]:
        return "—"
    if s["min"] == s["max"]:
        return f"{int(s['min']):,}"
    return f"{int(s['min']):,}–{int(s['max']):,}"


def _fmt_failed(row) -> str:
    return (
        "; ".join(f"{f['tag']}: {(f['error'] or '').split(':', 1)[0][:40]}" for f in row["failed"])
        or ""
    )


def _fmt_missing(row) -> str:
    return (
        "; ".join(
            m["tag"] + ("" if m["state"] == "missing" else f" ({m['state']})")
            for m in row["missing"]
        )
        or ""
    )


def has_decode_speed(report: dict) -> bool:
    """Whether any row has a measured decoding speed (then the table shows `decode utt/s`)."""
    return any((row.get("decode_utt_per_s") or {}).get("n") for row in report["rows"])


def table_columns(report: dict) -> list[str]:
    """The Markdown table's header cells, in order."""
    short = short_keys(report["override_keys"])
    cols = [short[k] for k in report["override_keys"]] or ["config"]
    cols += ["n"] + [h for _, h, _ in METRICS[report["task"]]]
    cols += ["params", "train time (s)", "steps/s"]
    if has_decode_speed(report):
        cols.append("decode utt/s")
    if report["reference"] == "hello_edge":
        cols.append("Hello Edge (%)")
    return cols + ["failed", "missing"]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_rows(report: dict) -> list[list[str]]:
    """The Markdown table's body cells, one list per configuration."""
    out = []
    for row in report["rows"]:
        cells = [fmt_value(row["config"].get(k, "")) for k in report["override_keys"]]
        cells = cells or [row["label"]]
        cells.append(f"{row['n']}/{row['expected']}")
        cells += [fmt_stat(row["metrics"][m], scale) for m, _, scale in METRICS[report["task"]]]
        cells += [
            _fmt_params(row["num_params"]),
            fmt_stat(row["train_time_s"], digits=0),
            fmt_stat(row["steps_per_s"], digits=1),
        ]
        if has_decode_speed(report):
            cells.append(fmt_stat(row.get("decode_utt_per_s") or stats([]), digits=1))
        if report["reference"] == "hello_edge":
            ref = row.get("reference")
            cells.append(f"{ref['test_accuracy_pct']:.1f} ({ref['name']})" if ref else "—")
        cells += [_fmt_failed(row), _fmt_missing(row)]
        out.append([_md_cell(c) for c in cells])
    return out


def report_command(sweep_dir: str, out: str, reference: str | None = None) -> str:
    """The `python -m experiments.report` command line that regenerates a report."""
    args = ["python", "-m", "experiments.report", f"--sweep_dir={sweep_dir}", f"--out={out}"]
    return shlex.join(args + ([f"--reference={reference}"] if reference else []))


def sweep_command(spec: dict, sweep_dir: str) -> str:
    """The sweep runner's command line, rebuilt from sweep.json (config, sweep, the runner's
    settings when it recorded them, --override)."""
    args = [
        "python",
        "-m",
        "experiments.sweep",
        f"--config={spec.get('config')}",
        f"--sweep={spec.get('sweep')}",
        f"--workdir={sweep_dir}",
    ]
    args += runner_flags(spec.get("runner") or {})
    common = (spec.get("identity") or {}).get("common_overrides") or {}
    args += [f"--override={k}={v}" for k, v in common.items()]
    return shlex.join(args)


def runner_flags(runner: dict) -> list[str]:
    """The sweep runner's flags for its recorded settings (backend, parallel, vmap_seeds)."""
    args = []
    if runner.get("backend") not in (None, "local"):
        args.append(f"--backend={runner['backend']}")
    if runner.get("parallel") is not None:
        args.append(f"--parallel={runner['parallel']}")
    if runner.get("vmap_seeds") is not None:
        args.append(f"--vmap_seeds={'true' if runner['vmap_seeds'] else 'false'}")
    return args


def _short_commit(c: str) -> str:
    return c[:12] if len(c) >= 12 else c


def runner_line(report: dict) -> str:
    """How the runs were trained: the sweep runner's settings (from sweep.json, or the reproduce
    entry for sweeps that predate recording them) and, from every final.json, whether the seeds
    of a configuration shared one vmapped program."""
    runner = report.get("runner") or {}
    if runner:
        vmap = runner.get("vmap_seeds")
        text = (
            f"{runner.get('backend', 'local')} backend, --parallel={runner.get('parallel', '?')}, "
            f"--vmap_seeds={'?' if vmap is None else 'true' if vmap else 'false'}"
        )
        if runner.get("source") == "reproduce entry":
            text += (
                " (from the reproduce entry: no sweep.json recorded the runner's settings for "
                "these runs)"
            )
    else:
        text = "sweep runner settings not recorded"
    programs = report.get("run_models_in_program") or {}
    if set(programs) == {"1"}:
        text += "; every run trained in its own process (seeds not vmapped)"
    elif programs and "1" not in programs:
        sizes = " or ".join(sorted(programs, key=int))
        text += f"; seeds vmapped: each configuration's seeds trained as one program of {sizes}"
    elif programs:
        text += "; " + ", ".join(
            f"{n} runs in programs of {k}" for k, n in sorted(programs.items(), key=_int_key)
        )
    if runner.get("note"):
        text += f". {runner['note']}"
    return text


def _swept(report: dict) -> set[str]:
    """The keys a report's runs override, seed included (seeds are not an override_key)."""
    return set(report["override_keys"]) | ({"seed"} if report.get("seeds") else set())


def _int_key(item: tuple[str, Any]) -> int:
    return int(item[0])


def render_markdown(report: dict) -> str:
    """The results table. Its header starts with the one command that reproduces it, then the
    commands that command runs, how the runner ran them, and the provenance of runs and report."""
    spec = report["sweep"]
    title = os.path.basename(report["out"])
    what = (
        f"`{spec['sweep']}` sweep of `{spec['config']}`"
        if spec.get("sweep")
        else f"runs in `{report['sweep_dir']}`"
    )
    lines = [
        f"# {title}: {what}",
        "",
        "Generated by `rnnbench/report.py`; do not edit by hand. Reproduce with:",
        "",
        "```",
    ]
    commands = list(report.get("commands") or [])
    if not commands:
        if spec.get("command") or spec.get("sweep"):
            commands.append(spec.get("command") or sweep_command(spec, report["sweep_dir"]))
        if report.get("report_command"):
            commands.append(report["report_command"])
    if report.get("reproduce_command"):
        lines += [report["reproduce_command"], "```", ""]
        if commands:
            lines += [
                (
                    "which runs (`--dry_run` prints them; `--render_only` re-renders this file "
                    f"from {title}.json):"
                ),
                "",
                "```",
                *commands,
                "```",
                "",
            ]
    else:
        lines += [*commands, "```", ""]
    commits = (
        ", ".join(f"`{_short_commit(c)}` ({n} runs)" for c, n in report["run_commits"].items())
        or "none recorded"
    )
    if report.get("run_dirty"):
        commits += f" ({report['run_dirty']} with uncommitted changes)"
    run_versions = ", ".join(f"jax {j}" for j in report["run_jax_versions"]) or "jax ?"
    run_versions += "; " + (", ".join(f"flax {f}" for f in report["run_flax_versions"]) or "flax ?")
    devices = ", ".join(report["run_devices"]) or "?"
    precision = ", ".join(f"{p} ({n} runs)" for p, n in (report.get("run_precision") or {}).items())
    primary = report["primary_metric"]
    lines += [
        f"- runner: {runner_line(report)}",
        f"- runs: git {commits}; {run_versions}; devices {devices}"
        + (f"; precision {precision}" if precision else ""),
        f"- report: {provenance.one_line(report['provenance'])}",
    ]
    if report.get("rerendered"):
        r = report["rerendered"]
        dirty = " (dirty)" if r["git_dirty"] else ""
        lines.append(
            f"- re-rendered from {title}.json (numbers as the JSON holds them): {r['date']}, "
            f"commit {(r['git_commit'] or 'unknown')[:7]}{dirty}"
        )
    lines += [
        (
            f"- task: {report['task']}; dataset: {', '.join(report['datasets']) or '?'}; "
            f"primary metric: `{primary}`; {report['num_done']} of {report['num_runs']} runs "
            f"finished"
        ),
        "",
    ]
    for w in report["warnings"]:
        lines += [f"> **Warning:** {w}", ""]
    cols = table_columns(report)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    rows = table_rows(report)
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    lines += [
        "",
        (
            "Metrics are mean ± sample standard deviation (ddof=1) over the finished seeds; "
            "n = finished / expected runs. Train time is the seconds spent in training steps "
            "(the first step's compilation included, evaluation excluded); steps/s is over "
            "those steps. Failed and missing runs are named in their row and left out of the "
            "means."
        ),
    ]
    n_keys = cols.index("n") if "n" in cols else 0
    if any(cell == "" for cells in rows for cell in cells[:n_keys]):
        lines[-1] += " An empty cell in a swept-key column means the config's own value."
    shared = {k: v for k, v in report["run_models_in_program"].items() if int(k) > 1}
    if shared:
        lines[-1] += (
            " Seeds of one configuration trained together as one vmapped program "
            f"({', '.join(f'{v} runs in programs of {k}' for k, v in shared.items())}): "
            "their train time and steps/s are those of the whole program. That program "
            "rounds differently from a single run's, so the same configuration trained one "
            "run per process gives different numbers."
        )
    elif report["run_models_in_program"] and "seed" in _swept(report):
        lines[-1] += (
            " Every run trained in its own process; the same configuration's seeds trained as "
            "one vmapped program round differently and give different numbers."
        )
    if has_decode_speed(report):
        lines[-1] += (
            " Decode utt/s: test utterances per second of each run's own final-evaluation "
            "decoding (features, network and search, as `config.decode` says), timed after "
            "compilation by `python -m experiments.decoders --speed_only`, one run after another "
            "in one process."
        )
    if report["reference"] == "hello_edge":
        datasets = ", ".join(DATASET_DESCRIPTIONS.get(d, d) for d in report["datasets"]) or "?"
        lines += [
            "",
            (
                "**Reference, not a comparison.** Hello Edge (Zhang et al. 2017, "
                "arXiv:1711.07128) reports test accuracy on the real Google Speech Commands v1 "
                "recordings, 12 classes, small models: LSTM 92.9 %, GRU 93.5 % (matched here by "
                "cell); also Basic LSTM 92.0 % and CRNN 94.0 %. This table is measured on "
                f"{datasets}: the data differ (synthetic eSpeak speech / FSDD versus real "
                "Speech Commands), as do the model sizes and training budgets, so those numbers "
                "are a reference point, not a comparison."
            ),
        ]
    base = os.path.basename(report["out"])
    lines += [
        "",
        f"![learning curves]({base}_curves.png)",
        "",
        f"![{primary} against parameters]({base}_params.png)",
        "",
    ]
    return "\n".join(lines)


def render_csv(report: dict) -> str:
    """One row per configuration; means, stds and n as separate columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = report["override_keys"]
    header = list(keys) + ["label", "n", "expected"]
    for m in report["metrics"]:
        header += [f"{m}_mean", f"{m}_std", f"{m}_n"]
    header += [
        "num_params",
        "train_time_s_mean",
        "train_time_s_std",
        "steps_per_s_mean",
        "wall_time_s_mean",
    ]
    if has_decode_speed(report):
        header += ["decode_utt_per_s_mean", "decode_utt_per_s_std"]
    if report["reference"]:
        header += ["reference_name", "reference_test_accuracy_pct"]
    header += ["failed", "missing"]
    w.writerow(header)

    def num(x):
        return "" if x is None else repr(float(x))

    for row in report["rows"]:
        out = [fmt_value(row["config"].get(k, "")) for k in keys]
        out += [row["label"], row["n"], row["expected"]]
        for m in report["metrics"]:
            s = row["metrics"][m]
            out += [num(s["mean"]), num(s["std"]), s["n"]]
        p = row["num_params"]
        out += [
            int(p["mean"]) if p["n"] else "",
            num(row["train_time_s"]["mean"]),
            num(row["train_time_s"]["std"]),
            num(row["steps_per_s"]["mean"]),
            num(row["wall_time_s"]["mean"]),
        ]
        if has_decode_speed(report):
            speed = row.get("decode_utt_per_s") or stats([])
            out += [num(speed["mean"]), num(speed["std"])]
        if report["reference"]:
            ref = row.get("reference")
            out += [ref["name"], ref["test_accuracy_pct"]] if ref else ["", ""]
        out += [
            " ".join(f["run"] for f in row["failed"]),
            " ".join(m["run"] for m in row["missing"]),
        ]
        w.writerow(out)
    return buf.getvalue()


# ----------------------------------------------------------------------------- plots


def curves(sweep: Sweep, report: dict) -> list[dict]:
    """Per configuration: validation metric per step over its finished seeds (mean, min, max) and
    the mean training seconds at that step."""
    key, _, scale = CURVE_METRIC[report["task"]]
    by_name = {r.name: r for r in sweep.runs}
    out = []
    for row in report["rows"]:
        per_step: dict[int, list[tuple[float, float]]] = {}
        for entry in row["runs"]:
            run = by_name[entry["run"]]
            if run.state != "done":
                continue
            for e in run.events:
                if e.get("split") == "validation" and e.get(key) is not None:
                    per_step.setdefault(int(e["step"]), []).append(
                        (float(e[key]) * scale, float(e.get("time_s", math.nan)))
                    )
        steps = sorted(per_step)
        ys = [[v for v, _ in per_step[s]] for s in steps]
        out.append(
            {
                "label": row["label"],
                "step": steps,
                "time_s": [sum(t for _, t in per_step[s]) / len(per_step[s]) for s in steps],
                "mean": [sum(y) / len(y) for y in ys],
                "min": [min(y) for y in ys],
                "max": [max(y) for y in ys],
            }
        )
    return out


def _figure(figsize):
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas

    return Figure(figsize=figsize, layout="constrained")


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_curves(sweep: Sweep, report: dict, path: str) -> None:
    """Validation metric against step and against training seconds: mean line, min-max band."""
    data = curves(sweep, report)
    _, ylabel, _ = CURVE_METRIC[report["task"]]
    fig = _figure((12, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    for c, color in zip(data, _colors(len(data))):
        if not c["step"]:
            continue
        for ax, x in ((axes[0], c["step"]), (axes[1], c["time_s"])):
            ax.plot(x, c["mean"], color=color, label=c["label"], marker=".")
            ax.fill_between(x, c["min"], c["max"], color=color, alpha=0.2, linewidth=0)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("training time (s, mean over seeds)")
    axes[0].set_ylabel(ylabel)
    for ax in axes:
        ax.grid(alpha=0.3)
    if not any(c["step"] for c in data):
        axes[0].text(0.5, 0.5, "no finished runs", transform=axes[0].transAxes, ha="center")
    else:
        axes[1].legend(fontsize="small", loc="best")
    fig.suptitle(f"{os.path.basename(report['out'])}: mean over seeds, band = min-max")
    atomic.save_figure(fig, path)


def plot_params(report: dict, path: str) -> None:
    """Primary test metric against parameter count (log x), error bars = std over seeds."""
    primary = report["primary_metric"]
    scale = {m: s for m, _, s in METRICS[report["task"]]}[primary]
    header = {m: h for m, h, _ in METRICS[report["task"]]}[primary]
    rows = [r for r in report["rows"] if r["metrics"][primary]["n"] and r["num_params"]["n"]]
    crowded = len(rows) > 6  # then the legend names the points, outside the axes
    fig = _figure((10, 5) if crowded else (7, 5))
    ax = fig.subplots()
    for row, color in zip(rows, _colors(len(rows))):
        s = row["metrics"][primary]
        x, y = row["num_params"]["mean"], s["mean"] * scale
        ax.errorbar(
            [x],
            [y],
            yerr=[(s["std"] or 0.0) * scale],
            fmt="o",
            color=color,
            capsize=3,
            label=f"{row['label']} (n={s['n']})",
        )
        if not crowded:
            ax.annotate(
                row["label"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize="x-small"
            )
    if report["reference"] == "hello_edge":
        for name, acc in HELLO_EDGE.items():
            ax.axhline(acc, color="grey", linestyle=":", linewidth=0.8)
            ax.annotate(
                f"Hello Edge {name} (Speech Commands)",
                (0.01, acc),
                xycoords=("axes fraction", "data"),
                fontsize="xx-small",
                color="grey",
                va="bottom",
            )
    if rows:
        ax.set_xscale("log")
        if crowded:
            ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
        else:
            ax.legend(fontsize="x-small", loc="best")
    else:
        ax.text(0.5, 0.5, "no finished runs", transform=ax.transAxes, ha="center")
    ax.set_xlabel("parameters")
    ax.set_ylabel(header)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"{os.path.basename(report['out'])}: {primary} against model size")
    atomic.save_figure(fig, path)


# ----------------------------------------------------------------------------- writing


def output_paths(out: str) -> dict[str, str]:
    return {
        "md": out + ".md",
        "csv": out + ".csv",
        "json": out + ".json",
        "curves": out + "_curves.png",
        "params": out + "_params.png",
    }


def make_report(
    sweep_dir: str,
    out: str,
    *,
    reference: str | None = None,
    report_command: str | None = None,
    reproduce_command: str | None = None,
    commands: list[str] | None = None,
    runner: dict | None = None,
) -> dict:
    """Reads `sweep_dir`, writes `out`.{md,csv,json} and `out`_{curves,params}.png; returns the
    report dict (its "warnings" list names runs without results).

    `commands`: the exact commands that make the table (default: the sweep command rebuilt from
    sweep.json, then `report_command`). `runner`: the sweep runner's settings when sweep.json
    does not record them (sweeps run before it did), e.g. from a reproduce entry."""
    sweep = load_sweep(sweep_dir)
    report = aggregate(sweep, reference)
    report.update(
        out=out,
        report_command=report_command,
        reproduce_command=reproduce_command,
        commands=commands,
        runner=_runner(sweep.spec, runner),
        provenance=provenance.record(),
        files=output_paths(out),
    )
    paths = report["files"]
    plot_curves(sweep, report, paths["curves"])
    plot_params(report, paths["params"])
    write_tables(report)
    return report


def _runner(spec: dict, fallback: dict | None) -> dict | None:
    if spec.get("runner"):
        return {**spec["runner"], "source": "sweep.json"}
    if fallback:
        return {**fallback, "source": "reproduce entry"}
    return None


def write_tables(report: dict) -> None:
    """Writes the report's .csv, .json and .md (not the plots) from the report dict."""
    paths = report["files"]
    atomic.write_text(paths["csv"], render_csv(report))
    atomic.write_json(paths["json"], report, strict=True)
    atomic.write_text(paths["md"], render_markdown(report))


REPORT_KEYS = ("rows", "task", "override_keys", "metrics", "primary_metric", "sweep")


def rerender(
    json_path: str,
    *,
    reproduce_command: str | None = None,
    commands: list[str] | None = None,
    runner: dict | None = None,
) -> dict:
    """Re-writes a report's .md, .csv and .json from its saved JSON alone (no run directories):
    every number comes from the JSON as it is. Given arguments replace what the JSON holds (see
    `make_report`); a JSON made before rnnbench/provenance.py has its `environment` turned into a
    provenance record. The plots need the runs' metrics.jsonl and are left as they are."""
    if not json_path.endswith(".json"):
        raise ReportError(
            f"{json_path!r}: expected a report's .json file, e.g. results/kws_cells.json"
        )
    try:
        report = _read_json(json_path)
    except (OSError, ValueError) as e:
        raise ReportError(f"cannot read {json_path} ({e}); expected a report's .json") from None
    missing = [k for k in REPORT_KEYS if k not in (report if isinstance(report, dict) else {})]
    if missing:
        raise ReportError(
            f"{json_path} is not a report made by rnnbench/report.py: it lacks {', '.join(missing)}"
        )
    if "provenance" not in report:
        report["provenance"] = _provenance_from_environment(report.pop("environment", {}))
    out = json_path[: -len(".json")]
    report["out"], report["files"] = out, output_paths(out)
    report["rerendered"] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": provenance.git_commit(),
        "git_dirty": provenance.git_dirty(),
    }
    if reproduce_command is not None:
        report["reproduce_command"] = reproduce_command
    if commands is not None:
        report["commands"] = list(commands)
    if runner is not None or "runner" not in report:
        report["runner"] = _runner(report["sweep"], runner)
    write_tables(report)
    return report
