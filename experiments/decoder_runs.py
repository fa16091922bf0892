"""What the decoder comparisons share (experiments.decoders for CTC runs,
experiments.attention_decoders for attention encoder-decoders): restoring trained runs of one
configuration, their evaluation batches, rows of paired changes against greedy decoding, and
writing a table's Markdown and JSON atomically."""

from __future__ import annotations

import copy
import json
import os


def without_seed(config) -> dict:
    """The run's config as plain JSON, less what may differ between seeds of one configuration."""
    d = config.to_dict()
    for k in ("seed", "wandb"):
        d.pop(k, None)
    return json.loads(json.dumps(d, sort_keys=True, default=str))


def load_runs(workdirs: list[str], kind: str):
    """The runs restored (rnnbench.inference.load_run); ValueError unless every one is a run of
    objective `kind` (model.kind: ctc, las) and all share one configuration but the seed."""
    from rnnbench import inference

    if not workdirs:
        raise ValueError("no runs to compare: pass --workdirs or a --sweep_dir with finished runs")
    runs = [inference.load_run(w) for w in workdirs]
    for run in runs:
        if run.objective.name != kind:
            raise ValueError(
                f"{run.workdir} is a {run.objective.name!r} run (model.kind "
                f"{run.config.model.get('kind')!r}); this decoder comparison needs "
                f"{kind} runs (model.kind {kind!r})"
            )
        if without_seed(run.config) != without_seed(runs[0].config):
            raise ValueError(
                f"{run.workdir} and {runs[0].workdir} differ in more than the seed; "
                "compare runs of one configuration"
            )
    return runs


def decode_config(config, decode: dict):
    """A copy of `config` whose `decode` section is `decode` (what --config.decode... sets)."""
    c = copy.deepcopy(config)
    with c.unlocked():
        c.decode = dict(decode)
    return c


def eval_batches(program, split: str) -> list[dict]:
    """Every evaluation batch of `split`, as the run's evaluation batches it (its buckets);
    `program` is rnnbench.train.prepare's."""
    from rnnbench import input_pipeline

    return list(
        input_pipeline.eval_stream(
            program.dataset,
            split,
            program.config,
            program.buckets,
            program.objective.encoder(program.dataset),
        )
    )


def final_provenance(workdir: str) -> dict:
    """Where and how a run was trained, from its final.json ({"workdir"} alone if unreadable)."""
    try:
        with open(os.path.join(workdir, "final.json")) as f:
            final = json.load(f)
    except (OSError, ValueError):
        return {"workdir": workdir}
    rec = final.get("provenance") or {}
    return {
        "workdir": workdir,
        "git_commit": rec.get("git_commit") or final.get("git_commit"),
        "git_dirty": rec.get("git_dirty"),
        "steps": final.get("steps"),
        "models_in_program": final.get("models_in_program"),
        "train_time_s": final.get("train_time_s"),
        "test_cer": final.get("test_cer"),
    }


def report_head(kind: str, dataset, config, per_run: list[dict], workdirs: list[str]) -> dict:
    """The fields every decoder comparison's JSON starts with: its kind, the dataset, the runs
    (workdir, seed, checkpoint step), how each was trained, and the shared configuration."""
    return {
        "kind": kind,
        "dataset": dataset.name,
        "runs": [
            {"workdir": r["workdir"], "seed": r["seed"], "checkpoint_step": r["checkpoint_step"]}
            for r in per_run
        ],
        "run_provenance": [final_provenance(w) for w in workdirs],
        "config": {
            "model": config.model.to_dict(),
            "num_steps": config.num_steps,
            "batch_size": config.batch_size,
        },
    }


def paired_rows(per_run: list[dict], names, speeds: dict) -> list[dict]:
    """One row per decoder of `names` (the first is "greedy"): test CER/WER, validation CER and
    the paired change against greedy, each as stats over the runs, and a stats column per
    `speeds` entry (column -> function of a run's test result)."""
    from rnnbench import report as report_lib

    stats = report_lib.stats
    out = []
    for name in names:
        test = [r["test"][name] for r in per_run]
        greedy = [r["test"]["greedy"] for r in per_run]
        row = {
            "decoder": name,
            "test_cer": stats([t["cer"] for t in test]),
            "test_wer": stats([t["wer"] for t in test]),
            "val_cer": stats([r["val"][name]["cer"] for r in per_run]),
            "delta_cer": stats([t["cer"] - g["cer"] for t, g in zip(test, greedy)]),
            "delta_wer": stats([t["wer"] - g["wer"] for t, g in zip(test, greedy)]),
            "better_cer_runs": sum(t["cer"] < g["cer"] for t, g in zip(test, greedy)),
        }
        out.append(row | {col: stats([f(t) for t in test]) for col, f in speeds.items()})
    return out


def pct(s: dict, signed: bool = False) -> str:
    """A stats dict of fractions as percent ('+' before a non-negative mean when `signed`)."""
    from rnnbench import report as report_lib

    text = report_lib.fmt_stat(s, 100.0)
    return "+" + text if signed and s["n"] and s["mean"] >= 0 else text


def write(
    report: dict,
    out: str,
    markdown,
    *,
    commands: list[str] | None = None,
    reproduce_command: str | None = None,
) -> dict:
    """Writes <out>.md (`markdown(report)`) and <out>.json atomically; returns the report with
    them, and the commands if given, recorded."""
    from rnnbench import atomic

    report = dict(report, out=out, files={"md": out + ".md", "json": out + ".json"})
    if commands is not None:
        report["commands"] = list(commands)
    if reproduce_command is not None:
        report["reproduce_command"] = reproduce_command
    atomic.write_json(report["files"]["json"], report, strict=True)
    atomic.write_text(report["files"]["md"], markdown(report))
    return report


# ----------------------------------------------------------------------------- rendering


def header_lines(report: dict, heading: str, program: str) -> list[str]:
    """A table file's first lines: '# <title>: <heading>', that `program` made it, the command
    that reproduces it and (when reproduced by name) every command that ran."""
    title = os.path.basename(report["out"])
    lines = [
        f"# {title}: {heading}",
        "",
        f"Generated by `{program}`; do not edit by hand. Reproduce with:",
        "",
        "```",
        report.get("reproduce_command") or report["commands"][-1],
        "```",
        "",
    ]
    if report.get("reproduce_command"):
        lines += ["which runs:", "", "```", *report["commands"], "```", ""]
    return lines


def against_greedy(report: dict, label) -> list[str]:
    """Per non-greedy row: '<label>: test CER lower than greedy's by X points on average, lower
    in k of n runs' (`label(name, decode)` names the decoder)."""
    n = len(report["runs"])
    parts = []
    for row in report["rows"][1:]:
        d = row["delta_cer"]
        word = "lower" if d["mean"] < 0 else "higher" if d["mean"] > 0 else "unchanged"
        parts.append(
            f"{label(row['decoder'], report['decoders'][row['decoder']])}: test CER {word} than "
            f"greedy's by {abs(d['mean']) * 100:.2f} points on average, lower in "
            f"{row['better_cer_runs']} of {n} runs"
        )
    return parts


def table(report: dict, label, speeds: list[tuple[str, str, int]]) -> list[str]:
    """The Markdown table: a row per decoder with test CER/WER, the paired change against greedy,
    validation CER and the `speeds` columns (header, row key, digits)."""
    from rnnbench import report as report_lib

    cols = [
        "decoder",
        "n",
        "test CER (%)",
        "test WER (%)",
        "Δ CER vs greedy (points)",
        "Δ WER vs greedy (points)",
        "val CER (%)",
        *(h for h, _, _ in speeds),
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in report["rows"]:
        name = row["decoder"]
        cells = [
            label(name, report["decoders"][name]),
            str(row["test_cer"]["n"]),
            pct(row["test_cer"]),
            pct(row["test_wer"]),
            "—" if name == "greedy" else pct(row["delta_cer"], signed=True),
            "—" if name == "greedy" else pct(row["delta_wer"], signed=True),
            pct(row["val_cer"]),
            *(report_lib.fmt_stat(row[key], digits=d) for _, key, d in speeds),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
